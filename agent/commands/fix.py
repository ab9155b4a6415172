"""`selfheal fix`, `selfheal rollback` and `selfheal fixes`."""

from __future__ import annotations

from typing import Any, Optional

import typer

from agent.commands._common import config, console, open_store, print_json


def fix(
    issue: str = typer.Argument(..., help="The issue whose validated root cause to fix (e.g. ISS-0003)."),
    apply: bool = typer.Option(False, "--apply", help="Execute the plan (backup first). Without it: a dry run."),
    mitigate: Optional[str] = typer.Option(None, "--mitigate", metavar="NAME",
                                           help="Run the configured mitigation NAME now (remedy.mitigations); "
                                                "recorded as a mitigation, the issue stays open."),
    json_out: bool = typer.Option(False, "--json", help="Print the plan (and what was applied) as JSON."),
) -> None:
    """Plan the allow-listed fix of ISSUE's gate-passed chain and show its diff; --apply executes it.

    A dry run changes nothing on disk (it records the plan). With --apply the
    originals are backed up first; `selfheal rollback FIX` restores them.
    """
    from agent.remedy import apply_fix, plan_fix, run_mitigation

    cfg = config()
    with open_store(cfg) as store:
        if mitigate is not None:
            done = run_mitigation(store, cfg, issue, mitigate)
            if json_out:
                print_json(done.to_json())
            else:
                console().print(f"{done.fix_id}: mitigation {done.name} for {issue}: {done.status} ({done.detail}); "
                                f"{issue} stays open until its root cause is fixed", markup=False)
            if done.status != "applied":
                raise typer.Exit(1)
            return
        plan = plan_fix(store, cfg, issue)
        applied = apply_fix(store, cfg, plan.fix_id) if apply else None
    if json_out:
        out: dict[str, Any] = plan.to_json()
        out["applied"] = applied is not None and not applied.already
        out["status"] = applied.status if applied else plan.status
        out["backup"] = applied.backup.model_dump(mode="json") if applied and applied.backup else None
        print_json(out)
        return
    _show_plan(plan, applied)


def _show_plan(plan, applied) -> None:
    con = console()
    con.print(f"{plan.fix_id}  {plan.issue_id}  chain {plan.chain_id}  {plan.action} ({plan.effect})"
              + ("  [already planned]" if plan.reused and plan.status == "planned" else ""), markup=False)
    if plan.description:
        con.print(f"  {plan.description}", markup=False)
    for line in plan.text.splitlines():
        style = None
        if line.startswith("+") and not line.startswith("+++"):
            style = "green"
        elif line.startswith("-") and not line.startswith("---"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        con.print(line, style=style, markup=False, highlight=False)
    if plan.postcondition is not None:
        from agent.gate import describe

        con.print(f"postcondition: {describe(plan.postcondition)}", markup=False)
    if applied is not None:
        if applied.already:
            con.print(f"{plan.fix_id} was already {applied.status}; nothing was done", markup=False)
        else:
            files = len(applied.backup.files) if applied.backup else 0
            where = f" (backup in {applied.backup.dir})" if applied.backup and applied.backup.dir and files else ""
            con.print(f"applied {plan.fix_id}{where}; {plan.issue_id} is now verifying. "
                      f"Undo with: selfheal rollback {plan.fix_id}", markup=False)
    elif plan.status == "planned":
        con.print(f"dry run: nothing was changed. Apply with: selfheal fix {plan.issue_id} --apply", markup=False)
    else:
        con.print(f"{plan.fix_id} is {plan.status}", markup=False)


def rollback(
    fix_id: str = typer.Argument(..., metavar="FIX", help="The fix to undo (e.g. FIX-0002)."),
    json_out: bool = typer.Option(False, "--json", help="Print what was restored as JSON."),
) -> None:
    """Restore exactly what FIX changed (files byte for byte; files it created are removed)."""
    from agent.remedy import rollback_fix

    cfg = config()
    with open_store(cfg) as store:
        done = rollback_fix(store, cfg, fix_id)
    if json_out:
        print_json(done.to_json())
        return
    con = console()
    con.print(f"{fix_id} rolled back", markup=False)
    for note in done.notes:
        con.print(f"  {note}", markup=False)


def fixes(
    issue: Optional[str] = typer.Option(None, "--issue", help="Only the fixes of this issue."),
    json_out: bool = typer.Option(False, "--json", help="JSON array: each fix with its events, backup and verifications."),
) -> None:
    """List fixes with their status, backups and verification steps."""
    from agent.store import fixes as fix_store

    cfg = config()
    with open_store(cfg, readonly=True) as store:
        rows = fix_store.fixes(store, issue_id=issue)
        items = []
        for f in rows:
            events = fix_store.fix_events(store, f["id"])
            items.append({
                "id": f["id"], "issue": f["issue_id"], "chain": f["chain_id"], "action": f["action"],
                "params": f["params"], "kind": f["kind"], "status": f["status"], "created_at": f["created_at"],
                "updated_at": f["updated_at"], "plan": f["plan"],
                "backup": fix_store.latest_backup(store, f["id"]),
                "events": [{"ts": e["ts"], "status": e["status"], "detail": e["detail"]} for e in events],
                "verifications": [{"ts": v["ts"], "step": v["step"], "passed": v["passed"], "detail": v["detail"]}
                                  for v in fix_store.verifications(store, fix_id=f["id"])],
            })
    if json_out:
        print_json(items)
        return
    from rich.table import Table

    table = Table(box=None)
    for col in ("fix", "issue", "action", "status", "updated", "backup"):
        table.add_column(col, no_wrap=True)
    table.add_column("verification")
    for it in items:
        b = it["backup"] or {}
        files = b.get("files") or []
        backup = f"{len(files)} file(s)" if files else ("-" if not b.get("commands") else "commands")
        checks = " ".join(f"{v['step']}:{'ok' if v['passed'] else 'FAIL'}" for v in it["verifications"])
        table.add_row(it["id"], it["issue"] or "", it["action"], it["status"],
                      it["updated_at"].strftime("%Y-%m-%d %H:%M") if it["updated_at"] else "", backup, checks)
    console().print(table)


def register(app: typer.Typer) -> None:
    app.command()(fix)
    app.command()(rollback)
    app.command()(fixes)
