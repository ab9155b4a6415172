"""`selfheal run`: the daemon (or one pass with --once)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Optional

import typer

from agent.commands._common import config, print_json


class _JsonLines(logging.Formatter):
    """Structured logs: one JSON object per line on stderr."""

    _skip = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
               "logger": record.name, "msg": record.getMessage()}
        out.update({k: v for k, v in record.__dict__.items() if k not in self._skip})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def run(
    once: bool = typer.Option(False, "--once", help="Run one pass and exit."),
    interval: Optional[float] = typer.Option(None, "--interval", help="Seconds between passes (default daemon.interval_s)."),
    apply: Optional[bool] = typer.Option(None, "--apply/--dry-run", help="Apply fixes (default: mode from config; dry-run unless mode: auto)."),
    ship_to: Optional[str] = typer.Option(None, "--ship-to", help="Ship signals to a selfheal server instead of running the loop here."),
    token: Optional[str] = typer.Option(None, "--token", help="Bearer token for --ship-to (default $SELFHEAL_TOKEN)."),
    json_out: bool = typer.Option(False, "--json", help="With --once: print the pass report as JSON."),
) -> None:
    """Run the loop: sense, triage, analyse, gate, fix, verify, learn; SIGTERM/SIGINT stop it between steps."""
    cfg = config()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    root = logging.getLogger("selfheal")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    if ship_to:
        from agent.server.shipper import run_shipper

        run_shipper(cfg, ship_to, token=token, once=once, interval_s=interval)
        return
    if apply is not None:
        cfg.mode = "auto" if apply else "dry-run"
    from agent.loop import run_daemon

    reports = []
    run_daemon(cfg, once=once, interval_s=interval, on_pass=reports.append)
    if once and json_out and reports:
        print_json(reports[-1].as_dict())


def register(app: typer.Typer) -> None:
    app.command()(run)
