"""Shared set-up for the remedy tests: a config with real roots, issues with gate-passed chains in a real store."""

from __future__ import annotations

import copy
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from agent.config import load_config
from agent.models import Chain, CheckResult, GateChecks, GateResult, Signal
from agent.store import Store
from agent.store import chains as chain_store
from agent.store import issues as issue_store
from agent.store.signals import insert_signals

DATA = Path(__file__).parent / "data" / "remedy"
T0 = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)

# A command that records its argv (as JSON lines) in the file named by its first argument.
RECORDER = [sys.executable, "-c",
            "import json, sys; open(sys.argv[1], 'a').write(json.dumps(sys.argv[2:]) + '\\n')"]


def write_config(tmp_path: Path, remedy: dict[str, Any] | None = None, **top: Any):
    """A real selfheal.yaml in tmp_path (roots: tmp_path/etc) and the Config loaded from it."""
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    data = {"remedy": {"roots": ["etc"], "watch_window_s": 300, **(remedy or {})}, **top}
    path = tmp_path / "selfheal.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_config(home, path)


def chain_dict(fix: dict[str, Any], *, service: str = "checkout-api") -> dict[str, Any]:
    """The contract's example chain (config value -> unbounded cache -> OOM -> 503) with the given fix."""
    return {
        "schema": "selfheal.chain/v1", "id": "c-1", "symptom": "n0", "root": "n3",
        "nodes": [
            {"id": "n0", "statement": f"{service} health check returns HTTP 503",
             "observe": {"source": "health", "service": service, "match": "503"}},
            {"id": "n1", "statement": "all gunicorn workers were killed by the kernel OOM killer",
             "observe": {"source": "log", "match": r"Out of memory: Killed process \d+ \(gunicorn\)"}},
            {"id": "n2", "statement": "each worker caches every product image without a bound",
             "observe": {"source": "metric", "metric": "worker_rss_mb", "op": ">=", "value": 1900}},
            {"id": "n3", "statement": "config image_cache_max_items is 0, which disables eviction",
             "category": "config", "observe": {"source": "probe", "match": r"image_cache_max_items\s*=\s*0\b"}},
        ],
        "links": [
            {"cause": "n1", "effect": "n0", "mechanism": "with no live worker every request gets a 503"},
            {"cause": "n2", "effect": "n1", "mechanism": "resident memory exceeds the cgroup limit"},
            {"cause": "n3", "effect": "n2", "mechanism": "a zero limit keeps every image ever served"},
        ],
        "fix": {"target": "n3", "effect": "eliminate", "description": "bound the image cache", **fix},
    }


SET_CACHE = {"action": "set_config",
             "params": {"file": "checkout.ini", "key": "image_cache_max_items", "value": "500"},
             "postcondition": {"source": "probe", "match": r"image_cache_max_items\s*=\s*500\b"}}


def passed_gate() -> GateResult:
    ok = CheckResult(passed=True, reason="built by the test")
    return GateResult(passed=True, elapsed_ms=1.0, checks=GateChecks(reproduce=ok, archive=ok, completeness=ok,
                                                                     counterfactual=ok))


def seed_issue(store: Store, fix: dict[str, Any] | None = None, *, at: datetime = T0,
               service: str = "checkout-api", passed: bool = True) -> tuple[str, str]:
    """An issue opened by a failing health check, with a chain whose gate result is stored."""
    failure = Signal(id=f"s-fail-{at.timestamp():.0f}", ts=at, source="health", service=service, level="ERROR",
                     message="GET http://127.0.0.1:8080/health -> 503")
    insert_signals(store, [failure])
    issue_id = issue_store.open_issue(store, fingerprint=f"f1:test-{service}", title="health check 503", ts=at,
                                      source="health", service=service, signal_id=failure.id)
    issue_store.add_occurrence(store, issue_id, failure.id, at, "new")
    chain = Chain.model_validate(chain_dict(copy.deepcopy(fix or SET_CACHE), service=service))
    chain_id = chain_store.save_chain(store, chain, issue_id=issue_id, analyst="manual", at=at)
    gate = passed_gate()
    if not passed:
        gate = gate.model_copy(update={"passed": False})
    chain_store.save_gate_result(store, chain_id, issue_id, gate, at=at)
    issue_store.add_event(store, issue_id, "fixing" if passed else "needs-human", "analysed", at, chain_id=chain_id)
    return issue_id, chain_id


def recorded_argv(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
