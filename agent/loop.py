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
    errors: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        """Whether the pass changed anything (the daemon passes again at once while it does)."""
        return bool(self.verdicts or self.analysed or self.planned or self.applied or self.resolved
                    or self.did_not_hold or self.learned or self.warnings_closed)

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
    for warning in result.warnings:
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
    """A warning issue (a learned precursor fired) closes once its watch window passed, saying whether the symptom followed."""
    window = timedelta(seconds=cfg.remedy.watch_window_s)
    now = clock.now()
    for issue in issue_store.list_issues(store, status=issue_store.ACTIVE, kind="warning"):
        if now - issue["opened_at"] < window:
            continue
        followed = [i for i in issue_store.list_issues(store, kind="failure")
                    if i["service"] == issue["service"] and i["opened_at"] >= issue["opened_at"]
                    and i["opened_at"] <= issue["opened_at"] + window]
        reason = (f"precursor was followed by {followed[0]['id']}" if followed
                  else "precursor cleared: no failure followed within the watch window")
        issue_store.resolve(store, issue["id"], now, reason=reason, event="warning-closed", cycle_id=cycle_id)
        report.warnings_closed.append(issue["id"])
        hook("warning", issue["id"], {"reason": reason})


def _analyse(store: Store, cfg: Config, clock: Clock, report: PassReport, hook: StageHook) -> None:
    from agent.analysis import analyze_issue

    for issue in issue_store.list_issues(store, status=("open", "analysing"), kind="failure"):
        hook("analyse", issue["id"], {"title": issue["title"]})
        result = analyze_issue(store, cfg, issue["id"], clock)
        report.analysed.append(issue["id"])
        if result.escalated:
            report.escalated.append(issue["id"])
        hook("gate", issue["id"], {"passed": not result.escalated, "result": result})


def _fix(store: Store, cfg: Config, clock: Clock, report: PassReport, hook: StageHook, apply: bool) -> None:
    from agent.remedy import apply_fix, plan_fix

    for issue in issue_store.list_issues(store, status="fixing"):
        chain = chain_store.latest_passed_chain(store, issue["id"])
        if chain is None:
            continue
        existing = [f for f in fix_store.fixes(store, issue_id=issue["id"])
                    if f["chain_id"] == chain["id"] and f["kind"] == "eliminate"]
        fix = existing[-1] if existing else None
        if fix is None:
            plan = plan_fix(store, cfg, issue["id"], clock)
            fix = fix_store.get_fix(store, plan.fix_id)
            report.planned.append(fix["id"])
            hook("plan", issue["id"], {"fix": fix["id"], "plan": fix["plan"]})
        if apply and fix["status"] == "planned":
            apply_fix(store, cfg, fix["id"], clock)
            report.applied.append(fix["id"])
            hook("apply", issue["id"], {"fix": fix["id"], "action": fix["action"]})


def _verify(store: Store, cfg: Config, clock: Clock, report: PassReport, hook: StageHook,
            symptom_checks: Mapping[str, SymptomCheck], cycle_id: str | None) -> None:
    from agent.learning import learn_from_chain
    from agent.remedy import verify_fix

    for issue in issue_store.list_issues(store, status="verifying"):
        applied = [f for f in fix_store.fixes(store, issue_id=issue["id"])
                   if f["kind"] == "eliminate" and f["status"] == "applied"]
        if not applied:
            continue
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
    installed = _install_stop_handlers(stop)
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


def _install_stop_handlers(stop: threading.Event) -> list[tuple[int, Any]]:
    if threading.current_thread() is not threading.main_thread():
        return []
    installed = []
    for sig in (signals_mod.SIGTERM, signals_mod.SIGINT):
        installed.append((sig, signals_mod.getsignal(sig)))
        signals_mod.signal(sig, lambda *_: stop.set())
    return installed
