"""Fixes, their append-only life (planned, applied, rolled back, verified...) and verification steps."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agent.store import Store, aware, naive_utc, now_utc


def create_fix(store: Store, *, issue_id: str | None, chain_id: str | None, action: str, params: dict[str, Any],
               kind: str, plan: str, at: datetime | None = None) -> str:
    """kind: 'eliminate' (the resolution of a root cause) or 'mitigation' (configured, run first, never a resolution)."""
    with store.transaction():
        num = store.next_number("fix")
        fix_id = f"FIX-{num:04d}"
        store.execute(
            "INSERT INTO fixes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [fix_id, issue_id, chain_id, action, json.dumps(params, default=str), kind, naive_utc(at or now_utc()), plan],
        )
        add_fix_event(store, fix_id, "planned", at=at)
    return fix_id


def add_fix_event(store: Store, fix_id: str, status: str, *, detail: str | None = None,
                  backup: dict[str, Any] | None = None, at: datetime | None = None) -> None:
    store.execute(
        "INSERT INTO fix_events (fix_id, ts, status, detail, backup) VALUES (?, ?, ?, ?, ?)",
        [fix_id, naive_utc(at or now_utc()), status, detail, json.dumps(backup, default=str) if backup else None],
    )


_FIX = """
SELECT f.*, e.status, e.updated_at FROM fixes f
JOIN (SELECT fix_id, arg_max(status, seq) AS status, max(ts) AS updated_at FROM fix_events GROUP BY fix_id) e
  ON e.fix_id = f.id
"""


def _fix(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None:
        row["params"] = json.loads(row["params"]) if row.get("params") else {}
        row["created_at"] = aware(row["created_at"])
        row["updated_at"] = aware(row["updated_at"])
    return row


def get_fix(store: Store, fix_id: str) -> dict[str, Any] | None:
    return _fix(store.one(_FIX + " WHERE f.id = ?", [fix_id]))


def fixes(store: Store, *, issue_id: str | None = None) -> list[dict[str, Any]]:
    sql = _FIX + (" WHERE f.issue_id = ?" if issue_id else "") + " ORDER BY f.id"
    return [_fix(r) for r in store.rows(sql, [issue_id] if issue_id else None)]


def fix_events(store: Store, fix_id: str) -> list[dict[str, Any]]:
    rows = store.rows("SELECT * FROM fix_events WHERE fix_id = ? ORDER BY seq", [fix_id])
    for r in rows:
        r["ts"] = aware(r["ts"])
        r["backup"] = json.loads(r["backup"]) if r.get("backup") else None
    return rows


def latest_backup(store: Store, fix_id: str) -> dict[str, Any] | None:
    for e in reversed(fix_events(store, fix_id)):
        if e["backup"]:
            return e["backup"]
    return None


def add_verification(store: Store, *, fix_id: str | None, issue_id: str | None, step: str, passed: bool,
                     detail: str = "", at: datetime | None = None) -> None:
    store.execute(
        "INSERT INTO verifications (fix_id, issue_id, ts, step, passed, detail) VALUES (?, ?, ?, ?, ?, ?)",
        [fix_id, issue_id, naive_utc(at or now_utc()), step, passed, detail],
    )


def verifications(store: Store, *, issue_id: str | None = None, fix_id: str | None = None) -> list[dict[str, Any]]:
    where, params = [], []
    if issue_id:
        where.append("issue_id = ?")
        params.append(issue_id)
    if fix_id:
        where.append("fix_id = ?")
        params.append(fix_id)
    rows = store.rows("SELECT * FROM verifications" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq",
                      params)
    for r in rows:
        r["ts"] = aware(r["ts"])
    return rows
