"""Expected vs got: each check of one case, and the run's scores.

A check is passed (True), failed (False) or does not apply to the case (None: a missing-evidence case has no
root to match, a command fix is never run so its verification is not simulated, ...). A score is the
fraction of the cases a check applies to that pass it.

Checks:
- triage: the verdict counts and per-signal verdicts of expected.yaml's triage block;
- issues: triage opened `issues` issues and the symptom signal opened one (verdict new);
- escalation: escalated exactly when expected;
- root_cause: the root statement matches the regex (case-insensitive), the category and (offline) the mode;
- gate: the gate's verdict on the analysis' chain is the expected pass/fail;
- fix: the chain's fix is the expected action and plans (dry run, against the fixture copy) a change; with no
  fix expected, nothing is planned;
- verify: the applied fix verified after the watch window (issue resolved);
- recurrence (cases with an archive): the chain goes deeper than each archived chain (its root reappears below
  the new root, or more links) and repeats neither its root nor its fix: a repeat would be a repeat issue;
- repeat: the failures replayed after the resolution are judged a recurrence of the resolved issue (no new
  issue), its chain is archived did-not-hold and the report counts the repeat;
- store (offline): `analyze_issue` on the replayed store reaches the same conclusion as the case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from agent.evals.incident import Incident
from agent.evals.replay import CaseRun
from agent.models import ArchiveEntry, Chain

CHECKS = ("triage", "issues", "escalation", "root_cause", "gate", "fix", "verify", "recurrence", "repeat", "store")


@dataclass
class Check:
    passed: bool | None
    expected: Any = None
    got: Any = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "expected": self.expected, "got": self.got, "detail": self.detail}


@dataclass
class CaseScore:
    name: str
    kind: str
    status: str                      # passed | failed | skipped | error
    checks: dict[str, Check] = field(default_factory=dict)
    analyst: str | None = None
    mode: str | None = None
    root: str | None = None
    category: str | None = None
    fix: str | None = None
    reason: str = ""
    mttr_s: float | None = None
    repeats_archive: bool = False
    error: str | None = None
    elapsed_ms: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    repeat: dict[str, Any] | None = None

    @property
    def failed(self) -> list[str]:
        return [name for name, c in self.checks.items() if c.passed is False]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "status": self.status, "failed": self.failed,
            "checks": {name: c.to_json() for name, c in self.checks.items()},
            "analyst": self.analyst, "mode": self.mode, "root": self.root, "category": self.category, "fix": self.fix,
            "reason": self.reason, "mttr_minutes": None if self.mttr_s is None else round(self.mttr_s / 60.0, 2),
            "repeats_archive": self.repeats_archive, "error": self.error, "elapsed_ms": round(self.elapsed_ms, 1),
            "timings_ms": self.timings, "model": self.model or None,
            "plan": self.plan, "verification": self.verification, "repeat": self.repeat,
        }


# --------------------------------------------------------------------------- one case


def score(incident: Incident, run: CaseRun) -> CaseScore:
    exp = incident.expected
    result = run.result
    chain = result.chain if result else None
    out = CaseScore(name=incident.name, kind=exp.kind, status="passed", analyst=run.analyst,
                    mode=getattr(result, "mode", None) if result else None,
                    root=chain.root_node.statement if chain else None,
                    category=chain.root_node.category if chain else None,
                    fix=chain.fix.action if chain and chain.fix else None,
                    reason=result.reason if result else "", mttr_s=run.mttr_s,
                    elapsed_ms=sum(run.timings.values()), timings=dict(run.timings), model=dict(run.model),
                    plan=run.plan or ({"error": run.plan_error} if run.plan_error else None),
                    verification=run.verification, repeat=run.repeat)
    checks = out.checks
    checks["triage"] = triage_check(incident, run)
    checks["issues"] = issues_check(incident, run)
    checks["escalation"] = escalation_check(incident, run)
    checks["root_cause"] = root_check(incident, run)
    checks["gate"] = gate_check(incident, run)
    checks["fix"] = fix_check(incident, run)
    checks["verify"] = verify_check(incident, run)
    checks["recurrence"], out.repeats_archive = recurrence_check(incident, run)
    checks["repeat"] = repeat_check(run)
    checks["store"] = store_check(run)
    if out.failed:
        out.status = "failed"
    return out


def triage_check(incident: Incident, run: CaseRun) -> Check:
    want = incident.expected.triage
    if not want.counts and not want.verdicts:
        return Check(None, detail="expected.yaml gives no triage block")
    counts = run.counts
    got_counts = {v: counts.get(v, 0) for v in want.counts}
    got_verdicts = {sid: run.verdicts.get(sid) for sid in want.verdicts}
    problems = [f"{v}: {n} signals expected, got {got_counts[v]}" for v, n in want.counts.items() if got_counts[v] != n]
    problems += [f"{sid}: expected {v}, got {got_verdicts[sid]}" for sid, v in want.verdicts.items()
                 if got_verdicts[sid] != v]
    return Check(not problems, {"counts": want.counts, "verdicts": want.verdicts},
                 {"counts": got_counts, "verdicts": got_verdicts}, "; ".join(problems))


def issues_check(incident: Incident, run: CaseRun) -> Check:
    want = incident.expected.issues
    sym = incident.expected.symptom_signal
    problems = []
    if want is not None and len(run.issues) != want:
        problems.append(f"{want} issues expected, triage opened {len(run.issues)}")
    if run.symptom_verdict != "new":
        problems.append(f"the symptom signal {sym} should open its issue (new), got {run.symptom_verdict}")
    return Check(not problems, {"issues": want, "symptom": "new"},
                 {"issues": len(run.issues), "symptom": run.symptom_verdict}, "; ".join(problems))


def escalation_check(incident: Incident, run: CaseRun) -> Check:
    want = incident.expected.analysis.escalate
    result = run.result
    if result is None:
        return Check(False, want, None, "no analysis ran")
    if result.escalated is want:
        return Check(True, want, result.escalated)
    detail = ("escalated: no chain passed the gate (see the analysis reason)" if result.escalated
              else "a chain passed the gate where the evidence should not support any")
    return Check(False, want, result.escalated, detail)


def root_check(incident: Incident, run: CaseRun) -> Check:
    exp = incident.expected
    want = exp.analysis
    if want.escalate:
        return Check(None, detail="escalation expected: no root to match")
    result = run.result
    chain = result.chain if result else None
    check_mode = run.analyst == "offline" and exp.mode is not None
    expected = {"root_statement": want.root_statement, "category": want.root_category,
                "mode": exp.mode if check_mode else None}
    if chain is None or result is None or result.escalated:
        return Check(False, expected, None, "no validated chain" + (" (escalated)" if result else ""))
    root = chain.root_node
    mode = getattr(result, "mode", None)
    got = {"root_statement": root.statement, "category": root.category, "mode": mode if check_mode else None}
    problems = []
    if want.root_statement is not None and not re.search(want.root_statement, root.statement, re.IGNORECASE):
        problems.append(f"root statement {root.statement!r} does not match /{want.root_statement}/")
    if want.root_category is not None and root.category != want.root_category:
        problems.append(f"root category: expected {want.root_category}, got {root.category}")
    if check_mode and mode != exp.mode:
        problems.append(f"mode: expected {exp.mode}, got {mode}")
    return Check(not problems, expected, got, "; ".join(problems))


def gate_check(incident: Incident, run: CaseRun) -> Check:
    want = incident.expected.analysis.gate
    gate = run.result.gate if run.result else None
    got = "pass" if gate is not None and gate.passed else "fail"
    detail = ""
    if got != want:
        detail = "; ".join(gate.failed_reasons()) if gate is not None and not gate.passed else \
            ("the gate passed the chain" if gate is not None else "no chain reached the gate")
    return Check(got == want, want, got, detail)


def fix_check(incident: Incident, run: CaseRun) -> Check:
    want = incident.expected.analysis.fix_action
    chain = run.result.chain if run.result else None
    action = chain.fix.action if chain is not None and chain.fix is not None and not run.result.escalated else None
    got = {"action": action, "plan": run.plan["summary"] if run.plan else run.plan_error}
    if want is None:
        ok = action is None and run.plan is None
        return Check(ok, {"action": None}, got, "" if ok else f"a fix was drafted ({action}) where none was expected")
    problems = []
    if action != want:
        problems.append(f"fix action: expected {want}, got {action}")
    if run.plan_error:
        problems.append(f"the fix does not plan: {run.plan_error}")
    elif run.plan is None:
        if run.symptom_issue is None:
            problems.append("no issue to plan a fix for")
        elif action is not None:
            problems.append("nothing was planned")
    elif run.plan["noop"]:
        problems.append(f"the plan changes nothing: {run.plan['summary']}")
    elif run.plan["action"] != want:
        problems.append(f"planned action: expected {want}, got {run.plan['action']}")
    return Check(not problems, {"action": want, "plan": "a change"}, got, "; ".join(problems))


def verify_check(incident: Incident, run: CaseRun) -> Check:
    v = run.verification
    if incident.expected.analysis.fix_action is None or v is None:
        return Check(None, detail="no fix applied" if v is None else "")
    if v["status"] == "not simulated":
        return Check(None, "verified", v["status"], v["detail"])
    ok = v["status"] == "verified"
    return Check(ok, "verified", v["status"], "" if ok else v.get("detail", ""))


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def repeated(chain: Chain, archive: Sequence[ArchiveEntry]) -> list[str]:
    """What the chain repeats of archived chains: the same root (statement or observe) or the same fix."""
    out = []
    root = chain.root_node
    for entry in archive:
        old = entry.chain
        old_root = old.root_node
        if _norm(old_root.statement) == _norm(root.statement) or \
                (old_root.observe is not None and old_root.observe == root.observe):
            out.append(f"root of archived chain {old.id}: {old_root.statement!r}")
        if chain.fix is not None and old.fix is not None and chain.fix.action == old.fix.action \
                and chain.fix.params == old.fix.params:
            out.append(f"fix of archived chain {old.id}: {old.fix.action} {old.fix.params}")
    return out


def deeper(chain: Chain, old: Chain) -> bool:
    """The contract's "deeper": the archived root reappears as a non-root node of the chain, or it has more links."""
    old_root = old.root_node
    for node in chain.nodes:
        if node.id == chain.root:
            continue
        if _norm(node.statement) == _norm(old_root.statement) or \
                (old_root.observe is not None and node.observe == old_root.observe):
            return True
    return len(chain.links) > len(old.links)


def recurrence_check(incident: Incident, run: CaseRun) -> tuple[Check, bool]:
    """A recurrence's chain must go deeper than every archived chain and repeat neither their roots nor their fixes
    (evals/incidents/README.md, kind recurrence). Whether the gate's archive check recognised the earlier chain
    (escalated) is reported, not required: the incident's expected gate verdict covers the gate."""
    if not incident.archive:
        return Check(None, detail="no archive"), False
    result = run.result
    expected = {"repeats": [], "deeper_than": [e.chain.id for e in incident.archive]}
    if result is None or result.chain is None or result.escalated:
        if incident.expected.analysis.escalate:
            return Check(None, detail="escalation expected"), False
        return Check(False, expected, None, "no validated chain to compare with the archive"), False
    repeats = repeated(result.chain, incident.archive)
    shallow = [e.chain.id for e in incident.archive if not deeper(result.chain, e.chain)]
    arch = result.gate.checks.archive if result.gate is not None else None
    escalated = bool(arch is not None and (arch.model_extra or {}).get("escalated"))
    problems = []
    if repeats:
        problems.append("repeats the " + "; the ".join(repeats))
    if shallow:
        problems.append(f"goes no deeper than archived chain(s) {', '.join(shallow)}")
    got = {"repeats": repeats, "deeper_than": [e.chain.id for e in incident.archive if e.chain.id not in shallow],
           "archive_check_escalated": escalated,
           "archive_check": arch.reason if arch is not None else None}
    return Check(not problems, expected, got, "; ".join(problems)), bool(repeats)


def repeat_check(run: CaseRun) -> Check:
    r = run.repeat
    if r is None:
        return Check(None, detail="not resolved: nothing to repeat")
    problems = []
    if not r["recurrence"]:
        problems.append(f"the replayed failures were not judged a recurrence of {run.symptom_issue}: {r['verdicts']}")
    if r["new_issues"]:
        problems.append(f"the replayed failures opened new issues {', '.join(r['new_issues'])}")
    if r["archived"] != "did-not-hold":
        problems.append(f"the chain was not archived as did-not-hold (latest: {r['archived']})")
    if not r["report_repeat_issues"]:
        problems.append(f"the report counts {r['report_repeat_issues']} repeat issues")
    expected = {"recurrence": True, "new_issues": [], "archived": "did-not-hold", "report_repeat_issues": ">= 1"}
    got = {k: r[k] for k in ("recurrence", "new_issues", "archived", "report_repeat_issues")}
    return Check(not problems, expected, got, "; ".join(problems))


def store_check(run: CaseRun) -> Check:
    case, stored = run.result, run.store_result
    if case is None or stored is None:
        return Check(None, detail="offline mode only" if run.analyst != "offline" else "no issue on the store")

    def view(r: Any) -> dict[str, Any]:
        return {"escalated": r.escalated, "mode": getattr(r, "mode", None),
                "root": r.chain.root_node.statement if r.chain is not None and not r.escalated else None}

    want, got = view(case), view(stored)
    problems = [f"{k}: the case gives {want[k]!r}, the store path {got[k]!r}" for k in want if want[k] != got[k]]
    return Check(not problems, want, got, "; ".join(problems))


# --------------------------------------------------------------------------- the run


def summarise(cases: Sequence[CaseScore]) -> dict[str, Any]:
    scored = [c for c in cases if c.status in ("passed", "failed")]
    scores: dict[str, float | None] = {}
    counts: dict[str, dict[str, int]] = {}
    for name in CHECKS:
        applies = [c.checks[name].passed for c in scored if name in c.checks and c.checks[name].passed is not None]
        ok = sum(1 for p in applies if p)
        counts[name] = {"passed": ok, "applicable": len(applies)}
        scores[name] = round(ok / len(applies), 4) if applies else None
    mttrs = [c.mttr_s for c in scored if c.mttr_s is not None]
    return {
        "cases": len(cases),
        "passed": sum(1 for c in cases if c.status == "passed"),
        "failed": sum(1 for c in cases if c.status == "failed"),
        "errors": sum(1 for c in cases if c.status == "error"),
        "skipped": sum(1 for c in cases if c.status == "skipped"),
        "scores": scores,
        "counts": counts,
        "resolved": len(mttrs),
        "mttr_minutes": round(sum(mttrs) / len(mttrs) / 60.0, 2) if mttrs else None,
        "repeat_issues": sum(1 for c in scored if c.repeats_archive),
    }
