"""Sensor queries beyond agent/store/state.py: prefixed state, deletion, run history from signals."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agent.store import Store, aware, naive_utc


def state_with_prefix(store: Store, sensor: str, prefix: str) -> dict[str, Any]:
    rows = store.execute(
        "SELECT key, value FROM sensor_state WHERE sensor = ? AND starts_with(key, ?) ORDER BY key", [sensor, prefix]
    ).fetchall()
    return {k: json.loads(v) for k, v in rows}


def delete_state(store: Store, sensor: str, key: str) -> None:
    store.execute("DELETE FROM sensor_state WHERE sensor = ? AND key = ?", [sensor, key])


def state_by_key(store: Store, key: str) -> dict[str, Any]:
    """{sensor: value} of one key across sensors (e.g. every sensor's 'status')."""
    rows = store.execute("SELECT sensor, value FROM sensor_state WHERE key = ?", [key]).fetchall()
    return {s: json.loads(v) for s, v in rows}


def cron_run_starts(store: Store, name: str, since: datetime) -> list[datetime]:
    """Start times of the recorded runs of cron job `name` that ended at or after `since`."""
    rows = store.execute(
        "SELECT json_extract_string(attrs, '$.started_at') FROM signals "
        "WHERE source = 'cron' AND ts >= ? AND json_extract_string(attrs, '$.check') = ? "
        "AND json_extract_string(attrs, '$.started_at') IS NOT NULL",
        [naive_utc(since), name],
    ).fetchall()
    from agent.models import parse_ts

    out = []
    for (raw,) in rows:
        try:
            out.append(parse_ts(raw))
        except ValueError:
            continue
    return sorted(out)


def last_beat(store: Store, name: str) -> datetime | None:
    """Time of the latest recorded beat of heartbeat `name` (from `selfheal beat` signals)."""
    ts = store.scalar(
        "SELECT max(ts) FROM signals WHERE source = 'heartbeat' "
        "AND json_extract_string(attrs, '$.check') = ? AND json_extract_string(attrs, '$.beat') = 'true'",
        [name],
    )
    return aware(ts)
