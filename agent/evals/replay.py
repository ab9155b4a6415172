"""One incident replayed through the loop on a fresh store with a fake clock; what happened, as plain data.

The timeline (all on the incident's own clock, nothing sleeps):

1. the archive (archive.json) is stored first, as chains resolved at their `resolved_at`;
2. triage: the signals go in file order, in sensor passes: a pass holds the signals recorded within
   `pass_interval_s` of its first one and is judged when the clock reaches its last one (one pass per signal
   judges alike, only slower: a verdict depends on the history before the signal, not on the clock);
3. analysis once every recorded signal is in (the probe signals are what analysis read): the analyst chosen by
   the mode drafts on the incident as an analysis case (scored); offline, the store path runs too
   (`analyze_issue` on the replayed store, no probes) and must agree; with a model, the case's result is
   recorded on the store as analysis records it;
4. remedy: the issue's gate-passed chain is planned in dry run against the fixture copy (`plan_fix`); a plan
   that only edits files is applied to the copy, verified at once (pending: the watch window is open), then
   again after the clock moves past the watch window: the postcondition is read back from the copy and no
   failure came back, so the issue resolves and the chain is archived (simulated MTTR: resolution minus
   the issue's first detection). A plan that runs a command is scored on its plan and never run;
5. repeat detection: the failures of the symptom's fingerprint are replayed one minute after the resolution
   (fresh ids, same spacing): triage must judge them a recurrence of the resolved issue, the chain must be
   archived as did-not-hold and the report must count a repeat issue.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from agent.clock import FakeClock
from agent.evals.incident import Incident
from agent.models import AnalysisResult, Chain, GateResult, Signal, TriageResult

if TYPE_CHECKING:
    from agent.analysis.knowledge import Mode
    from agent.config import Config
    from agent.rules_engine import TriageRules
    from agent.store import Store

REPEAT_DELAY = timedelta(minutes=1)


@dataclass
class Settings:
    """What every case of one eval run shares."""

    cfg: "Config"                     # the user's config (the sandbox derives each case's from it)
    mode: str = "offline"             # offline | live | replay
    modes: "Sequence[Mode] | None" = None   # the knowledge base (None: the configured one)
    rules: "TriageRules | None" = None
    pass_interval_s: float = 300.0
    record: bool = False              # live: write each run to the incident's cassettes/analysis.yaml
    tmp: Path | None = None


@dataclass
class CaseRun:
    name: str
    verdicts: dict[str, str] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    symptom_verdict: str | None = None
    symptom_issue: str | None = None
    result: AnalysisResult | None = None         # the scored analysis (the case path)
    store_result: AnalysisResult | None = None   # offline: analyze_issue on the replayed store
    analyst: str = "offline"
    model: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    plan_error: str | None = None
    verification: dict[str, Any] | None = None
    mttr_s: float | None = None
    repeat: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(self.verdicts.values()))


def passes(signals: Sequence[Signal], interval_s: float) -> Iterator[list[Signal]]:
    """The signals in file order, cut into sensor passes of at most `interval_s` of recorded time."""
    batch: list[Signal] = []
    for s in signals:
        if batch and (s.ts - batch[0].ts).total_seconds() > interval_s:
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch


class _Timer:
    def __init__(self, run: CaseRun):
        self.run = run
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.run.timings[name] = round(self.run.timings.get(name, 0.0) + (now - self.t) * 1000.0, 1)
        self.t = now


def run_incident(incident: Incident, settings: Settings) -> CaseRun:
    from agent.evals.sandbox import Sandbox
    from agent.store import Store

    box = Sandbox.create(incident.fixtures, settings.tmp)
    store = Store.open(None)
    try:
        return _run(incident, settings, box, store)
    finally:
        store.close()
        box.close()


def _run(incident: Incident, settings: Settings, box: Any, store: "Store") -> CaseRun:
    from agent.evals.sandbox import eval_config
    from agent.store import issues as issue_store
    from agent.store import state as state_store
    from agent.triage import Triage

    run = CaseRun(name=incident.name)
    timer = _Timer(run)
    # offline means offline: a configured model drafts only in the live and replay modes
    model = settings.cfg.analysis.model if settings.mode != "offline" else None
    cfg = eval_config(settings.cfg, box.home, box.root, model=model)
    first = min([s.ts for s in incident.signals] + [e.resolved_at for e in incident.archive if e.resolved_at])
    clock = FakeClock(first)
    cycle = state_store.start_cycle(store, "eval", clock.now())
    _store_archive(store, incident)

    triage = Triage(store, cfg, clock, rules=settings.rules)
    results: list[TriageResult] = []
    for batch in passes(incident.signals, settings.pass_interval_s):
        clock.set(max(clock.now(), max(s.ts for s in batch)))
        results += triage.judge(batch)
    run.verdicts = {r.signal_id: r.verdict for r in results}
    run.issues = [i["id"] for i in issue_store.list_issues(store)]
    mine = next((r for r in results if r.signal_id == incident.expected.symptom_signal), None)
    run.symptom_verdict = mine.verdict if mine else None
    run.symptom_issue = mine.issue if mine else None
    timer.lap("triage")

    _analyse(incident, settings, cfg, store, clock, run)
    timer.lap("analysis")
    if run.symptom_issue is not None:
        _remedy(store, cfg, clock, run, box.root, cycle, incident)
        timer.lap("remedy")
        if run.verification and run.verification.get("status") == "verified":
            fingerprint = mine.fingerprint if mine else None
            fingerprints = {r.signal_id: r.fingerprint for r in results}
            _repeat(incident, store, clock, triage, run, fingerprint, fingerprints)
            timer.lap("repeat")
    state_store.end_cycle(store, cycle, clock.now())
    return run


def _store_archive(store: "Store", incident: Incident) -> None:
    """Earlier chains as a store keeps them: saved, then archived resolved at their `resolved_at`."""
    from agent.store import chains as chain_store

    for entry in incident.archive:
        cid = chain_store.save_chain(store, entry.chain, issue_id=None, analyst="archive", passed=True,
                                     at=entry.resolved_at)
        chain_store.archive_chain(store, cid, outcome="resolved", resolved_at=entry.resolved_at, at=entry.resolved_at)


# --------------------------------------------------------------------------- analysis


def _analyse(incident: Incident, settings: Settings, cfg: "Config", store: "Store", clock: FakeClock,
             run: CaseRun) -> None:
    from agent.evals import analysts

    case = incident.case()
    if settings.mode == "offline":
        run.result = analysts.analyse_offline(case, cfg, settings.modes)
        run.analyst = "offline"
        if run.symptom_issue is not None:
            from agent.analysis import analyze_issue

            run.store_result = analyze_issue(store, cfg, run.symptom_issue, clock, probes=False, modes=settings.modes)
        return
    if settings.mode == "replay":
        path = incident.cassette
        assert path is not None  # the runner skips incidents without one
        run.result, run.model = analysts.analyse_replayed(case, cfg, path)
    else:
        record_to = incident.path / "cassettes" / "analysis.yaml" if settings.record else None
        run.result, run.model = analysts.analyse_live(case, cfg, record_to)
    run.analyst = f"model:{run.model.get('model')}"
    if run.symptom_issue is not None:
        record_analysis(store, run.symptom_issue, run.result, run.analyst, clock)


def record_analysis(store: "Store", issue_id: str, result: AnalysisResult, analyst: str, clock: FakeClock) -> str | None:
    """A case's analysis on the store, as `analyze_issue` records one: chain, gate result, the issue's status."""
    from agent.store import chains as chain_store
    from agent.store.issues import add_event, get_issue

    now = clock.now()
    issue = get_issue(store, issue_id)
    add_event(store, issue_id, "analysing", "analysing", now, signal_id=issue["first_signal"] if issue else None,
              reason="analysing the recorded incident")
    chain_id = None
    if result.chain is not None:
        passed = result.gate.passed if result.gate else None
        chain_id = chain_store.save_chain(store, result.chain, issue_id=issue_id, analyst=analyst,
                                          mode=getattr(result, "mode", None), passed=passed, at=now)
        if result.gate is not None:
            chain_store.save_gate_result(store, chain_id, issue_id, result.gate, at=now)
    if result.escalated:
        add_event(store, issue_id, "needs-human", "escalated", now, chain_id=chain_id, reason=result.reason[:4000])
    else:
        add_event(store, issue_id, "fixing", "analysed", now, chain_id=chain_id, reason=result.reason[:4000])
    return chain_id


# --------------------------------------------------------------------------- remedy and verification


def _sandbox_chain(store: "Store", issue_id: str, root: Path, clock: FakeClock) -> dict[str, tuple[str, str]]:
    """When the fix names files by absolute paths, store the chain again with them mapped onto the fixture copy
    (the same gate verdict), so the remedy plans against the copy."""
    from agent.evals.sandbox import sandboxed
    from agent.store import chains as chain_store

    row = chain_store.latest_passed_chain(store, issue_id)
    if row is None:
        return {}
    chain: Chain = row["chain"]
    mapped_chain, mapped = sandboxed(chain, root)
    if mapped:
        cid = chain_store.save_chain(store, mapped_chain, issue_id=issue_id, analyst="eval:sandbox", mode=row["mode"],
                                     passed=True, at=clock.now())
        gates = chain_store.gate_results(store, chain_id=row["id"])
        if gates:
            g = gates[-1]
            chain_store.save_gate_result(store, cid, issue_id, GateResult.model_validate(
                {"passed": g["passed"], "elapsed_ms": g["elapsed_ms"], "checks": g["checks"]}), at=clock.now())
    return mapped


def _remedy(store: "Store", cfg: "Config", clock: FakeClock, run: CaseRun, root: Path, cycle: str,
            incident: Incident) -> None:
    from agent.remedy import apply_fix, plan_fix, verify_fix
    from agent.remedy.base import RemedyError
    from agent.store import chains as chain_store
    from agent.store import issues as issue_store

    issue_id = run.symptom_issue
    assert issue_id is not None
    if chain_store.latest_passed_chain(store, issue_id) is None:
        return  # escalated: nothing to plan
    mapped = _sandbox_chain(store, issue_id, root, clock)
    try:
        plan = plan_fix(store, cfg, issue_id, clock)
    except RemedyError as exc:
        run.plan_error = str(exc)
        return
    shown = plan.plan.to_json() if plan.plan else {}
    run.plan = {"fix": plan.fix_id, "action": plan.action, "params": plan.params, "summary": shown.get("summary", ""),
                "noop": bool(shown.get("noop")), "diff": shown.get("diff", ""), "commands": shown.get("commands", []),
                "files": [c["file"] for c in shown.get("changes", [])],
                "mapped": {k: {"given": a, "sandbox": b} for k, (a, b) in mapped.items()}}
    if plan.plan is None or plan.plan.commands or plan.plan.services:
        ran = " ".join(plan.plan.commands[0]) if plan.plan and plan.plan.commands else "a restart"
        run.verification = {"status": "not simulated",
                            "detail": f"the fix runs a command ({ran}): an eval plans it but never runs it"}
        return
    from agent.evals.sandbox import SandboxProbe, virtual_prefixes
    from agent.remedy.executor import context

    reader = SandboxProbe(root, virtual_prefixes(root, incident.signals), context(store, cfg, clock, plan.fix_id))
    try:
        apply_fix(store, cfg, plan.fix_id, clock)
        first = verify_fix(store, cfg, plan.fix_id, clock, probe_runner=reader, cycle_id=cycle)
        clock.sleep(cfg.remedy.watch_window_s + 1.0)
        final = first if first.status != "pending" else \
            verify_fix(store, cfg, plan.fix_id, clock, probe_runner=reader, cycle_id=cycle)
    except RemedyError as exc:
        run.verification = {"status": "error", "detail": str(exc)}
        return
    run.verification = {"status": final.status, "first": first.status, "detail": final.detail,
                        "steps": [s.model_dump() for s in final.steps]}
    issue = issue_store.get_issue(store, issue_id)
    if issue and issue["status"] == "resolved" and issue["resolved_at"] is not None:
        run.mttr_s = (issue["resolved_at"] - issue["opened_at"]).total_seconds()


# --------------------------------------------------------------------------- repeat detection


def _repeat(incident: Incident, store: "Store", clock: FakeClock, triage: Any, run: CaseRun,
            fingerprint: str | None, fingerprints: dict[str, str]) -> None:
    from agent.report import compute_report
    from agent.store import chains as chain_store
    from agent.store import issues as issue_store

    issue_id = run.symptom_issue
    issue = issue_store.get_issue(store, issue_id) if issue_id else None
    if issue is None or issue["resolved_at"] is None or fingerprint is None:
        return
    failures = [s for s in incident.signals
                if s.source != "probe" and s.is_failure and fingerprints.get(s.id or "") == fingerprint]
    if not failures:
        return
    shift = issue["resolved_at"] + REPEAT_DELAY - failures[0].ts
    again = [s.model_copy(update={"id": f"{s.id}~repeat", "ts": s.ts + shift}) for s in failures]
    clock.set(max(clock.now(), again[-1].ts))
    judged = triage.judge(again)
    archived = [r["outcome"] for r in chain_store.archive_rows(store, issue_id)]
    report = compute_report(store)
    run.repeat = {
        "replayed": len(again),
        "verdicts": {r.signal_id: r.verdict for r in judged},
        "recurrence": any(r.verdict == "recurrence" and r.issue == issue_id for r in judged),
        "new_issues": sorted({r.issue for r in judged if r.verdict == "new" and r.issue}),
        "archived": archived[-1] if archived else None,
        "report_repeat_issues": report.get("repeat_issues"),
    }
