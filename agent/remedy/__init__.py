"""Remedy: the allow-listed action catalog, the executor (dry run, backup, rollback) and verification.

    from agent.remedy import plan_fix, apply_fix, rollback_fix, run_mitigation, verify_fix

Only the actions in `agent.remedy.catalog` can run; every path resolves inside `remedy.roots`; every
command is a configured argv run without a shell.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApplyResult", "FixPlan", "MitigationResult", "RefusedError", "RemedyError", "RollbackResult",
    "Verification", "VerificationResult", "apply_fix", "plan_fix", "rollback_fix", "run_mitigation", "verify_fix",
]

_WHERE = {
    "ApplyResult": "agent.remedy.executor", "FixPlan": "agent.remedy.executor",
    "MitigationResult": "agent.remedy.executor", "RollbackResult": "agent.remedy.executor",
    "apply_fix": "agent.remedy.executor", "plan_fix": "agent.remedy.executor",
    "rollback_fix": "agent.remedy.executor", "run_mitigation": "agent.remedy.executor",
    "RefusedError": "agent.remedy.base", "RemedyError": "agent.remedy.base",
    "Verification": "agent.remedy.verify", "VerificationResult": "agent.remedy.verify",
    "verify_fix": "agent.remedy.verify",
}


def __getattr__(name: str) -> Any:
    # Lazy, so `import agent.remedy` stays cheap for the CLI's start-up.
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.remedy' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
