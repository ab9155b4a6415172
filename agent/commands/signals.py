"""`selfheal ingest` and `selfheal signals`."""

from __future__ import annotations

from typing import Optional

import typer

from agent.commands._common import console, open_store, parse_when, print_json
from agent.errors import InputError
from agent.models import LEVELS, SOURCES, load_signals_file


def ingest(
    file: str = typer.Argument(..., help="A .jsonl file of contract signals, or - for stdin."),
    format: str = typer.Option("signals", "--format", "-f", help="signals (JSON lines) or alertmanager (webhook payload JSON)."),
    json_out: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Validate every line and store the file's signals: all or nothing, idempotent by id."""
    if format == "signals":
        signals = load_signals_file(file)
    elif format == "alertmanager":
        from agent.sensors.alertmanager import signals_from_file

        signals = signals_from_file(file)
    else:
        raise InputError(f"--format: expected 'signals' or 'alertmanager', got {format!r}")
    from agent.store.signals import insert_signals

    with open_store() as store:
        new = insert_signals(store, signals)
    result = {"file": file, "read": len(signals), "stored": new, "duplicates": len(signals) - new}
    if json_out:
        print_json(result)
    else:
        console().print(f"{file}: read {len(signals)} signals, stored {new} new ({len(signals) - new} already stored)")


def signals(
    source: Optional[str] = typer.Option(None, help=f"One of: {', '.join(SOURCES)}."),
    service: Optional[str] = typer.Option(None),
    level: Optional[str] = typer.Option(None, help="Minimum level: " + ", ".join(LEVELS) + "."),
    since: Optional[str] = typer.Option(None, help="RFC 3339 time or an age (2h, 7d)."),
    until: Optional[str] = typer.Option(None, help="RFC 3339 time or an age."),
    text: Optional[str] = typer.Option(None, "--grep", help="Substring of the message (case-insensitive)."),
    limit: int = typer.Option(100, help="At most this many (newest)."),
    json_out: bool = typer.Option(False, "--json", help="JSON array of contract signals."),
) -> None:
    """List stored signals, newest last."""
    if source and source not in SOURCES:
        raise InputError(f"--source: expected one of {', '.join(SOURCES)}, got {source!r}")
    if level and level.upper() not in LEVELS:
        raise InputError(f"--level: expected one of {', '.join(LEVELS)}, got {level!r}")
    from agent.store.signals import query_signals

    with open_store(readonly=True) as store:
        found = query_signals(store, source=source, service=service, min_level=level.upper() if level else None,
                              since=parse_when(since), until=parse_when(until), text=text, limit=limit,
                              newest_first=True)
    found.reverse()
    if json_out:
        print_json([s.model_dump(mode="json", exclude_none=True) for s in found])
        return
    from rich.table import Table

    table = Table("time", "source", "service", "level", "message", "id", box=None)
    for s in found:
        table.add_row(s.ts.strftime("%Y-%m-%d %H:%M:%S"), s.source, s.service or "", s.level, s.message[:120], s.id)
    console().print(table)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(signals)
