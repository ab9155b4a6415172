"""Verification of an applied fix, in three steps, each recorded (table `verifications`):

1. postcondition: the state the fix's postcondition observes is read (a probe of the file the fix changed,
   recorded as a `probe` signal) and must match it;
2. symptom: the symptom's own check passes again (a caller-supplied re-run of the health check, cron job or
   log pattern) or, without one, no failure matching the symptom's observe arrived after the fix;
3. watch: `remedy.watch_window_s` after the fix with no new occurrence of the failure; before the window
   ends the result is 'pending' (nothing is decided; the daemon checks again on a later pass).

All pass: the fix is 'verified', the issue 'resolved' (event 'verified', resolved_at = clock.now()) and the
chain archived as 'resolved'. Any step fails: the fix is rolled back and 'failed', the chain archived as
'did-not-hold', and the issue goes back to 'open' (event 'fix-did-not-hold', the evidence in attrs) so that
analysis drafts again knowing the earlier fix did not hold.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Literal

from pydantic import BaseModel

from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.errors import SelfhealError
from agent.models import FAILURE_LEVELS, Observe, Signal
from agent.remedy.base import RefusedError, RemedyError
from agent.remedy.catalog import get_action
from agent.remedy.executor import applied_at, context, undo
from agent.store import Store
from agent.store import chains as chain_store
from agent.store import fixes as fix_store
from agent.store import issues as issue_store

STEPS = ("postcondition", "symptom", "watch")
# What a symptom check may return: pass/fail, pass/fail with a reason, or the signals its re-run produced.
SymptomOutcome = bool | tuple[bool, str] | Iterable[Signal]


class StepResult(BaseModel):
    step: str
    passed: bool | None          # None: not decided yet (the watch window is still open)
    detail: str


class VerificationResult(BaseModel):
    fix_id: str
    issue_id: str | None
    chain_id: str | None
    status: Literal["pending", "verified", "failed"]
    steps: list[StepResult]
    applied_at: datetime | None = None
    watch_until: datetime | None = None
    resolved_at: datetime | None = None
    rolled_back: bool = False
    evidence: dict[str, Any] = {}

    @property
    def passed(self) -> bool:
        return self.status == "verified"

    @property
    def detail(self) -> str:
        decided = [s for s in self.steps if s.passed is False] or [s for s in self.steps if s.passed is None]
        if self.status == "verified":
            return "; ".join(f"{s.step}: {s.detail}" for s in self.steps)
        return "; ".join(f"{s.step}: {s.detail}" for s in decided)

    def to_json(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        out["fix"] = out.pop("fix_id")
        out["issue"] = out.pop("issue_id")
        out["chain"] = out.pop("chain_id")
        out["passed"] = self.passed
        return out


Verification = VerificationResult


def _matches(observe: Observe, signal: Signal) -> bool:
    from agent.gate import observe_matches

    return observe_matches(observe, signal)


def verify_fix(
    store: Store,
    cfg: Config,
    fix_id: str,
    clock: Clock | None = None,
    *,
    probe_runner: Any = None,
    symptom_check: Callable[..., SymptomOutcome] | None = None,
    watch: bool = True,
    cycle_id: str | None = None,
) -> VerificationResult:
    """Check an applied fix; resolve the issue when it held, roll back and reopen when it did not.

    `probe_runner`: an object with `.run(spec) -> list[Signal]` or a callable `(spec) -> list[Signal]` that reads
    the state the postcondition observes (default: the action's own probe of what it changed).
    `symptom_check`: called with the issue (a dict) to re-run the symptom's check; returns True/False,
    (passed, reason) or the signals the re-run produced (passing when none is a failure matching the symptom).
    `watch=False` skips the watch window (a manual check); idempotent once decided.
    """
    clock = clock or SystemClock()
    now = clock.now()
    fix = fix_store.get_fix(store, fix_id)
    if fix is None:
        raise SelfhealError(f"no fix {fix_id!r} in the store")
    if fix["kind"] != "eliminate":
        raise RefusedError(f"{fix_id} is a {fix['kind']}; only fixes of a root cause are verified")
    if fix["status"] in ("verified", "failed"):
        return recorded(store, fix)
    if fix["status"] != "applied":
        raise RefusedError(f"{fix_id} is {fix['status']}; only an applied fix can be verified")
    chain_row = chain_store.get_chain(store, fix["chain_id"]) if fix["chain_id"] else None
    if chain_row is None:
        raise SelfhealError(f"{fix_id} has no chain on record ({fix['chain_id']})")
    chain = chain_row["chain"]
    issue = issue_store.get_issue(store, fix["issue_id"]) if fix["issue_id"] else None
    since = applied_at(store, fix_id) or fix["updated_at"]
    window = timedelta(seconds=cfg.remedy.watch_window_s)
    action = get_action(fix["action"])
    post = (chain.fix.postcondition if chain.fix and chain.fix.postcondition else None) or \
        action.postcondition(fix["params"])
    symptom_obs = chain.symptom_node.observe
    service = (post.service if post else None) or (issue or {}).get("service") or \
        (symptom_obs.service if symptom_obs else None)

    steps: list[StepResult] = []
    evidence: dict[str, Any] = {}
    readings: list[Signal] = []       # the probe signals that show the postcondition's state, kept in the store

    # 1. the postcondition holds
    if post is None:
        steps.append(StepResult(step="postcondition", passed=False,
                                detail=f"no postcondition to check (the chain's fix gives none and {fix['action']} has no default)"))
    elif post.source == "probe":
        probed = _probe(store, cfg, clock, fix, action, post, probe_runner, service)
        evidence["probe"] = [s.message for s in probed[:20]]
        hits = [s for s in probed if _matches(post, s)]
        readings = hits[:1] or probed[:5]
        if not hits and not probed:
            # Nothing this action can read (a command ran): a probe recorded since the fix may show it.
            hits = [s for s in _signals_since(store, "probe", since) if _matches(post, s)]
        if hits:
            steps.append(StepResult(step="postcondition", passed=True, detail=f"probe read {hits[0].message!r}, "
                                    f"which matches {post.match or post.metric!r}"))
        elif probed or now - since >= window or not watch:
            seen = "; ".join(s.message for s in probed[:3]) or "nothing"
            steps.append(StepResult(step="postcondition", passed=False,
                                    detail=f"no probe reading matches {post.match or post.metric!r} (read: {seen})"))
        else:
            steps.append(StepResult(step="postcondition", passed=None,
                                    detail=f"waiting for a probe reading that matches {post.match or post.metric!r}"))
    else:
        arrived = [s for s in _signals_since(store, post.source, since) if _matches(post, s)]
        if arrived:
            steps.append(StepResult(step="postcondition", passed=True,
                                    detail=f"{post.source} signal {arrived[-1].id} after the fix: {arrived[-1].message!r}"))
        elif now - since >= window or not watch:
            steps.append(StepResult(step="postcondition", passed=False,
                                    detail=f"no {post.source} signal matching the postcondition arrived after the fix"))
        else:
            steps.append(StepResult(step="postcondition", passed=None,
                                    detail=f"waiting for a {post.source} signal matching the postcondition"))

    # 2. the symptom's own check passes again
    recurring = _recurrences(store, fix["issue_id"], symptom_obs, since)
    if recurring:
        evidence["recurrences"] = [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
                                   for r in recurring[:20]]
    if symptom_check is not None:
        passed, detail = _run_check(symptom_check, issue or {"id": fix["issue_id"]}, symptom_obs)
        steps.append(StepResult(step="symptom", passed=passed, detail=detail))
    elif symptom_obs is None and not fix["issue_id"]:
        steps.append(StepResult(step="symptom", passed=False,
                                detail="nothing to check the symptom by: no symptom observe and no issue"))
    elif recurring:
        steps.append(StepResult(step="symptom", passed=False,
                                detail=f"the symptom came back after the fix: {recurring[0]['message']!r} at "
                                       f"{recurring[0]['ts'].isoformat()}"))
    else:
        steps.append(StepResult(step="symptom", passed=True, detail="no failure matching the symptom since the fix"))

    # 3. the watch window passes without a new occurrence
    until = since + window
    if not watch:
        steps.append(StepResult(step="watch", passed=True, detail="watch window skipped"))
    elif recurring:
        steps.append(StepResult(step="watch", passed=False,
                                detail=f"{len(recurring)} new occurrence(s) of the failure within the watch window"))
    elif now >= until:
        steps.append(StepResult(step="watch", passed=True,
                                detail=f"no new occurrence in the {cfg.remedy.watch_window_s:g}s watch window"))
    else:
        steps.append(StepResult(step="watch", passed=None, detail=f"watching until {until.isoformat()}"))

    if "postcondition" in _record(store, fix, steps, now) and readings:
        from agent.store.signals import insert_signals

        insert_signals(store, readings)
    base = dict(fix_id=fix_id, issue_id=fix["issue_id"], chain_id=fix["chain_id"], steps=steps, applied_at=since,
                watch_until=until if watch else None, evidence=evidence)
    if any(s.passed is False for s in steps):
        return _did_not_hold(store, cfg, clock, fix, steps, evidence, base, cycle_id)
    if any(s.passed is None for s in steps):
        return VerificationResult(status="pending", **base)
    detail = "; ".join(f"{s.step}: {s.detail}" for s in steps)
    with store.transaction():
        fix_store.add_fix_event(store, fix_id, "verified", detail=detail, at=now)
        if fix["issue_id"]:
            issue_store.resolve(store, fix["issue_id"], now, reason=f"{fix_id} verified: {detail}", event="verified",
                                cycle_id=cycle_id, chain_id=fix["chain_id"], fix_id=fix_id)
        chain_store.archive_chain(store, fix["chain_id"], outcome="resolved", resolved_at=now, at=now)
    return VerificationResult(status="verified", resolved_at=now, **base)


# --------------------------------------------------------------------------- steps


def _probe(store: Store, cfg: Config, clock: Clock, fix: dict[str, Any], action: Any, post: Observe,
           probe_runner: Any, service: str | None) -> list[Signal]:
    ctx = context(store, cfg, clock, fix["id"])
    if probe_runner is not None:
        try:
            base = action.probe_spec(fix["params"], ctx) or {"kind": "postcondition"}
        except RemedyError:
            base = {"kind": "postcondition"}
        spec = {**base, "service": service, "fix": fix["id"], "action": fix["action"], "params": fix["params"],
                "observe": post.model_dump(mode="json", exclude_none=True)}
        run = getattr(probe_runner, "run", probe_runner)
        try:
            probed = list(run(spec))
        except SelfhealError as exc:
            probed = [Signal(ts=clock.now(), source="probe", message=f"probe failed: {exc}",
                             attrs={"probe": "remedy"})]
    else:
        try:
            probed = action.probe(fix["params"], ctx)
        except RemedyError as exc:
            probed = [Signal(ts=clock.now(), source="probe", message=f"probe failed: {exc}",
                             attrs={"probe": "remedy"})]
    out = []
    for s in probed:
        attrs = dict(s.attrs)
        attrs.setdefault("fix", fix["id"])
        out.append(Signal.model_validate({**s.model_dump(exclude={"id"}), "id": None, "service": s.service or service,
                                          "attrs": attrs}))
    return out


def _signals_since(store: Store, source: str, since: datetime) -> list[Signal]:
    from agent.store.signals import query_signals

    return [s for s in query_signals(store, source=source, since=since) if s.ts > since]


def _recurrences(store: Store, issue_id: str | None, symptom: Observe | None, since: datetime) -> list[dict[str, Any]]:
    """Failures after the fix: new occurrences of the issue, and failure signals matching the symptom."""
    found: dict[str, dict[str, Any]] = {}
    if issue_id:
        for o in issue_store.occurrences(store, issue_id):
            if o["ts"] > since and (o.get("level") in FAILURE_LEVELS or o.get("level") is None):
                found[o["signal_id"]] = {"signal": o["signal_id"], "ts": o["ts"], "message": o.get("message") or ""}
    if symptom is not None:
        for s in _signals_since(store, symptom.source, since):
            if s.is_failure and _matches(symptom, s):
                found.setdefault(s.id, {"signal": s.id, "ts": s.ts, "message": s.message})
    return sorted(found.values(), key=lambda r: r["ts"])


def _run_check(check: Callable[..., SymptomOutcome], issue: dict[str, Any],
               symptom: Observe | None) -> tuple[bool, str]:
    try:
        out = check(issue)
    except Exception as exc:  # the check is the caller's code; failing to confirm is not confirming
        return False, f"the symptom's check could not run: {type(exc).__name__}: {exc}"
    if isinstance(out, bool):
        return out, "the symptom's check passes again" if out else "the symptom's check still fails"
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], bool):
        return out[0], str(out[1])
    signals = list(out)
    failing = [s for s in signals if s.is_failure and (symptom is None or _matches(symptom, s))]
    if failing:
        return False, f"the symptom's check still fails: {failing[0].message!r}"
    shown = f": {signals[-1].message!r}" if signals else ""
    return True, f"the symptom's check passes again{shown}"


def _record(store: Store, fix: dict[str, Any], steps: list[StepResult], now: datetime) -> set[str]:
    """A decided step is recorded when it differs from what is on record (a pending re-check adds nothing)."""
    latest: dict[str, bool] = {}
    for v in fix_store.verifications(store, fix_id=fix["id"]):
        latest[v["step"]] = v["passed"]
    recorded = set()
    for s in steps:
        if s.passed is None or latest.get(s.step) is s.passed:
            continue
        fix_store.add_verification(store, fix_id=fix["id"], issue_id=fix["issue_id"], step=s.step, passed=s.passed,
                                   detail=s.detail, at=now)
        recorded.add(s.step)
    return recorded


def _did_not_hold(store: Store, cfg: Config, clock: Clock, fix: dict[str, Any], steps: list[StepResult],
                  evidence: dict[str, Any], base: dict[str, Any], cycle_id: str | None) -> VerificationResult:
    now = clock.now()
    failed = [s for s in steps if s.passed is False]
    reason = "; ".join(f"{s.step}: {s.detail}" for s in failed)
    evidence = dict(evidence, failed_steps=[s.model_dump() for s in failed], fix=fix["id"], action=fix["action"],
                    params=fix["params"])
    rolled_back = True
    try:
        notes = undo(store, cfg, fix, clock)
        evidence["rollback"] = notes
    except (RemedyError, OSError) as exc:
        rolled_back = False
        evidence["rollback_error"] = str(exc)
    with store.transaction():
        fix_store.add_fix_event(store, fix["id"], "failed", detail=f"did not hold: {reason}"
                                + ("" if rolled_back else f"; rollback failed: {evidence['rollback_error']}"), at=now)
        chain_store.archive_chain(store, fix["chain_id"], outcome="did-not-hold", resolved_at=None, at=now)
        if fix["issue_id"]:
            issue_store.add_event(store, fix["issue_id"], "open" if rolled_back else "needs-human", "fix-did-not-hold",
                                  now, reason=f"{fix['id']} did not hold: {reason}", chain_id=fix["chain_id"],
                                  fix_id=fix["id"], cycle_id=cycle_id, attrs=evidence)
    base = dict(base, evidence=evidence)
    return VerificationResult(status="failed", rolled_back=rolled_back, **base)


def recorded(store: Store, fix: dict[str, Any]) -> VerificationResult:
    """The outcome of a fix whose verification was decided earlier, from the store."""
    rows = fix_store.verifications(store, fix_id=fix["id"])
    latest: dict[str, dict[str, Any]] = {}
    for v in rows:
        latest[v["step"]] = v
    steps = [StepResult(step=s, passed=latest[s]["passed"], detail=latest[s]["detail"] or "")
             for s in STEPS if s in latest]
    status = "verified" if fix["status"] == "verified" else "failed"
    issue = issue_store.get_issue(store, fix["issue_id"]) if fix["issue_id"] else None
    return VerificationResult(fix_id=fix["id"], issue_id=fix["issue_id"], chain_id=fix["chain_id"], status=status,
                              steps=steps, applied_at=applied_at(store, fix["id"]),
                              resolved_at=(issue or {}).get("resolved_at") if status == "verified" else None,
                              rolled_back=status == "failed")
