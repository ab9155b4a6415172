"""What every command needs: the config, the store, JSON output."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI starts faster without importing pydantic models and duckdb up front
    from agent.config import Config
    from agent.store import Store


def config() -> "Config":
    from agent.cli import Globals
    from agent.config import load_config

    return load_config(Globals.home, Globals.config)


@contextmanager
def open_store(cfg: "Config | None" = None, *, readonly: bool = False) -> Iterator["Store"]:
    from agent.store import Store

    cfg = cfg or config()
    store = Store.open(cfg.store_path, readonly=readonly)
    try:
        yield store
    finally:
        store.close()


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        from agent.models import rfc3339

        return rfc3339(o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json", by_alias=True, exclude_none=True)
    return str(o)


def dumps(obj: Any, *, indent: int | None = None) -> str:
    return json.dumps(obj, default=_default, indent=indent, ensure_ascii=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(dumps(obj, indent=2) + "\n")


def print_jsonl(objs: Any) -> None:
    out = sys.stdout
    for o in objs:
        out.write(dumps(o) + "\n")


def console():
    from rich.console import Console

    return Console(highlight=False)


def parse_when(text: str | None) -> datetime | None:
    """RFC 3339, or a relative age like '2h', '30m', '7d' (before now)."""
    if text is None:
        return None
    import re
    from datetime import timedelta, timezone

    from agent.errors import InputError
    from agent.models import parse_ts

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        n = float(m.group(1))
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return datetime.now(timezone.utc) - timedelta(seconds=n * unit)
    try:
        return parse_ts(text)
    except ValueError as exc:
        raise InputError(f"{text!r}: expected an RFC 3339 time or an age like 2h, 30m, 7d ({exc})") from None
