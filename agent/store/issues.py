"""Issues, their append-only state events, occurrences and triage verdicts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Sequence

from agent.store import Store, aware, naive_utc, now_utc

ACTIVE = ("open", "analysing", "fixing", "verifying", "needs-human")
STATUSES = ACTIVE + ("resolved",)

_CURRENT = """
SELECT i.*, e.status, e.last_change, e.resolved_at
FROM issues i
JOIN (
    SELECT issue_id,
           arg_max(status, seq) AS status,
           max(ts) AS last_change,
           max(ts) FILTER (WHERE status = 'resolved') AS resolved_at
    FROM issue_events GROUP BY issue_id
) e ON e.issue_id = i.id
"""


def _issue(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    for k in ("opened_at", "last_change", "resolved_at"):
        if k in row:
            row[k] = aware(row[k])
    if row.get("status") != "resolved":
        row["resolved_at"] = None
    return row


def open_issue(
    store: Store,
    *,
    fingerprint: str,
    title: str,
    ts: datetime,
    kind: str = "failure",
    source: str | None = None,
    service: str | None = None,
    host: str | None = None,
    signal_id: str | None = None,
    reason: str = "",
    cycle_id: str | None = None,
) -> str:
    with store.transaction():
        num = store.next_number("issue")
        issue_id = f"ISS-{num:04d}"
        store.execute(
            "INSERT INTO issues VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [issue_id, num, fingerprint, kind, title[:500], source, service, host, signal_id, naive_utc(ts)],
        )
        add_event(store, issue_id, "open", "opened", ts, reason=reason, signal_id=signal_id, cycle_id=cycle_id)
    return issue_id


def add_event(
    store: Store,
    issue_id: str,
    status: str,
    event: str,
    ts: datetime,
    *,
    reason: str | None = None,
    signal_id: str | None = None,
    chain_id: str | None = None,
    fix_id: str | None = None,
    cycle_id: str | None = None,
    attrs: dict[str, Any] | None = None,
) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown issue status {status!r}")
    store.execute(
        "INSERT INTO issue_events (issue_id, ts, status, event, reason, signal_id, chain_id, fix_id, cycle_id, attrs) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [issue_id, naive_utc(ts), status, event, reason, signal_id, chain_id, fix_id, cycle_id,
         json.dumps(attrs, default=str) if attrs else None],
    )


def add_occurrence(store: Store, issue_id: str, signal_id: str, ts: datetime, verdict: str) -> None:
    store.execute("INSERT INTO occurrences VALUES (?, ?, ?, ?)", [issue_id, signal_id, naive_utc(ts), verdict])


def get_issue(store: Store, issue_id: str) -> dict[str, Any] | None:
    return _issue(store.one(_CURRENT + " WHERE i.id = ?", [issue_id]))


def list_issues(store: Store, *, status: str | Sequence[str] | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    where, params = [], []
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        where.append("e.status IN (SELECT unnest(?::VARCHAR[]))")
        params.append(statuses)
    if kind is not None:
        where.append("i.kind = ?")
        params.append(kind)
    sql = _CURRENT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY i.num"
    return [_issue(r) for r in store.rows(sql, params)]


def latest_issue_by_fingerprint(store: Store) -> dict[str, tuple[str, str]]:
    """fingerprint -> (latest issue id, its status): what triage needs to know of history, in one query."""
    rows = store.execute(
        "SELECT fingerprint, arg_max(id, num), arg_max(status, num) FROM (" + _CURRENT + ") GROUP BY fingerprint"
    ).fetchall()
    return {fp: (iid, st) for fp, iid, st in rows}


def events(store: Store, issue_id: str) -> list[dict[str, Any]]:
    rows = store.rows("SELECT * FROM issue_events WHERE issue_id = ? ORDER BY seq", [issue_id])
    for r in rows:
        r["ts"] = aware(r["ts"])
        r["attrs"] = json.loads(r["attrs"]) if r.get("attrs") else {}
    return rows


def occurrences(store: Store, issue_id: str) -> list[dict[str, Any]]:
    rows = store.rows(
        "SELECT o.*, s.message, s.source, s.service, s.level FROM occurrences o LEFT JOIN signals s ON s.id = o.signal_id "
        "WHERE o.issue_id = ? ORDER BY o.ts, s.seq",
        [issue_id],
    )
    for r in rows:
        r["ts"] = aware(r["ts"])
    return rows


def timeline(store: Store, issue_id: str) -> list[dict[str, Any]]:
    """Occurrences and state changes of one issue, in time order."""
    items = [dict(kind="occurrence", ts=o["ts"], verdict=o["verdict"], signal_id=o["signal_id"], message=o["message"])
             for o in occurrences(store, issue_id)]
    items += [dict(kind="state", **e) for e in events(store, issue_id)]
    items.sort(key=lambda x: (x["ts"], 0 if x["kind"] == "occurrence" else 1, x.get("seq", 0)))
    return items


def resolve(store: Store, issue_id: str, ts: datetime | None = None, *, reason: str = "resolved by hand",
            event: str = "resolved", cycle_id: str | None = None, chain_id: str | None = None,
            fix_id: str | None = None) -> bool:
    """Mark an issue resolved; False when it already was."""
    issue = get_issue(store, issue_id)
    if issue is None:
        raise KeyError(issue_id)
    if issue["status"] == "resolved":
        return False
    add_event(store, issue_id, "resolved", event, ts or now_utc(), reason=reason, cycle_id=cycle_id,
              chain_id=chain_id, fix_id=fix_id)
    return True


def insert_triage_results(store: Store, results: Sequence[dict[str, Any]]) -> None:
    """Verdicts: dicts with signal_id, fingerprint, template, verdict, issue, rule, reason, ts."""
    if not results:
        return
    at = now_utc()
    cols = ("signal_id", "fingerprint", "template", "verdict", "issue", "rule", "reason")
    data = [[r.get(c) for r in results] for c in cols]
    data.append([naive_utc(r["ts"]) for r in results])
    data.append([at] * len(results))
    store.execute(
        "INSERT OR REPLACE INTO triage_results SELECT * FROM (SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
        "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
        "unnest(?::TIMESTAMP[]), unnest(?::TIMESTAMP[]))",
        data,
    )


def judged_ids(store: Store, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    rows = store.execute("SELECT signal_id FROM triage_results WHERE signal_id IN (SELECT unnest(?::VARCHAR[]))", [list(ids)])
    return {r[0] for r in rows.fetchall()}


def untriaged_signal_ids(store: Store, limit: int | None = None) -> list[str]:
    sql = "SELECT s.id FROM signals s ANTI JOIN triage_results t ON t.signal_id = s.id ORDER BY s.seq"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [r[0] for r in store.execute(sql).fetchall()]


def triage_results(store: Store, *, issue_id: str | None = None, verdict: str | None = None) -> list[dict[str, Any]]:
    where, params = [], []
    if issue_id:
        where.append("issue_id = ?")
        params.append(issue_id)
    if verdict:
        where.append("verdict = ?")
        params.append(verdict)
    sql = "SELECT * FROM triage_results" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY ts"
    return store.rows(sql, params)
