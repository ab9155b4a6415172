"""Queries of the HTTP server (issue list, metrics) and of the shipper (signals not shipped yet)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from agent.models import Signal
from agent.store import Store, aware
from agent.store.signals import row_to_signal

# --------------------------------------------------------------------------- issues


def occurrence_stats(store: Store, issue_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """issue id -> {occurrences, last_seen}: how often each issue's failure showed up, and when last."""
    if not issue_ids:
        return {}
    rows = store.execute(
        "SELECT issue_id, count(*), max(ts) FROM occurrences WHERE issue_id IN (SELECT unnest(?::VARCHAR[])) "
        "GROUP BY issue_id",
        [list(issue_ids)],
    ).fetchall()
    return {iid: {"occurrences": n, "last_seen": aware(last)} for iid, n, last in rows}


def latest_chain_ids(store: Store, issue_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """issue id -> its latest chain's id and whether it passed the gate (a passed chain wins over a later draft)."""
    if not issue_ids:
        return {}
    rows = store.execute(
        "SELECT issue_id, arg_max(id, (coalesce(passed, false), created_at, id)), "
        "max(coalesce(passed, false)), count(*) FROM chains "
        "WHERE issue_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY issue_id",
        [list(issue_ids)],
    ).fetchall()
    return {iid: {"chain": cid, "passed": bool(passed), "chains": n} for iid, cid, passed, n in rows}


# --------------------------------------------------------------------------- metrics


def metric_counts(store: Store) -> dict[str, Any]:
    """Totals read from the store at scrape time, whoever wrote them (this server, a loop pass, the CLI)."""
    verdicts = dict(store.execute("SELECT verdict, count(*) FROM triage_results GROUP BY verdict").fetchall())
    gates = dict(store.execute("SELECT passed, count(*) FROM gate_results GROUP BY passed").fetchall())
    fixes = dict(store.execute(
        "SELECT status, count(*) FROM (SELECT arg_max(status, seq) AS status FROM fix_events GROUP BY fix_id) "
        "GROUP BY status").fetchall())
    issues = dict(store.execute(
        "SELECT status, count(*) FROM (SELECT arg_max(status, seq) AS status FROM issue_events GROUP BY issue_id) "
        "GROUP BY status").fetchall())
    signals = store.scalar("SELECT count(*) FROM signals")
    judged = store.scalar("SELECT count(*) FROM triage_results")
    return {
        "signals": signals,
        "untriaged": max(0, signals - judged),
        "verdicts": verdicts,
        "gate": {"passed": gates.get(True, 0), "failed": gates.get(False, 0)},
        "fixes": fixes,
        "issues": issues,
    }


# --------------------------------------------------------------------------- shipper


def signals_after(store: Store, seq: int, limit: int) -> list[tuple[int, Signal]]:
    """(seq, signal) of stored signals after ingestion position `seq`, in ingestion order."""
    rows = store.rows("SELECT * FROM signals WHERE seq > ? ORDER BY seq LIMIT ?", [int(seq), int(limit)])
    return [(r["seq"], row_to_signal(r)) for r in rows]


def count_signals_after(store: Store, seq: int) -> int:
    return store.scalar("SELECT count(*) FROM signals WHERE seq > ?", [int(seq)])


def signal_count_by_host(store: Store) -> dict[str | None, int]:
    return dict(store.execute("SELECT host, count(*) FROM signals GROUP BY host").fetchall())


def newest_signal_ts(store: Store) -> datetime | None:
    return aware(store.scalar("SELECT max(ts) FROM signals"))
