"""Offline evals: replay recorded incidents (evals/incidents/<name>/) through the whole loop and score them.

    from agent.evals import run_eval
    report = run_eval("evals/incidents", cfg, mode="offline")   # EvalReport: per-case checks, summary, thresholds
    report.passed                                                # False when a threshold was missed

Modules: incident (reading an incident folder), sandbox (the fresh store's config, the fixture copy and how fix
params map onto it), analysts (offline, live model, cassette replay), replay (one incident through triage,
analysis, remedy, verification and a repeat), scoring (expected vs got, per check), thresholds, runner,
render (tables), export (an incident folder from a live store).
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvalReport", "export_issue", "load_incident", "run_eval"]

_WHERE = {"EvalReport": "agent.evals.runner", "run_eval": "agent.evals.runner",
          "load_incident": "agent.evals.incident", "export_issue": "agent.evals.export"}


def __getattr__(name: str) -> Any:
    # Lazy, so `selfheal --help` does not import the store, the analysts and the remedy.
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.evals' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
