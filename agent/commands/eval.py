"""`selfheal eval`: replay recorded incidents and score the pipeline; `selfheal export`: record one from the store."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from agent.commands._common import config, console, open_store, print_json
from agent.errors import InputError


def eval_incidents(
    args: Optional[List[str]] = typer.Argument(
        None, metavar="[PATH] | loghub DIR",
        help="An incident folder or a folder of them (default evals/incidents); or `loghub DIR` for fingerprint "
             "grouping accuracy on Loghub-format *_2k.log_structured.csv files."),
    json_out: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
    mode: str = typer.Option("offline", "--mode", help="Who drafts chains: offline (knowledge base), live (the "
                             "configured analysis.model) or replay (each incident's cassettes/analysis.yaml)."),
    thresholds: Optional[Path] = typer.Option(None, "--thresholds", help="Thresholds file (default evals/thresholds.yaml)."),
    knowledge: Optional[Path] = typer.Option(None, "--knowledge", help="A knowledge-base directory to judge instead "
                                             "of the configured one (e.g. a changed copy of rules/knowledge)."),
    only: Optional[List[str]] = typer.Option(None, "--only", "-k", help="Only incidents whose name contains this (repeatable)."),
    pass_interval: float = typer.Option(300.0, "--pass-interval", help="Seconds of recorded time triaged per sensor pass."),
    record: bool = typer.Option(False, "--record", help="With --mode live: write each model run to the incident's "
                                "cassettes/analysis.yaml (credentials filtered) for --mode replay."),
) -> None:
    """Replay recorded incidents on fresh stores with a fake clock and score every stage.

    Each incident runs through triage, analysis, the gate, a dry-run fix against a copy of its fixtures,
    simulated verification and a repeat of its failure; the checks are compared with its expected.yaml.
    Exit code 0 when every threshold is met, 1 when one is missed (the failing cases' diffs say why), 2 for
    bad input.
    """
    args = list(args or [])
    if args and args[0] == "loghub":
        if len(args) != 2:
            raise InputError("usage: selfheal eval loghub DIR [--json]")
        _loghub(args[1], json_out)
        return
    if len(args) > 1:
        raise InputError(f"expected at most one PATH, got {len(args)}: {' '.join(args)}")
    from agent.evals.runner import run_eval

    cfg = config()
    progress = None
    bar = None
    if not json_out:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=Console(stderr=True), transient=True)
        task = bar.add_task("replaying incidents", total=None)

        def progress(case, i, n):  # type: ignore[no-redef]
            bar.update(task, completed=i, total=n, description=f"replaying incidents ({case.name})")

    try:
        if bar is not None:
            bar.start()
        report = run_eval(args[0] if args else None, cfg, mode=mode, thresholds=thresholds, knowledge=knowledge,
                          only=only or (), pass_interval_s=pass_interval, record=record, progress=progress)
    finally:
        if bar is not None:
            bar.stop()
    if json_out:
        print_json(report.to_json())
    else:
        from agent.evals.render import show_report

        show_report(report, console())
    if not report.passed:
        raise typer.Exit(1)


def _loghub(folder: str, json_out: bool) -> None:
    from agent.loghub import evaluate_dir

    result = evaluate_dir(folder)
    if json_out:
        print_json(result)
        return
    from agent.evals.render import show_loghub

    show_loghub(result, console())


def export(
    issue: str = typer.Argument(..., help="The issue to record (e.g. ISS-0003)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The incident folder to write (default "
                                       "./<issue>-<title words>); it must not exist or be empty."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write an incident folder from the store, for `selfheal eval`: the signals around the issue (probe
    signals included), expected.yaml prefilled from its latest analysis, gate and fix, archive.json from the
    archived chains, and fixtures/ with the files its fix touches. Review expected.yaml before adding it."""
    from agent.evals.export import export_issue

    cfg = config()
    with open_store(cfg, readonly=True) as store:
        written = export_issue(store, cfg, issue, out)
    if json_out:
        print_json(written)
        return
    out_console = console()
    out_console.print(f"{written['path']}: {written['signals']} signals ({written['probes']} probe), "
                      f"{written['archive']} archived chains, {len(written['fixtures'])} fixture files")
    out_console.print(f"expected: kind {written['expected']['kind']}, mode {written['expected']['mode']}, "
                      f"symptom {written['expected']['symptom_signal']}")
    for note in written["notes"]:
        out_console.print(f"note: {note}")
    out_console.print(f"check it: selfheal eval {written['path']}")


def register(app: typer.Typer) -> None:
    app.command(name="eval")(eval_incidents)
    app.command()(export)
