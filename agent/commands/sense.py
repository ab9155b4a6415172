"""`selfheal sense`, `sensors`, `cron`, `beat` and `init`: the sensors from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from agent.commands._common import config, console, open_store, print_json
from agent.errors import InputError, SelfhealError


_CONFIG_HELP = "Config file (same as the global --config)."
_HOME_HELP = "State directory (same as the global --home)."


def _globals(config_path: Optional[Path], home: Optional[Path]) -> None:
    """Accept --config/--home after the command too (`selfheal sense --config FILE`)."""
    from agent.cli import Globals

    if config_path is not None:
        Globals.config = str(config_path)
    if home is not None:
        Globals.home = str(home)


def _warn(message: str) -> None:
    print(f"selfheal: warning: {message}", file=sys.stderr)


def _short(text: str | None, width: int = 90) -> str:
    if not text:
        return ""
    first = text.splitlines()[0]
    return first if len(first) <= width else first[: width - 1] + "…"


def _levels(levels: dict[str, int]) -> str:
    order = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
    return " ".join(f"{levels[k]} {k}" for k in order if levels.get(k))


# ---------------------------------------------------------------------------- sense


def sense(
    only: Optional[List[str]] = typer.Option(None, "--only", help="Run only these sensors (name, kind:name or kind); repeatable."),
    json_out: bool = typer.Option(False, "--json", help="Print the round as JSON."),
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    home: Optional[Path] = typer.Option(None, "--home", help=_HOME_HELP),
) -> None:
    """Run every configured sensor once, store what each saw, and show it."""
    _globals(config_path, home)
    from agent.clock import SystemClock
    from agent.sensors.runner import SensorRunner

    cfg = config()
    runner = SensorRunner(cfg)
    if only:
        known = {s.name for s in runner.sensors} | {s.id for s in runner.sensors} | {s.kind for s in runner.sensors}
        unknown = [n for n in only if n not in known]
        if unknown:
            raise InputError(f"--only: no configured sensor named {', '.join(map(repr, unknown))}")
    if not runner.sensors and not json_out:
        where = cfg.source or (cfg.home / "selfheal.yaml")
        _warn(f"no sensors configured in {where}; `selfheal init` writes a starter config")
    with open_store(cfg) as store:
        report = runner.sense(store, SystemClock(), names=only)
    if json_out:
        print_json(report.to_json())
        return
    from rich.table import Table

    table = Table("sensor", "target", "seen", "levels", "last reading", box=None, pad_edge=False)
    for r in report.sensors:
        state = "[red]broken[/red]" if r.failed else _levels(r.levels)
        last = _short(r.last.message) if r.last else (_short(r.warnings[0].split(": ", 1)[-1]) if r.warnings else "")
        table.add_row(r.sensor, _short(r.target, 40), str(r.signals), state, last)
    out = console()
    if report.sensors:
        out.print(table)
    extra = f", {report.spooled} from the spool" if report.spooled else ""
    out.print(f"{report.signals} signals from {len(report.sensors)} sensors, {report.stored} stored new{extra}")
    for w in report.all_warnings():
        _warn(w)


# ---------------------------------------------------------------------------- sensors


def sensor_rows(cfg: Any) -> list[dict[str, Any]]:
    from agent.sensors.runner import build_sensors

    sensors = build_sensors(cfg)
    statuses: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    if cfg.store_path.exists():
        from agent.store.sensors import state_by_key

        with open_store(cfg, readonly=True) as store:
            statuses = state_by_key(store, "status")
            runs = state_by_key(store, "last_run")
    rows = []
    for s in sensors:
        st = statuses.get(s.id)
        run = runs.get(s.id)
        if run and (not st or not st.get("last_ts") or run.get("ended_at", "") >= st.get("last_ts", "")):
            # A cron job's latest run (recorded by `selfheal cron`) is its latest reading.
            st = dict(st or {}, last_level=run.get("level"), last_ts=run.get("ended_at"),
                      last_message=f"last run ended {run.get('ended_at')} with exit code {run.get('exit_code')}",
                      last_run=(st or {}).get("last_run") or run.get("ended_at"))
        rows.append({
            "sensor": s.id,
            "kind": s.kind,
            "name": s.name,
            "service": s.service,
            "target": s.target(),
            "interval_s": s.interval_s,
            "health": _health(s.kind, st),
            "last_run": st.get("last_run") if st else None,
            "last_level": st.get("last_level") if st else None,
            "last_message": st.get("last_message") if st else None,
            "last_value": st.get("last_value") if st else None,
            "last_signals": st.get("signals") if st else None,
            "warnings": st.get("warnings", []) if st else [],
        })
    return rows


def _health(kind: str, st: dict[str, Any] | None) -> str:
    """never-run | broken (the sensor itself failed) | warning | failing (it saw a failure) | ok."""
    if not st:
        return "never-run"
    if st.get("failed"):
        return "broken"
    if st.get("warnings") and not st.get("signals"):
        return "warning"
    if kind != "log" and st.get("last_level") in ("ERROR", "CRITICAL"):
        return "failing"
    if st.get("warnings"):
        return "warning"
    return "ok"


def sensors(
    json_out: bool = typer.Option(False, "--json", help="JSON array, one object per sensor."),
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    home: Optional[Path] = typer.Option(None, "--home", help=_HOME_HELP),
) -> None:
    """List the configured sensors with their last reading and health."""
    _globals(config_path, home)
    cfg = config()
    rows = sensor_rows(cfg)
    if json_out:
        print_json(rows)
        return
    if not rows:
        where = cfg.source or (cfg.home / "selfheal.yaml")
        console().print(f"no sensors configured in {where}; `selfheal init` writes a starter config")
        return
    from rich.table import Table

    colour = {"ok": "green", "failing": "red", "broken": "red", "warning": "yellow", "never-run": "dim"}
    table = Table("sensor", "target", "every", "health", "last run", "last reading", box=None, pad_edge=False)
    for r in rows:
        h = r["health"]
        reading = _short(r["last_message"], 70) or _short(r["warnings"][0] if r["warnings"] else "", 70)
        when = (r["last_run"] or "")[:19].replace("T", " ")
        table.add_row(r["sensor"], _short(r["target"], 40), f"{r['interval_s']:g}s", f"[{colour[h]}]{h}[/]", when, reading)
    console().print(table)


# ---------------------------------------------------------------------------- cron and beat


def _record(cfg: Any, signals: list, state: list[tuple[str, str, Any]]) -> str:
    """Store the signals (and their state) now, or spool them when another process holds the store."""
    from agent.errors import LockedError
    from agent.sensors import spool
    from agent.store.signals import insert_signals
    from agent.store.state import set_state

    try:
        with open_store(cfg) as store:
            with store.transaction():
                insert_signals(store, signals)
                for sensor, key, value in state:
                    set_state(store, sensor, key, value)
        return "stored"
    except LockedError:
        spool.write(cfg, signals, state)
        return "spooled"


def _config_or_default() -> Any:
    """A wrapper must run the job even when selfheal.yaml is broken: fall back to defaults, say so."""
    try:
        return config()
    except InputError as exc:
        from agent.cli import Globals
        from agent.config import Config, resolve_home

        _warn(f"{exc}; using defaults")
        cfg = Config()
        cfg.home = resolve_home(Globals.home)
        return cfg


def cron(
    name: str = typer.Option(..., "--name", "-n", help="The job's name (matches a sensors.cron entry, if any)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Kill the job after this many seconds (exit 124)."),
    service: Optional[str] = typer.Option(None, "--service", help="The signal's service (default: the entry's, else NAME)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not pass the job's output through."),
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    home: Optional[Path] = typer.Option(None, "--home", help=_HOME_HELP),
    command: List[str] = typer.Argument(..., help="The job: COMMAND ARGS... (after --), run without a shell."),
) -> None:
    """Run a cron job, record its outcome as a signal, and exit with the job's own exit code.

    A non-zero exit, a kill by signal (exit 128+N) or running past the timeout (exit 124) is an ERROR signal carrying the tail of the job's output. In a crontab: selfheal cron --name backup --timeout 3600 -- /usr/local/bin/backup --full
    """
    _globals(config_path, home)
    from agent.clock import SystemClock
    from agent.sensors.cron import last_run_state, run_job

    if timeout is not None and timeout <= 0:
        raise InputError("--timeout: expected a positive number of seconds")
    cfg = _config_or_default()
    job = None
    host = None
    try:
        from agent.sensors.config import find_cron_job, sensors_config

        job = find_cron_job(cfg, name)
        host = sensors_config(cfg).host
    except InputError as exc:
        _warn(f"{exc}; running {name!r} with defaults")
    import socket

    result, sig = run_job(name, command, job=job, clock=SystemClock(), host=host or socket.gethostname(),
                          timeout_s=timeout, service=service, tee=not quiet)
    try:
        _record(cfg, [sig], [(f"cron:{name}", "last_run", last_run_state(sig))])
    except SelfhealError as exc:
        _warn(f"the run of {name!r} was not recorded: {exc}")
    if not result.ok:
        _warn(f"cron job {name!r}: {result.describe()}")
    raise typer.Exit(result.exit_code)


def beat(
    name: str = typer.Argument(..., help="The heartbeat's name (matches a sensors.heartbeats entry)."),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="A note kept with the beat."),
    service: Optional[str] = typer.Option(None, "--service", help="The signal's service (default: the entry's, else NAME)."),
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    home: Optional[Path] = typer.Option(None, "--home", help=_HOME_HELP),
) -> None:
    """Record a heartbeat: call this from jobs and services to show they are alive."""
    _globals(config_path, home)
    import re
    import socket

    from agent.clock import SystemClock
    from agent.sensors.heartbeat import beat_signal, beat_state

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", name):
        raise InputError(f"{name!r}: a heartbeat name uses letters, digits and _ . @ - only")
    cfg = _config_or_default()
    host, entry_service = None, None
    try:
        from agent.sensors.config import sensors_config

        sc = sensors_config(cfg)
        host = sc.host
        entry_service = next((h.service for h in sc.heartbeats if h.name == name), None)
    except InputError as exc:
        _warn(str(exc))
    sig = beat_signal(name, SystemClock().now(), service=service or entry_service, host=host or socket.gethostname(),
                      message=message)
    how = _record(cfg, [sig], [beat_state(sig)])
    console().print(f"heartbeat {name!r} recorded" + (" (spooled: the store is busy)" if how == "spooled" else ""))


# ---------------------------------------------------------------------------- init


def init(
    force: bool = typer.Option(False, "--force", help="Overwrite an existing config file."),
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help="Write here instead of $SELFHEAL_HOME/selfheal.yaml."),
    home: Optional[Path] = typer.Option(None, "--home", help=_HOME_HELP),
) -> None:
    """Write a commented starter selfheal.yaml (one example of each sensor kind) into $SELFHEAL_HOME."""
    _globals(config_path, home)
    from agent.cli import Globals
    from agent.config import CONFIG_NAME, resolve_home
    from agent.sensors.starter import write_starter

    path = Path(Globals.config).expanduser() if Globals.config else resolve_home(Globals.home) / CONFIG_NAME
    write_starter(path, force=force)
    console().print(f"wrote {path}\nnext: `selfheal sense` runs every sensor once; `selfheal sensors` lists them")


def register(app: typer.Typer) -> None:
    app.command()(sense)
    app.command()(sensors)
    app.command(context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})(cron)
    app.command()(beat)
    app.command()(init)
