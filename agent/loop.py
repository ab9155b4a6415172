"""One pass of the loop, and the daemon that repeats it.

A pass is a function of (store, config, clock): sense, triage, analyse the
open issues, gate (inside analysis), fix, verify, learn. Every step reads what
to do from the store and records what it did there before the next step
starts, so a pass interrupted anywhere (Ctrl-C, SIGKILL, a crash) is finished
by the next one without repeating work: an issue's status says which step it
is waiting for, and fixes, verifications and learned rules are keyed so that a
second attempt finds the first.
"""

from __future__ import annotations

import logging
import signal as signals_mod
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Mapping

from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.store import Store
from agent.store import chains as chain_store
from agent.store import fixes as fix_store
from agent.store import issues as issue_store

log = logging.getLogger("selfheal.loop")

# Called with (stage, issue id or None, detail) as the pass moves on; the demo draws its progress from it.
StageHook = Callable[[str, str | None, dict[str, Any]], None]
# Re-runs the symptom's own check for an issue (the health check, the cron job); True when it passes.
SymptomCheck = Callable[[dict[str, Any]], bool]


@dataclass
class PassReport:
    sensed: int = 0
    verdicts: Counter = field(default_factory=Counter)
    analysed: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    did_not_hold: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    learned: list[str] = field(default_factory=list)
    warnings_closed: list[str] = field(default_factory=list)
    grouped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        """Whether the pass changed anything (the daemon passes again at once while it does)."""
        return bool(self.verdicts or self.analysed or self.planned or self.applied or self.resolved
                    or self.did_not_hold or self.learned or self.warnings_closed or self.grouped)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["verdicts"] = dict(self.verdicts)
        return out


def _noop(stage: str, issue: str | None, detail: dict[str, Any]) -> None:
    return None


def run_pass(
    store: Store,
    cfg: Config,
    clock: Clock | None = None,
    *,
    sense: bool = True,
    apply: bool | None = None,
    symptom_checks: Mapping[str, SymptomCheck] | None = None,
    cycle_id: str | None = None,
    on_stage: StageHook | None = None,
    stop: threading.Event | None = None,
) -> PassReport:
    """One pass through the loop. `apply` None means: apply when the config's mode is 'auto'."""
    clock = clock or SystemClock()
    hook = on_stage or _noop
    apply = (cfg.mode == "auto") if apply is None else apply
    report = PassReport()
    steps = (
        ("sense", lambda: _sense(store, cfg, clock, report, hook) if sense else None),
        ("triage", lambda: _triage(store, cfg, clock, report, hook)),
        ("warnings", lambda: _close_warnings(store, cfg, clock, report, hook, cycle_id)),
        ("analyse", lambda: _analyse(store, cfg, clock, report, hook)),
        ("fix", lambda: _fix(store, cfg, clock, report, hook, apply)),
        ("verify", lambda: _verify(store, cfg, clock, report, hook, symptom_checks or {}, cycle_id)),
    )
    for name, step in steps:
        if stop is not None and stop.is_set():
            break
        try:
            step()
        except Exception as exc:  # one failing step must not stop the others; it is reported and retried next pass
            from agent.errors import SelfhealError

            if not isinstance(exc, SelfhealError):
                log.exception("step %s failed", name)
            report.errors.append(f"{name}: {exc}")
            hook("error", None, {"step": name, "error": str(exc)})
    return report


# --------------------------------------------------------------------------- steps


def _sense(store: Store, cfg: Config, clock: Clock, report: PassReport, hook: StageHook) -> None:
    if not cfg.sensors and not cfg.openclaw:
        return
    from agent.sensors.runner import sense_once

    result = sense_once(store, cfg, clock)
    report.sensed = result.stored
    for warning in result.all_warnings():
        report.errors.append(f"sense: {warning}")
    hook("sense", None, {"stored": result.stored})


def _triage(store: Store, cfg: Config, clock: Clock, report: PassReport, hook: StageHook) -> None:
    from agent.triage import triage_pending

    for r in triage_pending(store, cfg, clock):
        report.verdicts[r.verdict] += 1
        if r.verdict in ("new", "recurrence"):
            hook("triage", r.issue, {"verdict": r.verdict, "rule": r.rule, "signal": r.signal_id})
        elif r.verdict == "noise":
            hook("noise", None, {"rule": r.rule, "signal": r.signal_id})


def _close_warnings(store: Store, cfg: Config, clock: Clock, report: PassReport, hook: StageHook,
                    cycle_id: str | None) -> None:
    """A warning issue (a learned precursor fired) closes once its precursor has been quiet for the watch
    window, saying whether the failure it warns of followed."""
    window = timedelta(seconds=cfg.remedy.watch_window_s)
    now = clock.now()
    for issue in issue_store.list_issues(store, status=issue_store.ACTIVE, kind="warning"):
        seen = [o["ts"] for o in issue_store.occurrences(store, issue["id"])] or [issue["opened_at"]]
        if now - max(seen) < window:
            continue
        opened = issue_store.triage_results(store, verdict="new") + issue_store.triage_results(store, verdict="recurrence")
        followed = [o for o in opened if o["ts"] is not None and issue["opened_at"].replace(tzinfo=None) <= o["ts"] <= now.replace(tzinfo=None)
                    and o["issue_id"] != issue["id"] and _is_failure_issue(store, o["issue_id"])]
        reason = (f"the failure followed the precursor: {followed[0]['issue_id']}" if followed
                  else "precursor cleared: no failure followed it within the watch window")
        issue_store.resolve(store, issue["id"], now, reason=reason, event="warning-closed", cycle_id=cycle_id)
        report.warnings_closed.append(issue["id"])
        hook("warning", issue["id"], {"reason": reason})


def _is_failure_issue(store: Store, issue_id: str | None) -> bool:
    found = issue_store.get_issue(store, issue_id) if issue_id else None
    return bool(found and found["kind"] == "failure")


# Issues whose symptom a person or a client sees are explained first; log lines and metrics of the
# same incident are usually links of that explanation.
_SOURCE_RANK = {"health": 0, "heartbeat": 0, "cron": 0, "alert": 0, "metric": 1, "log": 2}


def _analyse(store: Store, cfg: Config, clock: Clock, report: PassReport, hook: StageHook) -> None:
    from agent.analysis import analyze_issue

    now = clock.now()
    wait = timedelta(seconds=cfg.analysis.group_wait_s)
    pending = issue_store.list_issues(store, status=("open", "analysing"), kind="failure")
    # Alertmanager-style group_wait: a service's new issues wait until none has opened for a while,
    # so the analyst sees the whole incident and explains the user-facing symptom first.
    quiet_since: dict[str | None, Any] = {}
    for i in pending:
        quiet_since[i["service"]] = max(quiet_since.get(i["service"], i["opened_at"]), i["opened_at"])
    waiting = [i for i in pending if now - quiet_since[i["service"]] >= wait]
    waiting.sort(key=lambda i: (_SOURCE_RANK.get(i["source"] or "", 3), i["opened_at"], i["num"]))
    # An issue escalated on its own may turn out to be a link of a chain validated since.
    for issue in issue_store.list_issues(store, status="needs-human", kind="failure"):
        parent = _explaining_issue(store, issue)
        if parent is not None:
            _group(store, issue, parent, now, report, hook)
    for issue in waiting:
        parent = _explaining_issue(store, issue)
        if parent is not None:
            _group(store, issue, parent, now, report, hook)
            continue
        hook("analyse", issue["id"], {"title": issue["title"]})
        result = analyze_issue(store, cfg, issue["id"], clock)
        report.analysed.append(issue["id"])
        if result.escalated:
            report.escalated.append(issue["id"])
        hook("gate", issue["id"], {"passed": not result.escalated, "result": result})


def _explaining_issue(store: Store, issue: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """An active issue whose validated chain has a node observed by this issue's first signal.

    Such an issue is a link of another issue's causal chain (the pool timeouts behind a failing
    health check): it is grouped under that issue and resolved with it, not analysed on its own.
    """
    from agent.gate import observe_matches
    from agent.store import signals as signal_store

    first = signal_store.query_signals(store, ids=[issue["first_signal"]]) if issue["first_signal"] else []
    if not first:
        return None
    for other in issue_store.list_issues(store, status=("fixing", "verifying")):
        if other["id"] == issue["id"]:
            continue
        chain_row = chain_store.latest_passed_chain(store, other["id"])
        if chain_row is None:
            continue
        for node in chain_row["chain"].nodes:
            if node.observe is not None and observe_matches(node.observe, first[0]):
                return other, node.id
    return None


def _group(store: Store, issue: dict[str, Any], parent: tuple[dict[str, Any], str], now: Any,
           report: PassReport, hook: StageHook) -> None:
    other, node_id = parent
    chain_row = chain_store.latest_passed_chain(store, other["id"])
    issue_store.add_event(store, issue["id"], "verifying", "grouped", now, chain_id=chain_row["id"],
                          reason=f"a link of {other['id']}'s causal chain (node {node_id}); resolved with it",
                          attrs={"parent": other["id"], "node": node_id})
    report.grouped.append(issue["id"])
    hook("group", issue["id"], {"parent": other["id"], "node": node_id})


def _grouped_children(store: Store, parent_id: str) -> list[dict[str, Any]]:
    children = []
    for issue in issue_store.list_issues(store, status="verifying"):
        events = issue_store.events(store, issue["id"])
        if events and events[-1]["event"] == "grouped" and events[-1]["attrs"].get("parent") == parent_id:
            children.append(issue)
    return children


def _fix(store: Store, cfg: Config, clock: Clock, report: PassReport, hook: StageHook, apply: bool) -> None:
    from agent.remedy import apply_fix, plan_fix

    from agent.errors import SelfhealError

    for issue in issue_store.list_issues(store, status="fixing"):
        if chain_store.latest_passed_chain(store, issue["id"]) is None:
            continue
        known = {f["id"] for f in fix_store.fixes(store, issue_id=issue["id"])}
        try:
            # plan_fix is idempotent: it returns the standing fix, or plans anew when that one was superseded.
            plan = plan_fix(store, cfg, issue["id"], clock)
            fix = fix_store.get_fix(store, plan.fix_id)
            if fix["id"] not in known:
                report.planned.append(fix["id"])
                hook("plan", issue["id"], {"fix": fix["id"], "plan": fix["plan"]})
            if apply and fix["status"] in ("planned", "applying"):
                apply_fix(store, cfg, fix["id"], clock)
                report.applied.append(fix["id"])
                hook("apply", issue["id"], {"fix": fix["id"], "action": fix["action"]})
        except SelfhealError as exc:  # a refused or failed fix moved this issue to needs-human; the others go on
            report.errors.append(f"fix {issue['id']}: {exc}")
            hook("error", issue["id"], {"step": "fix", "error": str(exc)})


def _verify(store: Store, cfg: Config, clock: Clock, report: PassReport, hook: StageHook,
            symptom_checks: Mapping[str, SymptomCheck], cycle_id: str | None) -> None:
    from agent.learning import learn_from_chain
    from agent.remedy import verify_fix

    for issue in issue_store.list_issues(store, status="verifying"):
        applied = [f for f in fix_store.fixes(store, issue_id=issue["id"])
                   if f["kind"] == "eliminate" and f["status"] == "applied"]
        if not applied:
            continue  # grouped issues have no fix of their own: they resolve with their parent
        fix = applied[-1]
        check = symptom_checks.get(issue["id"]) or symptom_checks.get(issue["fingerprint"])
        result = verify_fix(store, cfg, fix["id"], clock, symptom_check=check, cycle_id=cycle_id)
        if result.status == "pending":
            report.pending.append(issue["id"])
            continue
        hook("verify", issue["id"], {"fix": fix["id"], "passed": result.passed, "detail": result.detail})
        if not result.passed:
            report.did_not_hold.append(issue["id"])
            continue
        report.resolved.append(issue["id"])
        for child in _grouped_children(store, issue["id"]):
            issue_store.resolve(store, child["id"], clock.now(), event="resolved-with-parent", cycle_id=cycle_id,
                                chain_id=fix["chain_id"], fix_id=fix["id"],
                                reason=f"resolved with {issue['id']}: its chain's fix {fix['id']} was verified")
            report.resolved.append(child["id"])
        added = learn_from_chain(store, fix["chain_id"], at=clock.now())
        report.learned.extend(added)
        hook("learn", issue["id"], {"rules": added})


# --------------------------------------------------------------------------- the daemon


def run_daemon(cfg: Config, clock: Clock | None = None, *, once: bool = False, interval_s: float | None = None,
               stop: threading.Event | None = None, on_pass: Callable[[PassReport], None] | None = None) -> int:
    """Pass after pass until stopped. Holds the writer lock for its whole life, the database only during a pass.

    SIGTERM and SIGINT stop it between steps. Returns the number of passes run.
    """
    from agent.store import state as state_store

    clock = clock or SystemClock()
    stop = stop or threading.Event()
    interval = cfg.daemon.interval_s if interval_s is None else interval_s
    installed = install_stop_handlers(stop)
    store = Store.open(cfg.store_path)
    passes = 0
    try:
        cycle_id = state_store.start_cycle(store, "daemon", clock.now())
        while not stop.is_set():
            report = run_pass(store, cfg, clock, cycle_id=cycle_id, stop=stop)
            passes += 1
            log.info("pass", extra={"event": "pass", **report.as_dict()})
            if on_pass:
                on_pass(report)
            if once:
                break
            store.pause()
            try:
                if not report.busy:
                    stop.wait(interval)
            finally:
                store.resume()
        state_store.end_cycle(store, cycle_id, clock.now())
    finally:
        store.close()
        for sig, previous in installed:
            signals_mod.signal(sig, previous)
    return passes


def install_stop_handlers(stop: threading.Event) -> list[tuple[int, Any]]:
    """SIGTERM and SIGINT set `stop` (a long-running command stops between steps); returns what to restore."""
    if threading.current_thread() is not threading.main_thread():
        return []
    installed = []
    for sig in (signals_mod.SIGTERM, signals_mod.SIGINT):
        installed.append((sig, signals_mod.getsignal(sig)))
        signals_mod.signal(sig, lambda *_: stop.set())
    return installed
