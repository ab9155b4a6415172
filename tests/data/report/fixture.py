"""Replay tests/data/report/history.yaml into a store through the store functions.

Loaded by the report and chat tests with `load()`; every step is one call of
agent/store/*, so the store looks exactly like one the loop wrote.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import yaml

from agent.models import Chain, CheckResult, GateChecks, GateResult, load_signals_file, parse_ts
from agent.store import Store
from agent.store import chains as chains_store
from agent.store import fixes as fixes_store
from agent.store import issues as issues_store
from agent.store import learned as learned_store
from agent.store import state as state_store
from agent.store.signals import insert_signals, set_fingerprints

HERE = Path(__file__).resolve().parent
CHECKS = ("reproduce", "archive", "completeness", "counterfactual")


def _check(spec: Any) -> CheckResult:
    if isinstance(spec, list):
        return CheckResult(passed=spec[0], reason=spec[1])
    return CheckResult(**spec)


def build(store: Store, data_dir: Path = HERE) -> dict[str, Any]:
    """Fill `store` from the recorded history; returns the signals by id."""
    signals = load_signals_file(data_dir / "signals.jsonl")
    by_id = {s.id: s for s in signals}
    insert_signals(store, signals)
    steps = yaml.safe_load((data_dir / "history.yaml").read_text())["steps"]
    cycle: str | None = None
    for step in steps:
        (kind, a), = step.items()
        at = parse_ts(a["at"]) if "at" in a else None
        cyc = cycle if a.get("cycle", True) else None
        if kind == "cycle":
            cycle = state_store.start_cycle(store, a["kind"], at=at)
            assert cycle == a["id"], (cycle, a["id"])
        elif kind == "end_cycle":
            state_store.end_cycle(store, cycle, at=at)
        elif kind == "judge":
            set_fingerprints(store, [(sid, a["fingerprint"]) for sid in a["signals"]])
            issues_store.insert_triage_results(store, [
                dict(signal_id=sid, fingerprint=a["fingerprint"], template=by_id[sid].message, verdict=a["verdict"],
                     issue=a.get("issue"), rule=a["rule"], reason=a.get("reason", a["rule"]), ts=by_id[sid].ts)
                for sid in a["signals"]])
        elif kind == "open":
            sig = by_id[a["signal"]]
            iid = issues_store.open_issue(
                store, fingerprint=a["fingerprint"], title=a["title"], ts=sig.ts, kind=a.get("kind", "failure"),
                source=a.get("source"), service=a.get("service"), host=a.get("host"), signal_id=sig.id,
                reason=a.get("reason", ""), cycle_id=cyc)
            assert iid == a["issue"], (iid, a["issue"])
            issues_store.add_occurrence(store, iid, sig.id, sig.ts, "new")
        elif kind == "occurrence":
            for sid in a["signals"]:
                issues_store.add_occurrence(store, a["issue"], sid, by_id[sid].ts, a["verdict"])
        elif kind == "event":
            issues_store.add_event(store, a["issue"], a["status"], a["event"], at, reason=a.get("reason"),
                                   signal_id=a.get("signal"), chain_id=a.get("chain"), fix_id=a.get("fix"),
                                   cycle_id=cyc)
        elif kind == "chain":
            chain = Chain.model_validate(json.loads((data_dir / "chains" / a["file"]).read_text()))
            cid = chains_store.save_chain(store, chain, issue_id=a["issue"], analyst=a["analyst"], mode=a.get("mode"),
                                          at=at)
            assert cid == a["id"], (cid, a["id"])
        elif kind == "gate":
            checks = {name: _check(a["checks"][name]) for name in CHECKS}
            result = GateResult(passed=all(c.passed for c in checks.values()), elapsed_ms=2.5,
                                checks=GateChecks(**checks))
            chains_store.save_gate_result(store, a["chain"], a["issue"], result, at=at)
        elif kind == "fix":
            fid = fixes_store.create_fix(store, issue_id=a["issue"], chain_id=a["chain"], action=a["action"],
                                         params=a["params"], kind=a["kind"], plan=a["plan"], at=at)
            assert fid == a["id"], (fid, a["id"])
        elif kind == "fix_event":
            fixes_store.add_fix_event(store, a["fix"], a["status"], detail=a.get("detail"), at=at)
        elif kind == "verify":
            fixes_store.add_verification(store, fix_id=a["fix"], issue_id=a["issue"], step=a["step"],
                                         passed=a["passed"], detail=a.get("detail", ""), at=at)
        elif kind == "resolve":
            done = issues_store.resolve(store, a["issue"], at, reason=a["reason"], event=a.get("event", "resolved"),
                                        cycle_id=cyc, chain_id=a.get("chain"), fix_id=a.get("fix"))
            assert done
        elif kind == "archive":
            chains_store.archive_chain(store, a["chain"], outcome=a["outcome"], resolved_at=parse_ts(a["resolved_at"]),
                                       at=at)
        elif kind == "rule":
            learned_store.add_rule(store, rule_id=a["id"], kind=a["kind"], definition=a["definition"],
                                   explanation=a["explanation"], chain_id=a.get("chain"), issue_id=a.get("issue"), at=at)
        else:
            raise ValueError(f"unknown fixture step {kind!r}")
    return {"signals": by_id}


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
