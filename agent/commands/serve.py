"""`selfheal serve`: the HTTP service (ingest, read API, metrics, dashboard) as the store's writer."""

from __future__ import annotations

from typing import Optional

import typer

from agent.commands._common import config


def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default server.host, 127.0.0.1). "
                                                           "Anything but loopback needs a token."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default server.port, 8765; 0 picks a free one)."),
    loop: bool = typer.Option(False, "--loop", help="Also run the loop here: analyse, gate, fix, verify, learn, "
                                                     "on the signals shipped in (and this host's own sensors)."),
    interval: Optional[float] = typer.Option(None, "--interval", help="With --loop: seconds between passes "
                                                                       "(default daemon.interval_s)."),
    apply: Optional[bool] = typer.Option(None, "--apply/--dry-run", help="With --loop: apply fixes (default: mode "
                                                                          "from config)."),
    triage: bool = typer.Option(True, "--triage/--no-triage", help="Triage ingested signals in the background."),
    triage_batch: int = typer.Option(1000, "--triage-batch", min=1, help="Signals judged per triage step (the "
                                                                         "writer is released between steps)."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn's log level."),
) -> None:
    """Serve the HTTP API and the dashboard: POST /v1/signals, /v1/alertmanager; GET /v1/issues, /v1/report,
    /metrics, /healthz, /docs; the dashboard at /. Holds the store as its single writer until stopped (Ctrl-C)."""
    import logging
    import socket
    import sys

    import uvicorn

    from agent.errors import InputError
    from agent.server.app import create_app
    from agent.server.auth import check_bind, resolve_token
    from agent.server.backend import Backend

    cfg = config()
    bind = host or cfg.server.host
    port = cfg.server.port if port is None else port
    if not 0 <= port <= 65535:
        raise InputError(f"--port: expected 0-65535, got {port}")
    check_bind(bind, resolve_token(cfg), cfg.server.token_env)
    if apply is not None:
        cfg.mode = "auto" if apply else "dry-run"
    # Bind before opening the store: a port in use is a one-line error, and port 0 is known before printing it.
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {bind}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    backend = Backend.open(cfg, triage=triage, triage_batch=triage_batch,
                           loop_interval_s=(cfg.daemon.interval_s if interval is None else interval) if loop else None)
    app = create_app(cfg, backend=backend)
    bound = sock.getsockname()[1]
    shown = f"[{bind}]" if ":" in bind else bind
    print(f"selfheal serving http://{shown}:{bound} (store {cfg.store_path}; dashboard /, API docs /docs)",
          file=sys.stderr, flush=True)
    logging.getLogger("selfheal").setLevel(logging.INFO)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False,
                                           timeout_graceful_shutdown=10))
    server.run(sockets=[sock])


def register(app: typer.Typer) -> None:
    app.command()(serve)
