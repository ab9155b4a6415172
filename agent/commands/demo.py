"""`selfheal demo`: the full loop on a real local system, offline."""

from __future__ import annotations

import typer

from agent.commands._common import console, print_json


def demo(
    keep: bool = typer.Option(False, "--keep", help="Keep the sandbox (the store is always kept) for `selfheal --home $SELFHEAL_HOME/demo issues|show|ask`."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds one scenario may take before the demo moves on."),
    json_out: bool = typer.Option(False, "--json", help="Print the final report as JSON."),
) -> None:
    """Build a sandbox host, break it six ways plus a recurrence, and watch selfheal close the loop."""
    from agent.cli import Globals
    from agent.config import resolve_home
    from agent.demo.run import run_demo

    result = run_demo(resolve_home(Globals.home), console(), keep=keep, timeout_s=timeout)
    if json_out:
        print_json(result.report)
    if not result.ok:
        console().print("[bold red]the demo did not close every loop[/]: see the figures above")
        raise typer.Exit(1)
    console().print(f"[bold green]every loop closed[/]. Explore: selfheal --home {result.home} issues")


def register(app: typer.Typer) -> None:
    app.command()(demo)
