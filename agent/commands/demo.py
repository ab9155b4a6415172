"""`selfheal demo`: the full loop on a real local system, offline."""

from __future__ import annotations

import typer

from agent.commands._common import console, print_json


def demo(
    keep: bool = typer.Option(False, "--keep", help="Keep the sandbox (the store is always kept) for `selfheal --home $SELFHEAL_HOME/demo issues|show|ask`."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds one scenario may take before the demo moves on."),
    json_out: bool = typer.Option(False, "--json", help="Print the final report as JSON."),
    only: str = typer.Option("", "--only", help="Comma-separated scenario ids (pool, cache, job-env, certificate, deadlock, fds); default all, with the recurrence."),
) -> None:
    """Build a sandbox host, break it six ways plus a recurrence, and watch selfheal close the loop."""
    from agent.cli import Globals
    from agent.config import resolve_home
    from agent.demo.run import run_demo

    from agent.errors import InputError

    chosen = {x.strip() for x in only.split(",") if x.strip()} or None
    known = {"pool", "cache", "job-env", "certificate", "deadlock", "fds"}
    if chosen and chosen - known:
        raise InputError(f"--only: unknown scenario(s) {', '.join(sorted(chosen - known))}; known: {', '.join(sorted(known))}")
    result = run_demo(resolve_home(Globals.home), console(), keep=keep, timeout_s=timeout, only=chosen)
    if json_out:
        print_json(result.report)
    if not result.ok:
        console().print("[bold red]the demo did not close every loop[/]: see the figures above")
        raise typer.Exit(1)
    console().print(f"[bold green]every loop closed[/]. Explore: selfheal --home {result.home} issues")


def register(app: typer.Typer) -> None:
    app.command()(demo)
