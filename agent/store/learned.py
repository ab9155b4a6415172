"""Learned rules, with provenance (which chain and issue taught them)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agent.store import Store, aware, naive_utc, now_utc


def add_rule(store: Store, *, rule_id: str, kind: str, definition: dict[str, Any], explanation: str,
             chain_id: str | None = None, issue_id: str | None = None, at: datetime | None = None) -> bool:
    """Insert a learned rule; False when a rule with that id exists already (learning is idempotent)."""
    if store.scalar("SELECT count(*) FROM rules_learned WHERE id = ?", [rule_id]):
        return False
    store.execute(
        "INSERT INTO rules_learned VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [rule_id, kind, json.dumps(definition, default=str), explanation, chain_id, issue_id,
         naive_utc(at or now_utc()), "active"],
    )
    return True


def set_rule_status(store: Store, rule_id: str, status: str) -> None:
    store.execute("UPDATE rules_learned SET status = ? WHERE id = ?", [status, rule_id])


def rules(store: Store, *, status: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    where, params = [], []
    if status:
        where.append("status = ?")
        params.append(status)
    if kind:
        where.append("kind = ?")
        params.append(kind)
    rows = store.rows("SELECT * FROM rules_learned" + (" WHERE " + " AND ".join(where) if where else "")
                      + " ORDER BY created_at, id", params)
    for r in rows:
        r["definition"] = json.loads(r["definition"])
        r["created_at"] = aware(r["created_at"])
    return rows
