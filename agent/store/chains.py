"""Chains, gate results and the archive of chains whose fixes were verified (or did not hold)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agent.models import ArchiveEntry, Chain, GateResult
from agent.store import Store, aware, naive_utc, now_utc


def save_chain(store: Store, chain: Chain, *, issue_id: str | None, analyst: str, mode: str | None = None,
               passed: bool | None = None, at: datetime | None = None) -> str:
    """Store a drafted chain under a fresh store-wide id (C-0001...); the chain's own id is rewritten to it."""
    with store.transaction():
        num = store.next_number("chain")
        chain_id = f"C-{num:04d}"
        data = chain.to_json()
        data["id"] = chain_id
        store.execute(
            "INSERT INTO chains VALUES (?, ?, ?, ?, ?, ?, ?)",
            [chain_id, issue_id, naive_utc(at or now_utc()), analyst, mode, json.dumps(data), passed],
        )
    return chain_id


def get_chain(store: Store, chain_id: str) -> dict[str, Any] | None:
    row = store.one("SELECT * FROM chains WHERE id = ?", [chain_id])
    if row:
        row["chain"] = Chain.model_validate(json.loads(row["chain"]))
        row["created_at"] = aware(row["created_at"])
    return row


def chains_for_issue(store: Store, issue_id: str) -> list[dict[str, Any]]:
    rows = store.rows("SELECT * FROM chains WHERE issue_id = ? ORDER BY created_at, id", [issue_id])
    for r in rows:
        r["chain"] = Chain.model_validate(json.loads(r["chain"]))
        r["created_at"] = aware(r["created_at"])
    return rows


def latest_passed_chain(store: Store, issue_id: str) -> dict[str, Any] | None:
    found = [r for r in chains_for_issue(store, issue_id) if r["passed"]]
    return found[-1] if found else None


def save_gate_result(store: Store, chain_id: str, issue_id: str | None, result: GateResult,
                     at: datetime | None = None) -> None:
    with store.transaction():
        store.execute(
            "INSERT INTO gate_results (chain_id, issue_id, ts, passed, elapsed_ms, checks) VALUES (?, ?, ?, ?, ?, ?)",
            [chain_id, issue_id, naive_utc(at or now_utc()), result.passed, result.elapsed_ms,
             json.dumps(result.checks.model_dump(mode="json"))],
        )
        store.execute("UPDATE chains SET passed = ? WHERE id = ?", [result.passed, chain_id])


def gate_results(store: Store, *, issue_id: str | None = None, chain_id: str | None = None) -> list[dict[str, Any]]:
    where, params = [], []
    if issue_id:
        where.append("issue_id = ?")
        params.append(issue_id)
    if chain_id:
        where.append("chain_id = ?")
        params.append(chain_id)
    rows = store.rows("SELECT * FROM gate_results" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq", params)
    for r in rows:
        r["checks"] = json.loads(r["checks"])
        r["ts"] = aware(r["ts"])
    return rows


def archive_chain(store: Store, chain_id: str, *, outcome: str, resolved_at: datetime | None,
                  at: datetime | None = None) -> None:
    """outcome: 'resolved' (fix verified) or 'did-not-hold' (verification failed or the failure recurred)."""
    row = store.one("SELECT issue_id, chain FROM chains WHERE id = ?", [chain_id])
    if row is None:
        raise KeyError(chain_id)
    store.execute(
        "INSERT INTO archive VALUES (?, ?, ?, ?, ?, ?)",
        [chain_id, row["issue_id"], naive_utc(resolved_at) if resolved_at else None, outcome, row["chain"],
         naive_utc(at or now_utc())],
    )


def archive_entries(store: Store) -> list[ArchiveEntry]:
    """Every archived chain, oldest first, in the gate-case archive shape."""
    rows = store.rows("SELECT chain, resolved_at FROM archive ORDER BY archived_at")
    return [ArchiveEntry(chain=Chain.model_validate(json.loads(r["chain"])), resolved_at=aware(r["resolved_at"]))
            for r in rows]


def archive_rows(store: Store, issue_id: str | None = None) -> list[dict[str, Any]]:
    rows = store.rows("SELECT * FROM archive" + (" WHERE issue_id = ?" if issue_id else "") + " ORDER BY archived_at",
                      [issue_id] if issue_id else None)
    for r in rows:
        r["chain"] = Chain.model_validate(json.loads(r["chain"]))
        r["resolved_at"] = aware(r["resolved_at"])
        r["archived_at"] = aware(r["archived_at"])
    return rows
