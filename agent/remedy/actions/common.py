"""Helpers the file-changing actions share: reading targets, the services a file belongs to, probe signals."""

from __future__ import annotations

import grp
import hashlib
import pwd
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.models import Signal, rfc3339
from agent.remedy.backup import read_text
from agent.remedy.base import ActionContext, RefusedError
from agent.remedy.editors import EditError

MAX_PROBE_LINES = 500
MAX_CONTENT = 4000


def existing_text(path: Path, label: str) -> str:
    text = read_text(path, label)
    if text is None:
        raise RefusedError(f"{label}: no such file")
    return text


def edited(fn, *args: Any, label: str, **kwargs: Any) -> str:
    """Run a pure editor; its EditError becomes a refusal naming the file."""
    try:
        return fn(*args, **kwargs)
    except EditError as exc:
        raise RefusedError(f"{label}: {exc}") from None


def services_for(path: Path, ctx: ActionContext) -> list[str]:
    """Services whose `config_files` include `path` and that have a restart command: they re-read it by restarting."""
    found = []
    for name, svc in sorted(ctx.cfg.remedy.services.items()):
        if not svc.restart:
            continue
        for f in svc.config_files:
            if ctx.cfg.path(f).resolve() == path:
                found.append(name)
                break
    return found


def probe_signal(ctx: ActionContext, message: str, **attrs: Any) -> Signal:
    return Signal(ts=ctx.clock.now(), source="probe", level="INFO", message=message,
                  attrs={"probe": "remedy", **{k: v for k, v in attrs.items() if v is not None}})


def labels(path: Path, given: str | None) -> list[str]:
    """How a file is named in probe messages: as the fix named it (like the analysis probes do) and its real path."""
    out = [given] if given else []
    if str(path) not in out:
        out.append(str(path))
    return out


def stat_fact(label: str, path: Path) -> str:
    """The `stat` probe's wording (rules/knowledge/README.md), so knowledge-base postconditions match it."""
    st = path.stat()
    modified = rfc3339(datetime.fromtimestamp(st.st_mtime, timezone.utc))
    return (f"{label}: size {st.st_size} bytes, modified {modified}, mode {stat.S_IMODE(st.st_mode):04o}, "
            f"owner {_name(pwd.getpwuid, st.st_uid)}:{_name(grp.getgrgid, st.st_gid)}")


def _name(lookup, ident: int) -> str:
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def file_probe(ctx: ActionContext, path: Path, given: str | None = None) -> list[Signal]:
    """A file's state as probe signals, under each of its names: `stat` facts, its hash, its content without
    comment lines on one line, then one signal per non-blank line (`<file>: <line>`)."""
    names = labels(path, given)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [probe_signal(ctx, f"{label}: no such file or directory", file=str(path)) for label in names]
    except OSError as exc:
        return [probe_signal(ctx, f"{label}: unreadable ({exc.strerror})", file=str(path)) for label in names]
    text = data.decode("utf-8", errors="replace")
    digest = hashlib.sha256(data).hexdigest()
    content = " ".join(" ".join(ln.split()) for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))
    out = []
    for label in names:
        out.append(probe_signal(ctx, stat_fact(label, path), file=str(path)))
        out.append(probe_signal(ctx, f"{label}: sha256 {digest} ({len(data)} bytes)", file=str(path)))
        out.append(probe_signal(ctx, f"{label}: {content[:MAX_CONTENT]}", file=str(path), content=True))
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip() and len(out) <= MAX_PROBE_LINES:
            out.append(probe_signal(ctx, f"{names[0]}: {line.strip()}", file=str(path), line=n))
    return out


def crontab_probe(ctx: ActionContext, path: Path, user: str) -> list[Signal]:
    """The `crontab` probe's wording: `crontab <user>: <entry>` per entry, then `crontab <user>: environment: ...`."""
    from agent.remedy.backup import read_text

    from agent.analysis.probes import parse_crontab

    pairs, entries = parse_crontab(read_text(path) or "")
    env = [f"{k}={v}" for k, v in pairs]
    out = [probe_signal(ctx, f"crontab {user}: {line}", file=str(path), user=user) for line in entries]
    out.append(probe_signal(ctx, f"crontab {user}: environment: {', '.join(env) if env else '(none)'}",
                            file=str(path), user=user))
    return out


def scalar_text(value: Any) -> str:
    """How a value reads in a line-oriented file (and in probe messages)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, separators=(",", ":"))
    return str(value)
