"""`selfheal triage`, `issues`, `show`, `resolve`, `rules`, `tune`: verdicts, issues and the rules behind them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, List, Optional

import typer

from agent.commands._common import config, console, dumps, open_store, print_json, print_jsonl
from agent.errors import InputError

_STATUSES = ("open", "analysing", "fixing", "verifying", "needs-human", "resolved", "active", "all")


def triage(
    file: str = typer.Argument(..., help="A .jsonl file of contract signals, or - for stdin."),
    fresh: bool = typer.Option(False, "--fresh", help="Judge against an empty history (a temporary store; the configured one is not touched)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON line per signal: signal_id, fingerprint, template, verdict, issue, rule, reason."),
) -> None:
    """Judge every signal of FILE in order, each against the history before it.

    Verdicts (info, noise, new, ongoing, recurrence) come from the rules in
    rules/triage.yaml and rules/noise.yaml (plus the config's rules_dirs and
    learned rules); `new` opens an issue, `ongoing` attaches to it,
    `recurrence` reopens a resolved one. Signals and verdicts are stored.
    """
    from agent.triage import Triage, load_signals

    signals = load_signals(file)
    cfg = config()
    if fresh:
        from agent.store import Store

        store = Store.open(None)
        try:
            results = Triage(store, cfg).judge(signals)
        finally:
            store.close()
    else:
        with open_store(cfg) as store:
            results = Triage(store, cfg).judge(signals)
    if json_out:
        print_jsonl(r.model_dump(mode="json") for r in results)
        return
    _render_verdicts(results)


def _render_verdicts(results: list) -> None:
    from collections import Counter

    counts = Counter(r.verdict for r in results)
    shown = results if len(results) <= 300 else [r for r in results if r.verdict not in ("info", "noise")]
    table = _table(["signal", "verdict", "issue", "rule"], "reason",
                   [[r.signal_id, r.verdict, r.issue or "", r.rule, r.reason] for r in shown], fold=True)
    out = console()
    if shown:
        out.print(table)
    if len(shown) < len(results):
        out.print(f"({len(results) - len(shown)} info and noise verdicts not shown; --json prints all)")
    summary = ", ".join(f"{counts[v]} {v}" for v in ("info", "noise", "new", "ongoing", "recurrence") if counts[v])
    out.print(f"{len(results)} signals: {summary or 'none'}")


def issues(
    status: Optional[str] = typer.Option(None, "--status", help="open, analysing, fixing, verifying, needs-human, resolved, active (any but resolved) or all (default)."),
    kind: Optional[str] = typer.Option(None, "--kind", help="failure or warning."),
    json_out: bool = typer.Option(False, "--json", help="JSON array of issues."),
) -> None:
    """List issues with their current status, occurrences and last activity."""
    from agent.store import issues as issue_store
    from agent.store import triage_state as tstore

    statuses = _status_filter(status)
    if kind is not None and kind not in ("failure", "warning"):
        raise InputError(f"--kind: expected failure or warning, got {kind!r}")
    cfg = config()
    if not cfg.store_path.exists():
        found, activity = [], {}
    else:
        with open_store(cfg, readonly=True) as store:
            found = issue_store.list_issues(store, status=statuses, kind=kind)
            activity = tstore.issue_activity(store)
    rows = [_issue_json(i, activity.get(i["id"], {})) for i in found]
    if json_out:
        print_json(rows)
        return
    table = _table(["issue", "status", "opened", "last seen", "occ."], "title",
                   [[r["id"], r["status"] + (" (warning)" if r["kind"] == "warning" else ""), _when(r["opened_at"]),
                     _when(r["last_seen"]), str(r["occurrences"]), r["title"]] for r in rows])
    out = console()
    out.print(table if rows else "no issues")


def _status_filter(status: str | None) -> list[str] | None:
    from agent.store.issues import ACTIVE

    if status is None or status == "all":
        return None
    if status not in _STATUSES:
        raise InputError(f"--status: expected one of {', '.join(_STATUSES)}, got {status!r}")
    return list(ACTIVE) if status == "active" else [status]


def _issue_json(i: dict[str, Any], activity: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": i["id"], "kind": i["kind"], "status": i["status"], "title": i["title"],
        "fingerprint": i["fingerprint"], "source": i["source"], "service": i["service"], "host": i["host"],
        "first_signal": i["first_signal"], "opened_at": i["opened_at"], "last_change": i["last_change"],
        "resolved_at": i["resolved_at"], "occurrences": activity.get("occurrences", 0),
        "last_seen": activity.get("last_seen"),
    }


def _table(fixed: list[str], flexible: str, rows: list[list[str]], *, fold: bool = False):
    """A table whose fixed columns keep their full width and whose last column takes the rest of the
    terminal, wrapped (fold) or cut short."""
    from rich.table import Table

    widths = [max([len(name)] + [len(r[i]) for r in rows]) for i, name in enumerate(fixed)]
    room = max(24, console().width - sum(widths) - 2 * len(fixed) - 2)
    table = Table(box=None, pad_edge=False)
    for name, width in zip(fixed, widths):
        table.add_column(name, no_wrap=True, min_width=width)
    table.add_column(flexible, overflow="fold", max_width=room)
    for r in rows:
        last = r[-1] if fold or len(r[-1]) <= room else r[-1][: room - 1] + "…"
        table.add_row(*[escape(x) for x in r[:-1]], escape(last))
    return table


def escape(text: str) -> str:
    """User text (log lines like "[ERROR] ...") printed literally, not as rich markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else ""


def show(
    issue: str = typer.Argument(..., help="An issue id, e.g. ISS-0001."),
    json_out: bool = typer.Option(False, "--json", help="The issue, its timeline, chains, gate results, fixes and archive as JSON."),
) -> None:
    """An issue's timeline (occurrences and state changes) and its chains, gate results and fixes."""
    cfg = config()
    if not cfg.store_path.exists():
        raise InputError(f"{issue}: no such issue (the store {cfg.store_path} does not exist yet)")
    with open_store(cfg, readonly=True) as store:
        data = _issue_detail(store, issue)
    if json_out:
        print_json(data)
        return
    _render_issue(data)


def _issue_detail(store: Any, issue_id: str) -> dict[str, Any]:
    from agent.store import chains as chain_store
    from agent.store import fixes as fix_store
    from agent.store import issues as issue_store
    from agent.store import triage_state as tstore

    found = issue_store.get_issue(store, issue_id)
    if found is None:
        raise InputError(f"{issue_id}: no such issue")
    activity = tstore.issue_activity(store).get(issue_id, {})
    chains = [{"id": c["id"], "analyst": c["analyst"], "mode": c["mode"], "passed": c["passed"],
               "created_at": c["created_at"], "chain": c["chain"].to_json()}
              for c in chain_store.chains_for_issue(store, issue_id)]
    fixes = []
    for f in fix_store.fixes(store, issue_id=issue_id):
        f = dict(f)
        f["events"] = fix_store.fix_events(store, f["id"])
        fixes.append(f)
    archive = [{"chain_id": a["chain_id"], "outcome": a["outcome"], "resolved_at": a["resolved_at"],
                "archived_at": a["archived_at"]} for a in chain_store.archive_rows(store, issue_id)]
    return {
        "issue": _issue_json(found, activity),
        "timeline": issue_store.timeline(store, issue_id),
        "chains": chains,
        "gate_results": chain_store.gate_results(store, issue_id=issue_id),
        "fixes": fixes,
        "verifications": fix_store.verifications(store, issue_id=issue_id),
        "archive": archive,
    }


def _render_issue(data: dict[str, Any]) -> None:

    out = console()
    i = data["issue"]
    out.print(f"[bold]{i['id']}[/bold] ({i['kind']}, {i['status']}): {escape(i['title'])}")
    out.print(escape(f"fingerprint {i['fingerprint']}  {i['source'] or ''} {i['service'] or ''} {i['host'] or ''}".rstrip()))
    out.print(f"opened {_when(i['opened_at'])}, {i['occurrences']} occurrence(s), last seen {_when(i['last_seen'])}")
    rows = []
    for item in data["timeline"]:
        if item["kind"] == "occurrence":
            rows.append([_when(item["ts"]), item["verdict"], f"{item['signal_id']}: {item.get('message') or ''}"])
        else:
            what = item["event"] if item["event"] == item["status"] else f"{item['event']} -> {item['status']}"
            extra = " ".join(x for x in (item.get("chain_id"), item.get("fix_id")) if x)
            rows.append([_when(item["ts"]), what, " ".join(x for x in (item.get("reason") or "", extra) if x)])
    out.print(_table(["time", "what"], "detail", rows, fold=True))
    for c in data["chains"]:
        verdict = {True: "passed the gate", False: "rejected by the gate", None: "not gated"}[c["passed"]]
        root = next((n for n in c["chain"]["nodes"] if n["id"] == c["chain"]["root"]), {})
        out.print(escape(f"chain {c['id']} ({c['analyst']}, {verdict}): root: {root.get('statement', '?')}"))
    for g in data["gate_results"]:
        failed = [k for k, v in g["checks"].items() if not v.get("passed")]
        out.print(f"gate {g['chain_id']}: {'passed' if g['passed'] else 'failed ' + ', '.join(failed)}")
    for f in data["fixes"]:
        out.print(f"fix {f['id']} {f['action']} ({f['kind']}): {f['status']}")
    for a in data["archive"]:
        out.print(f"archived {a['chain_id']}: {a['outcome']}")


def resolve(
    issue_ids: Optional[List[str]] = typer.Argument(None, metavar="ISSUE...", help="Issue ids to resolve."),
    all_: bool = typer.Option(False, "--all", help="Resolve every issue that is not resolved."),
    reason: str = typer.Option("resolved by hand", "--reason", help="Why (kept in the issue's history)."),
    json_out: bool = typer.Option(False, "--json", help="Print what was resolved as JSON."),
) -> None:
    """Mark issues resolved by hand, so that a later occurrence of their failure mode is a recurrence.

    The resolution is stamped now, or at the issue's last activity when that is later (recorded
    signals may carry future times), so an issue is never resolved before it last occurred.
    """
    from agent.clock import SystemClock
    from agent.store import issues as issue_store
    from agent.store import triage_state as tstore

    ids = list(dict.fromkeys(issue_ids or []))
    if all_ and ids:
        raise InputError("give issue ids or --all, not both")
    if not all_ and not ids:
        raise InputError("give the issue ids to resolve, or --all")
    cfg = config()
    resolved, already = [], []
    with open_store(cfg) as store:
        if all_:
            ids = [i["id"] for i in issue_store.list_issues(store, status=list(issue_store.ACTIVE))]
        missing = [i for i in ids if issue_store.get_issue(store, i) is None]
        if missing:
            raise InputError(f"{missing[0]}: no such issue")
        now = SystemClock().now()
        with store.transaction():
            for iid in ids:
                last = tstore.last_activity(store, iid)
                at = max(now, last) if last else now
                (resolved if issue_store.resolve(store, iid, at, reason=reason) else already).append(iid)
    if json_out:
        print_json({"resolved": resolved, "already_resolved": already})
        return
    out = console()
    out.print(f"resolved {len(resolved)} issue(s)" + (f": {', '.join(resolved)}" if resolved else ""))
    if already:
        out.print(f"already resolved: {', '.join(already)}")


def rules(
    learned: bool = typer.Option(False, "--learned", help="Only the learned rules, with provenance and explanation."),
    json_out: bool = typer.Option(False, "--json", help="JSON: rules files, settings, triage rules, noise patterns, learned rules."),
) -> None:
    """The active triage rules: shipped and configured (with the file each came from) and learned (with provenance)."""
    from agent.rules_engine import describe, load_rules

    cfg = config()
    learned_rows = _learned_rows(cfg)
    if learned:
        if json_out:
            print_json({"learned": learned_rows})
            return
        _render_learned(learned_rows)
        return
    data = describe(load_rules(cfg))
    data["learned"] = learned_rows
    if json_out:
        print_json(data)
        return

    from pathlib import Path

    out = console()
    out.print(escape("rules files: " + ", ".join(data["files"])))
    out.print(_table(["pri", "rule", "verdict", "from"], "when", [
        [str(r["priority"]), r["id"], r["verdict"] + (f" ({r['subject']})" if r["subject"] != "fingerprint" else ""),
         Path(r["origin"]).name, _condition_text(r["when"])] for r in data["rules"]], fold=True))
    out.print(_table(["noise pattern", "from"], "why benign",
                     [[p["id"], Path(p["origin"]).name, p["description"]] for p in data["patterns"]], fold=True))
    _render_learned(learned_rows)


_SYMBOLS = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "in": " in ", "not_in": " not in "}


def _condition_text(when: dict[str, Any]) -> str:
    """A rule's `when` as one readable line: failure=true consecutive<$threshold any(a | b)."""
    parts = []
    for key, value in when.items():
        if key == "any":
            parts.append("any(" + " | ".join(_condition_text(v) for v in value) + ")")
        elif isinstance(value, dict):
            op, operand = next(iter(value.items()))
            parts.append(f"{key}{_SYMBOLS.get(op, ' ' + op + ' ')}{dumps(operand)}")
        else:
            parts.append(f"{key}={dumps(value)}")
    return " ".join(parts) or "always"


def _learned_rows(cfg: Any) -> list[dict[str, Any]]:
    if not cfg.store_path.exists():
        return []
    from agent.store import learned as learned_store

    with open_store(cfg, readonly=True) as store:
        rows = learned_store.rules(store)
    return [{"id": r["id"], "kind": r["kind"], "status": r["status"], "definition": r["definition"],
             "explanation": r["explanation"], "chain_id": r["chain_id"], "issue_id": r["issue_id"],
             "created_at": r["created_at"], "origin": "learned"} for r in rows]


def _render_learned(rows: list[dict[str, Any]]) -> None:
    out = console()
    if not rows:
        out.print("no learned rules")
        return
    out.print(_table(["learned rule", "kind", "status", "from"], "explanation", [
        [r["id"], r["kind"], r["status"], " ".join(x for x in (r["issue_id"], r["chain_id"]) if x) or "tune",
         r["explanation"]] for r in rows], fold=True))


def tune(
    apply_: bool = typer.Option(False, "--apply", help="Write the proposals as learned rules (demotions as status changes)."),
    json_out: bool = typer.Option(False, "--json", help="JSON array of proposals."),
) -> None:
    """Propose triage tuning from the signal history: per-check thresholds for flapping checks, benign
    failure modes, demotion of early-warning rules that never preceded their symptom. One line each."""
    from agent.clock import SystemClock
    from agent.rules_engine import load_rules
    from agent.triage_tune import apply as apply_proposals
    from agent.triage_tune import propose

    cfg = config()
    data = load_rules(cfg)
    if not cfg.store_path.exists():
        proposals = []
    elif apply_:
        with open_store(cfg) as store:
            proposals = apply_proposals(store, propose(store, cfg, data), SystemClock().now())
    else:
        with open_store(cfg, readonly=True) as store:
            proposals = propose(store, cfg, data)
    if json_out:
        print_json([p.to_json() for p in proposals])
        return
    out = console()
    if not proposals:
        out.print("no proposals: the history shows no flapping check, benign failure mode or idle early warning")
        return
    for p in proposals:
        mark = "applied " if p.applied else ""
        out.print(escape(f"{mark}{p.kind} {p.rule_id}: {p.explanation}"))
    if not apply_:
        out.print("(run with --apply to write them as learned rules)")


def register(app: typer.Typer) -> None:
    app.command()(triage)
    app.command()(issues)
    app.command()(show)
    app.command()(resolve)
    app.command()(rules)
    app.command()(tune)
