"""`selfheal init`: a commented starter selfheal.yaml for this machine."""

from __future__ import annotations

import glob
import os
import socket
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from agent.errors import InputError


def candidate_logs() -> list[dict[str, Any]]:
    text = resources.files("agent.sensors").joinpath("starter_logs.yaml").read_text(encoding="utf-8")
    return list(yaml.safe_load(text) or [])


def readable_logs(candidates: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The candidate log files (or globs) this user can read right now."""
    found = []
    for cand in candidates if candidates is not None else candidate_logs():
        path = str(cand["path"])
        names = glob.glob(path) if glob.has_magic(path) else [path]
        if any(os.path.isfile(n) and os.access(n, os.R_OK) for n in names):
            found.append(cand)
    return found


def openclaw_block() -> str | None:
    """YAML for the `openclaw:` section, when agent.sensors.openclaw finds an installation."""
    try:
        from agent.sensors.openclaw import detect  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        found = detect()
    except Exception:  # detection is a convenience; init works without it
        return None
    if not found:
        return None
    if isinstance(found, str):
        return found.rstrip()
    return yaml.safe_dump({"openclaw": found}, sort_keys=False).rstrip()


def render(host: str | None = None, log_files: list[dict[str, Any]] | None = None,
           openclaw: str | None = None, now: datetime | None = None) -> str:
    import jinja2

    source = resources.files("agent.sensors").joinpath("starter.yaml.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    when = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return env.from_string(source).render(
        host=host or socket.gethostname(),
        log_files=readable_logs() if log_files is None else log_files,
        openclaw=openclaw,
        written_at=when,
    )


def write_starter(path: Path, *, force: bool = False) -> str:
    """Write the starter config to `path`; refuses to overwrite without `force`. Returns the text."""
    if path.exists() and not force:
        raise InputError(f"{path} already exists (use --force to overwrite it)")
    if path.exists() and path.is_dir():
        raise InputError(f"{path} is a directory")
    text = render(openclaw=openclaw_block())
    # The starter must load as valid config; a template mistake is caught here, not by the user.
    from agent.sensors.config import parse_sensors

    data = yaml.safe_load(text) or {}
    parse_sensors(data.get("sensors"), str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return text
