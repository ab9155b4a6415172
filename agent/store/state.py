"""Sensor state (file offsets, baselines, consecutive-failure counts) and cycles."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agent.store import Store, aware, naive_utc, now_utc


def get_state(store: Store, sensor: str, key: str, default: Any = None) -> Any:
    raw = store.scalar("SELECT value FROM sensor_state WHERE sensor = ? AND key = ?", [sensor, key])
    return default if raw is None else json.loads(raw)


def all_state(store: Store, sensor: str) -> dict[str, Any]:
    rows = store.execute("SELECT key, value FROM sensor_state WHERE sensor = ?", [sensor]).fetchall()
    return {k: json.loads(v) for k, v in rows}


def set_state(store: Store, sensor: str, key: str, value: Any, at: datetime | None = None) -> None:
    store.execute(
        "INSERT OR REPLACE INTO sensor_state VALUES (?, ?, ?, ?)",
        [sensor, key, json.dumps(value, default=str), naive_utc(at or now_utc())],
    )


def start_cycle(store: Store, kind: str, at: datetime | None = None) -> str:
    with store.transaction():
        num = store.next_number("cycle")
        cycle_id = f"{kind}-{num:04d}"
        store.execute("INSERT INTO cycles VALUES (?, ?, ?, NULL)", [cycle_id, kind, naive_utc(at or now_utc())])
    return cycle_id


def end_cycle(store: Store, cycle_id: str, at: datetime | None = None) -> None:
    store.execute("UPDATE cycles SET ended_at = ? WHERE id = ?", [naive_utc(at or now_utc()), cycle_id])


def latest_cycle(store: Store) -> dict[str, Any] | None:
    row = store.one("SELECT * FROM cycles ORDER BY started_at DESC, id DESC LIMIT 1")
    if row:
        row["started_at"] = aware(row["started_at"])
        row["ended_at"] = aware(row["ended_at"])
    return row
