"""Planning, applying and rolling back fixes, with every step on record in the store.

- `plan_fix` turns the issue's latest gate-passed chain into a dry-run plan and records it (kind 'eliminate');
- `apply_fix` backs up, records the backup ('applying'), changes things, records 'applied' and puts the
  issue in 'verifying'; a fix interrupted mid-apply is restored from its recorded backup and applied afresh;
- `rollback_fix` restores the recorded backup byte for byte and records 'rolled-back';
- `run_mitigation` runs a configured mitigation (kind 'mitigation'): the issue stays open.

Call these outside a store transaction: the backup must be on record before the first file changes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.errors import SelfhealError
from agent.models import Observe
from agent.remedy.base import ActionContext, ApplyError, Backup, Plan, RefusedError
from agent.remedy.catalog import get_action
from agent.store import Store
from agent.store import chains as chain_store
from agent.store import fixes as fix_store
from agent.store import issues as issue_store

APPLIED = ("applied", "verified")
UNDOABLE = ("applying", "applied", "verified")


class FixPlan(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    fix_id: str
    issue_id: str | None
    chain_id: str | None
    action: str
    params: dict[str, Any]
    kind: str
    effect: str | None = None
    status: str = "planned"
    text: str
    plan: Plan | None = None          # None when the fix was applied earlier (re-planning now would show no change)
    postcondition: Observe | None = None
    description: str = ""
    reused: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.model_dump(mode="json", exclude={"plan"}).items()}
        out["fix"] = out.pop("fix_id")
        out["issue"] = out.pop("issue_id")
        out["chain"] = out.pop("chain_id")
        out["postcondition"] = (self.postcondition.model_dump(mode="json", exclude_none=True)
                                if self.postcondition else None)
        out["plan"] = self.plan.to_json() if self.plan else None
        out["diff"] = self.plan.diff() if self.plan else ""
        return out


class ApplyResult(BaseModel):
    fix_id: str
    issue_id: str | None
    status: str
    summary: str
    backup: Backup | None = None
    already: bool = False

    def to_json(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        out["fix"] = out.pop("fix_id")
        out["issue"] = out.pop("issue_id")
        return out


class RollbackResult(BaseModel):
    fix_id: str
    issue_id: str | None
    status: str
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"fix": self.fix_id, "issue": self.issue_id, "status": self.status, "notes": self.notes}


# --------------------------------------------------------------------------- helpers


def backup_root(cfg: Config) -> Path:
    return cfg.path(cfg.remedy.backup_dir) if cfg.remedy.backup_dir else cfg.home / "backups"


def context(store: Store | None, cfg: Config, clock: Clock, fix_id: str | None = None) -> ActionContext:
    return ActionContext(cfg=cfg, clock=clock, store=store, fix_id=fix_id,
                         backup_dir=backup_root(cfg) / fix_id if fix_id else None)


def _fix_or_fail(store: Store, fix_id: str) -> dict[str, Any]:
    fix = fix_store.get_fix(store, fix_id)
    if fix is None:
        raise SelfhealError(f"no fix {fix_id!r} in the store")
    return fix


def _events_since_apply(store: Store, fix_id: str) -> list[dict[str, Any]]:
    events = fix_store.fix_events(store, fix_id)
    starts = [i for i, e in enumerate(events) if e["status"] == "applying"]
    return events[starts[-1]:] if starts else events


def applied_at(store: Store, fix_id: str) -> datetime | None:
    times = [e["ts"] for e in fix_store.fix_events(store, fix_id) if e["status"] == "applied"]
    return times[-1] if times else None


# --------------------------------------------------------------------------- plan


def plan_fix(store: Store, cfg: Config, issue_id: str, clock: Clock | None = None) -> FixPlan:
    """Dry run: the plan for the issue's latest gate-passed chain, recorded as a fix (nothing is changed)."""
    clock = clock or SystemClock()
    issue = issue_store.get_issue(store, issue_id)
    if issue is None:
        raise SelfhealError(f"no issue {issue_id!r} in the store")
    if issue["status"] == "resolved":
        raise RefusedError(f"{issue_id} is resolved; there is nothing to fix")
    row = chain_store.latest_passed_chain(store, issue_id)
    if row is None:
        raise RefusedError(f"{issue_id} has no chain that passed the gate; analyse it first (selfheal analyze {issue_id})")
    chain, chain_id = row["chain"], row["id"]
    did_not_hold = [a for a in chain_store.archive_rows(store, issue_id)
                    if a["chain_id"] == chain_id and a["outcome"] == "did-not-hold"]
    if did_not_hold:
        raise RefusedError(f"the fix of {chain_id} did not hold for {issue_id}; it needs a new analysis, not the same fix")
    fix = chain.fix

    def result(fix_id: str, status: str, reused: bool, text: str, plan: Plan | None, post: Observe | None) -> FixPlan:
        assert fix is not None
        return FixPlan(fix_id=fix_id, issue_id=issue_id, chain_id=chain_id, action=fix.action, params=fix.params,
                       kind="eliminate", effect=fix.effect, status=status, text=text, plan=plan,
                       postcondition=post, description=fix.description, reused=reused)

    earlier = [f for f in fix_store.fixes(store, issue_id=issue_id)
               if f["chain_id"] == chain_id and f["kind"] == "eliminate"]
    for f in reversed(earlier):
        if fix is not None and f["status"] in ("applying", "applied", "verified"):
            return result(f["id"], f["status"], True, f["plan"] or "", None, fix.postcondition)
    try:
        if fix is None:
            raise RefusedError(f"chain {chain_id} carries no fix")
        if fix.effect != "eliminate":
            raise RefusedError(f"the fix of {chain_id} ({fix.action}) has effect {fix.effect!r}: mitigations are never "
                               "applied as the resolution of a root cause (run a configured one with --mitigate NAME)")
        action = get_action(fix.action)
        plan = action.plan(fix.params, context(store, cfg, clock))
    except RefusedError as exc:
        if issue["status"] != "needs-human":
            issue_store.add_event(store, issue_id, "needs-human", "fix-refused", clock.now(), reason=str(exc),
                                  chain_id=chain_id)
        raise
    text = plan.render()
    post = fix.postcondition or action.postcondition(fix.params)
    for f in reversed(earlier):
        if f["status"] == "planned" and f["plan"] == text:
            return result(f["id"], "planned", True, text, plan, post)
    with store.transaction():
        fix_id = fix_store.create_fix(store, issue_id=issue_id, chain_id=chain_id, action=fix.action,
                                      params=fix.params, kind="eliminate", plan=text, at=clock.now())
        for f in earlier:
            if f["status"] == "planned":
                fix_store.add_fix_event(store, f["id"], "superseded", detail=f"re-planned as {fix_id}", at=clock.now())
    return result(fix_id, "planned", False, text, plan, post)


# --------------------------------------------------------------------------- apply


def apply_fix(store: Store, cfg: Config, fix_id: str, clock: Clock | None = None) -> ApplyResult:
    """Execute a planned fix: backup first (on record), then the change; the issue moves to 'verifying'."""
    clock = clock or SystemClock()
    fix = _fix_or_fail(store, fix_id)
    if fix["kind"] != "eliminate":
        raise RefusedError(f"{fix_id} is a {fix['kind']}, not a fix to apply")
    status = fix["status"]
    if status in APPLIED:
        backup = fix_store.latest_backup(store, fix_id)
        return ApplyResult(fix_id=fix_id, issue_id=fix["issue_id"], status=status, summary=f"{fix_id} is already {status}",
                           backup=Backup.model_validate(backup) if backup else None, already=True)
    if status not in ("planned", "applying"):
        raise RefusedError(f"{fix_id} is {status}; plan the fix again (selfheal fix {fix['issue_id']})")
    action = get_action(fix["action"])
    ctx = context(store, cfg, clock, fix_id)
    if status == "applying":
        # Interrupted between recording the backup and recording the result: undo whatever half happened.
        recorded = fix_store.latest_backup(store, fix_id)
        if recorded:
            from agent.remedy.backup import restore

            restore(Backup.model_validate(recorded), ctx, restart=False)
    plan = action.plan(fix["params"], ctx)
    if plan.render() != (fix["plan"] or ""):
        fix_store.add_fix_event(store, fix_id, "superseded", detail="the target changed after the plan",
                                at=clock.now())
        raise RefusedError(f"{fix_id}: what it would change is no longer what was planned (the target changed); "
                           f"plan it again (selfheal fix {fix['issue_id']})")

    def record_backup(b: Backup) -> None:
        fix_store.add_fix_event(store, fix_id, "applying", backup=b.model_dump(mode="json"), at=clock.now())

    ctx.on_backup = record_backup
    try:
        backup = action.apply(plan, ctx)
    except ApplyError as exc:
        now = clock.now()
        with store.transaction():
            fix_store.add_fix_event(store, fix_id, "failed", detail=str(exc),
                                    backup=exc.backup.model_dump(mode="json") if exc.backup else None, at=now)
            if fix["issue_id"]:
                issue_store.add_event(store, fix["issue_id"], "needs-human", "fix-failed", now, reason=str(exc),
                                      chain_id=fix["chain_id"], fix_id=fix_id)
        raise
    now = clock.now()
    with store.transaction():
        fix_store.add_fix_event(store, fix_id, "applied", detail=plan.summary, backup=backup.model_dump(mode="json"),
                                at=now)
        if fix["issue_id"]:
            issue_store.add_event(store, fix["issue_id"], "verifying", "fixed", now,
                                  reason=f"{fix_id} applied: {plan.summary}", chain_id=fix["chain_id"], fix_id=fix_id)
    return ApplyResult(fix_id=fix_id, issue_id=fix["issue_id"], status="applied", summary=plan.summary, backup=backup)


# --------------------------------------------------------------------------- rollback


def undo(store: Store, cfg: Config, fix: dict[str, Any], clock: Clock) -> list[str]:
    """Restore a fix's recorded backup and record 'rolled-back' (the issue is the caller's business)."""
    fix_id = fix["id"]
    recorded = fix_store.latest_backup(store, fix_id)
    if recorded is None:
        notes = ["nothing had been changed"]
    else:
        action = get_action(fix["action"]) if fix["kind"] == "eliminate" else None
        ctx = context(store, cfg, clock, fix_id)
        backup = Backup.model_validate(recorded)
        if action is not None:
            notes = action.rollback(backup, ctx)
        else:
            from agent.remedy.backup import restore

            notes = restore(backup, ctx)
    fix_store.add_fix_event(store, fix_id, "rolled-back", detail="; ".join(notes) or "nothing to restore",
                            at=clock.now())
    return notes


def rollback_fix(store: Store, cfg: Config, fix_id: str, clock: Clock | None = None) -> RollbackResult:
    """Put back exactly what the fix changed (files byte for byte; files it created are removed)."""
    clock = clock or SystemClock()
    fix = _fix_or_fail(store, fix_id)
    status = fix["status"]
    if status == "rolled-back":
        raise RefusedError(f"{fix_id} was already rolled back")
    if status in ("planned", "superseded"):
        raise RefusedError(f"{fix_id} was never applied; there is nothing to roll back")
    if status == "failed":
        raise RefusedError(f"{fix_id} failed and was already undone")
    if fix["kind"] == "mitigation":
        raise RefusedError(f"{fix_id} is a mitigation (a command that ran); it cannot be rolled back")
    if status not in UNDOABLE:
        raise RefusedError(f"{fix_id} is {status}; only applied fixes can be rolled back")
    notes = undo(store, cfg, fix, clock)
    issue_id = fix["issue_id"]
    if issue_id:
        issue = issue_store.get_issue(store, issue_id)
        if issue is not None and issue["status"] in ("fixing", "verifying"):
            issue_store.add_event(store, issue_id, "open", "fix-rolled-back", clock.now(),
                                  reason=f"{fix_id} rolled back by hand", chain_id=fix["chain_id"], fix_id=fix_id)
    return RollbackResult(fix_id=fix_id, issue_id=issue_id, status="rolled-back", notes=notes)


# --------------------------------------------------------------------------- mitigations


class MitigationResult(BaseModel):
    fix_id: str
    issue_id: str
    name: str
    status: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"fix": self.fix_id, "issue": self.issue_id, "mitigation": self.name, "status": self.status,
                "detail": self.detail, "kind": "mitigation"}


def run_mitigation(store: Store, cfg: Config, issue_id: str, name: str, clock: Clock | None = None) -> MitigationResult:
    """Run a configured mitigation now (e.g. restart to restore service); recorded, never a resolution."""
    from agent.remedy.process import command_timeout, run_argv

    clock = clock or SystemClock()
    issue = issue_store.get_issue(store, issue_id)
    if issue is None:
        raise SelfhealError(f"no issue {issue_id!r} in the store")
    argv = cfg.remedy.mitigations.get(name)
    if not argv:
        known = ", ".join(sorted(cfg.remedy.mitigations)) or "none"
        raise RefusedError(f"no mitigation {name!r} is configured (remedy.mitigations); configured: {known}")
    shown = " ".join(argv)
    fix_id = fix_store.create_fix(store, issue_id=issue_id, chain_id=None, action="mitigation",
                                  params={"name": name, "argv": list(argv)}, kind="mitigation",
                                  plan=f"mitigation {name}: run {shown}\n", at=clock.now())
    run = run_argv(argv, command_timeout(cfg))
    status = "applied" if run.ok else "failed"
    now = clock.now()
    with store.transaction():
        fix_store.add_fix_event(store, fix_id, status, detail=run.describe(),
                                backup=Backup(action="mitigation", fix_id=fix_id, commands=[run]).model_dump(mode="json"),
                                at=now)
        issue_store.add_event(store, issue_id, issue["status"], "mitigated" if run.ok else "mitigation-failed", now,
                              reason=f"{fix_id} mitigation {name}: {run.describe()} (the root cause is not fixed)",
                              fix_id=fix_id)
    return MitigationResult(fix_id=fix_id, issue_id=issue_id, name=name, status=status, detail=run.describe())
