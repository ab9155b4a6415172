"""`selfheal report`, `selfheal status`, `selfheal sql`, `selfheal ask` and `selfheal chat`."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer

from agent.commands._common import config, console, open_store, parse_when, print_json
from agent.errors import InputError

_AT_HELP = "Report as of this time (RFC 3339 or an age like 2h); default: the store's latest record."


def _fmt_ts(value: Any) -> str:
    if isinstance(value, datetime):
        from agent.models import rfc3339

        return rfc3339(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return "—" if value is None else str(value)


def _num(value: Any, nd: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{nd}f}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- report


def report(
    json_out: bool = typer.Option(False, "--json", help="Print the whole report as JSON (contract keys first)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML report with charts to FILE."),
    at: Optional[str] = typer.Option(None, "--at", help=_AT_HELP),
) -> None:
    """The seed's figures (issues, formal RCA, MTTR, repeat issues, learning velocity), noise, gate rejections, stages."""
    from agent.report import compute_report

    with open_store(readonly=True) as store:
        data = compute_report(store, now=parse_when(at))
        page = None
        if html is not None:
            from agent.report_html import render_html

            page = render_html(store, report=data)
    if page is not None:
        try:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{html}: cannot write the HTML report: {exc.strerror}") from None
        print(f"wrote {html}", file=sys.stderr)
    if json_out:
        print_json(data)
        return
    _print_report(data)


def _print_report(r: dict[str, Any]) -> None:
    from rich.table import Table

    con = console()
    con.print(f"[bold]selfheal report[/] as of {_fmt_ts(r['now'])} · lifetime {_fmt_ts(r['lifetime']['start'])} → "
              f"{_fmt_ts(r['lifetime']['end'])} ({r['lifetime']['days']:.1f} days)")
    head = Table("figure", "value", "", box=None, title="headline", title_justify="left")
    cyc = r["latest_cycle"]
    rows = [
        ("issues tracked", r["issues_tracked"], ", ".join(f"{k} {v}" for k, v in r["issues_by_kind"].items())),
        ("issues with a formal RCA", r["issues_with_formal_rca"], "a chain passed all four gate checks"),
        ("active issues", r["active_issues"], ", ".join(f"{k} {v}" for k, v in r["issues_by_status"].items() if v and k != "resolved")),
        ("MTTR, latest cycle (h)", _num(r["mttr_hours_latest_cycle"]), (cyc["cycle"] if cyc else r["mttr_scope"])),
        ("repeat issues", r["repeat_issues"], "goal: 0"),
        ("recurrences escalated", r["recurrences_escalated"], "by the archive check"),
        ("learning velocity (/week)", _num(r["learning_velocity_per_week"]),
         f"{len(r['failure_classes_eliminated'])} classes over {r['lifetime']['weeks']:.2f} weeks"),
        ("noise signals", r["noise_signals"], ""),
        ("genuine signals", r["genuine_signals"], f"info {r['info_signals']}"),
    ]
    for name, value, note in rows:
        head.add_row(name, str(value), f"[dim]{note}[/]")
    con.print(head)
    if r["mttr_per_cycle"]:
        t = Table("cycle", "kind", "started", "ended", "resolved", "MTTR h", box=None, title="MTTR per cycle", title_justify="left")
        for c in r["mttr_per_cycle"][-12:]:
            t.add_row(c["cycle"], c["kind"], _fmt_ts(c["started_at"]), _fmt_ts(c["ended_at"]), ", ".join(c["resolved"]) or "—",
                      _num(c["mttr_hours"]))
        con.print(t)
    if r["noise_by_source"]:
        t = Table("source", "judged", "info", "noise", "genuine", "noise ratio", box=None, title="noise per source",
                  title_justify="left")
        for src, d in r["noise_by_source"].items():
            t.add_row(src, str(d["judged"]), str(d["info"]), str(d["noise"]), str(d["genuine"]),
                      "—" if d["noise_ratio"] is None else f"{100 * d['noise_ratio']:.0f}%")
        con.print(t)
    g = r["gate_rejections"]
    t = Table("check", "failed", "most common reason", box=None, title_justify="left",
              title=f"gate: {g['judged']} judged, {g['passed']} passed, {g['rejected']} rejected")
    for name, d in g["by_check"].items():
        t.add_row(name, str(d["failed"]), (d["reasons"][0]["reason"][:100] if d["reasons"] else ""))
    con.print(t)
    t = Table("stage", "spans", "mean h", "max h", "total h", box=None, title="time in each stage", title_justify="left")
    for name, d in r["stage_hours"].items():
        t.add_row(name, str(d["count"]), _num(d["mean_hours"]), _num(d["max_hours"]), _num(d["total_hours"]))
    con.print(t)
    if r["issues"]:
        t = Table("issue", "status", "title", "chain", "gate", "fix", box=None, title="issues", title_justify="left")
        for i in r["issues"][-30:]:
            gate = "—" if i["gate_passed"] is None else ("passed" if i["gate_passed"] else "rejected")
            fix = f"{i['fix']} {i['fix_status']}" if i["fix"] else "—"
            t.add_row(i["id"], i["status"], i["title"][:70], i["chain"] or "—", gate, fix)
        con.print(t)


# --------------------------------------------------------------------------- status


def status(
    json_out: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    at: Optional[str] = typer.Option(None, "--at", help=_AT_HELP),
) -> None:
    """What matters now: active issues (needs-human first), the last cycle, recent signals, the headline figures."""
    from agent.report import compute_status

    with open_store(readonly=True) as store:
        data = compute_status(store, now=parse_when(at))
    if json_out:
        print_json(data)
        return
    from rich.table import Table

    con = console()
    h = data["headline"]
    con.print(f"[bold]selfheal status[/] as of {_fmt_ts(data['now'])}: {h['active_issues']} active, "
              f"{len(data['needs_human'])} need a human · MTTR (latest cycle) {_num(h['mttr_hours_latest_cycle'])} h · "
              f"repeat issues {h['repeat_issues']} · learning velocity {_num(h['learning_velocity_per_week'])}/week")
    if data["active_issues"]:
        t = Table("issue", "status", "since", "title", "why", box=None)
        for i in data["active_issues"]:
            style = "bold red" if i["status"] == "needs-human" else ""
            t.add_row(i["id"], f"[{style}]{i['status']}[/]" if style else i["status"], _fmt_ts(i["since"]),
                      (i["title"] or "")[:60] + (" (warning)" if i["kind"] == "warning" else ""), (i["reason"] or "")[:70])
        con.print(t)
    else:
        con.print("no active issues")
    c = data["last_cycle"]
    if c:
        con.print(f"last cycle {c['id']} ({c['kind']}): started {_fmt_ts(c['started_at'])}, "
                  + ("running" if c["running"] else f"ended {_fmt_ts(c['ended_at'])}")
                  + f"; resolved {', '.join(c['resolved']) or 'none'}; {c['events']} issue events")
    else:
        con.print("no cycle recorded yet")
    s = data["signals"]
    for name, label in (("last_hour", "last hour"), ("last_24h", "last 24 h")):
        d = s[name]
        con.print(f"signals, {label}: {d['total']} ({d['genuine']} genuine, {d['noise']} noise, {d['info']} info"
                  + (f", {d['untriaged']} untriaged" if d["untriaged"] else "") + ")")
    con.print(f"signals stored: {s['total']}; not triaged yet: {s['untriaged']}")


# --------------------------------------------------------------------------- sql


def _cell(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, datetime):
        return _fmt_ts(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _cell(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def sql(
    query: str = typer.Argument(..., help='One read-only statement: SELECT ... or WITH ... SELECT ...'),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array of row objects."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV with a header row."),
    limit: int = typer.Option(10000, "--limit", min=0, help="At most this many rows (0: no limit)."),
) -> None:
    """Run one read-only SELECT on the store (tables and the v_* views); anything else is refused."""
    if json_out and csv_out:
        raise InputError("choose one of --json and --csv")
    from agent.store.report import check_select, harden, run_select

    check_select(query)  # refuse before touching the store
    with open_store(readonly=True) as store:
        harden(store)
        cols, rows, truncated = run_select(store, query, limit=limit or None)
    if truncated:
        print(f"selfheal: note: output truncated at {limit} rows (use --limit)", file=sys.stderr)
    if json_out:
        print_json([{c: _cell(v) for c, v in zip(cols, r)} for r in rows])
    elif csv_out:
        import csv
        import json

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if v is None else json.dumps(c, ensure_ascii=False) if isinstance(c := _cell(v), (list, dict))
                        else c for v in r])
    else:
        from rich.table import Table

        t = Table(*cols, box=None)
        for r in rows:
            t.add_row(*["" if v is None else str(_cell(v)) for v in r])
        con = console()
        con.print(t)
        con.print(f"[dim]{len(rows)} row{'s' if len(rows) != 1 else ''}[/]")


# --------------------------------------------------------------------------- ask / chat


def ask(
    question: str = typer.Argument(..., help='A question in words, e.g. "what happened to ISS-0003 and why?"'),
    json_out: bool = typer.Option(False, "--json", help="Print the answer, its references and data as JSON."),
    offline: bool = typer.Option(False, "--offline", help="Use the offline answerer even when a model is configured."),
    at: Optional[str] = typer.Option(None, "--at", help=_AT_HELP),
) -> None:
    """Answer one question about the issues from the store (offline answerer, or the configured model)."""
    from agent.chat import make_answerer

    cfg = config()
    if not question.strip():
        raise InputError("empty question; try: selfheal ask help")
    with open_store(cfg, readonly=True) as store:
        from agent.store.report import harden

        harden(store)
        answer = make_answerer(store, cfg, offline=offline, now=parse_when(at)).answer(question)
    if json_out:
        print_json(answer.to_json())
    else:
        sys.stdout.write(answer.render() + "\n")


def chat(
    offline: bool = typer.Option(False, "--offline", help="Use the offline answerer even when a model is configured."),
) -> None:
    """Ask questions interactively (line editing and history; Ctrl-D or 'exit' leaves)."""
    from agent.chat import make_answerer
    from agent.errors import SelfhealError
    from agent.store.report import harden

    cfg = config()
    interactive = sys.stdin.isatty()
    history = cfg.home / "chat_history"
    if interactive:
        _readline(history)
        kind = "offline answerer" if offline or cfg.analysis.model is None else f"model {cfg.analysis.model.model}"
        print(f"selfheal chat ({kind}) — ask about your issues; 'help' lists what I can answer; Ctrl-D leaves.")
    answerer = None
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            if interactive:
                print()
            break
        except KeyboardInterrupt:
            print()
            continue
        question = line.strip()
        if not question:
            continue
        if question.lower() in ("exit", "quit", ":q"):
            break
        try:
            # The store is opened per question so a running daemon is never locked out for a whole session.
            with open_store(cfg, readonly=True) as store:
                harden(store)
                if answerer is None:
                    answerer = make_answerer(store, cfg, offline=offline)
                answerer.store = store
                answer = answerer.answer(question)
        except SelfhealError as exc:
            print(f"selfheal: error: {exc}", file=sys.stderr)
            continue
        print(answer.render() + "\n", flush=True)
    if interactive:
        _save_history(history)


def _readline(history: Path) -> None:
    try:
        import readline
    except ImportError:  # no line editing on this platform; input() still works
        return
    try:
        readline.read_history_file(history)
    except OSError:
        pass
    readline.set_history_length(1000)


def _save_history(history: Path) -> None:
    try:
        import readline

        history.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(history)
    except (ImportError, OSError):
        pass


def register(app: typer.Typer) -> None:
    app.command()(report)
    app.command()(status)
    app.command()(sql)
    app.command()(ask)
    app.command()(chat)
