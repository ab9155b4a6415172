"""Signals: batch insert (idempotent by id) and queries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Sequence

from agent.models import Signal
from agent.store import Store, aware, naive_utc, now_utc

_COLS = ("id", "ts", "source", "service", "host", "level", "message", "value", "attrs", "extra", "fingerprint", "ingested_at")
_TYPES = ("VARCHAR", "TIMESTAMP", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "DOUBLE", "JSON", "JSON", "VARCHAR", "TIMESTAMP")
_INSERT = (
    f"INSERT OR IGNORE INTO signals ({', '.join(_COLS)}) SELECT * FROM (SELECT "
    + ", ".join(f"unnest(?::{t}[])" for t in _TYPES)
    + ")"
)


def _row(s: Signal, fingerprint: str | None, at: datetime) -> tuple:
    extra = s.extra
    return (
        s.id,
        naive_utc(s.ts),
        s.source,
        s.service,
        s.host,
        s.level,
        s.message,
        s.value,
        json.dumps(s.attrs, default=str) if s.attrs else None,
        json.dumps(extra, default=str) if extra else None,
        fingerprint,
        at,
    )


def insert_signals(
    store: Store, signals: Sequence[Signal], fingerprints: Sequence[str | None] | None = None
) -> int:
    """Store signals not stored yet (by id), in input order; returns how many were new.

    One columnar statement per call: 100k signals take well under a second.
    """
    if not signals:
        return 0
    at = now_utc()
    fps = fingerprints or [None] * len(signals)
    seen: set[str] = set()
    rows = []
    for s, fp in zip(signals, fps):
        if s.id in seen:
            continue
        seen.add(s.id)
        rows.append(_row(s, fp, at))
    with store.transaction():
        before = store.scalar("SELECT count(*) FROM signals")
        store.execute(_INSERT, [list(col) for col in zip(*rows)])
        after = store.scalar("SELECT count(*) FROM signals")
    return after - before


def existing_ids(store: Store, ids: Iterable[str]) -> set[str]:
    ids = list(ids)
    if not ids:
        return set()
    found = store.execute("SELECT id FROM signals WHERE id IN (SELECT unnest(?::VARCHAR[]))", [ids]).fetchall()
    return {r[0] for r in found}


def set_fingerprints(store: Store, pairs: Sequence[tuple[str, str]]) -> None:
    """Record (signal id, fingerprint) for signals stored without one."""
    if not pairs:
        return
    ids, fps = zip(*pairs)
    store.execute(
        "UPDATE signals SET fingerprint = u.fp FROM (SELECT unnest(?::VARCHAR[]) AS id, unnest(?::VARCHAR[]) AS fp) u "
        "WHERE signals.id = u.id AND signals.fingerprint IS NULL",
        [list(ids), list(fps)],
    )


def row_to_signal(row: dict[str, Any]) -> Signal:
    data: dict[str, Any] = json.loads(row["extra"]) if row.get("extra") else {}
    data.update(
        id=row["id"],
        ts=aware(row["ts"]),
        source=row["source"],
        service=row["service"],
        host=row["host"],
        level=row["level"],
        message=row["message"],
        value=row["value"],
        attrs=json.loads(row["attrs"]) if row.get("attrs") else {},
    )
    return Signal.model_validate(data)


def query_signals(
    store: Store,
    *,
    source: str | None = None,
    service: str | None = None,
    level: str | None = None,
    min_level: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str | None = None,
    fingerprint: str | None = None,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[Signal]:
    """Signals matching every given filter, in time order (ingestion order breaks ties)."""
    where, params = [], []
    for col, val in (("source", source), ("service", service), ("level", level), ("fingerprint", fingerprint)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    if min_level is not None:
        from agent.models import LEVELS

        where.append("level IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(LEVELS[LEVELS.index(min_level):]))
    if since is not None:
        where.append("ts >= ?")
        params.append(naive_utc(since))
    if until is not None:
        where.append("ts <= ?")
        params.append(naive_utc(until))
    if text:
        where.append("contains(lower(message), lower(?))")
        params.append(text)
    if ids is not None:
        where.append("id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(ids))
    sql = "SELECT * FROM signals"
    if where:
        sql += " WHERE " + " AND ".join(where)
    order = "DESC" if newest_first else "ASC"
    sql += f" ORDER BY ts {order}, seq {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [row_to_signal(r) for r in store.rows(sql, params)]


def signal_fingerprint(store: Store, signal_id: str) -> str | None:
    return store.scalar("SELECT fingerprint FROM signals WHERE id = ?", [signal_id])


def count_signals(store: Store) -> int:
    return store.scalar("SELECT count(*) FROM signals")
