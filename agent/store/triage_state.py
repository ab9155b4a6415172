"""What triage remembers between processes (miner clusters, consecutive check failures) and the queries it,
its CLI and `selfheal tune` need. Columnar statements throughout: triage writes tens of thousands of rows a call.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Sequence

from agent.models import Signal
from agent.store import Store, aware, naive_utc, now_utc
from agent.store.signals import row_to_signal

# --------------------------------------------------------------------------- bulk statements
#
# DuckDB converts a Python list parameter element by element, which costs more than everything else triage
# does per signal. Rows rendered as text and packed into ONE string parameter (fields joined by US, rows by
# RS, NULL as a lone NUL) are split back by DuckDB in C++ several times faster. The counts of separators are
# checked first; a value that contains one of them falls back to list parameters.

RS, US, NUL = "\x1e", "\x1f", "\x00"
# One encoder for every row: json.dumps(..., default=str) builds a new one per call.
_ENCODE = json.JSONEncoder(default=str).encode


def text(value: Any) -> str | None:
    """A value rendered for a bulk statement: timestamps as naive UTC, dicts as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return naive_utc(value).isoformat(sep=" ")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def bulk_insert(store: Store, head: str, types: Sequence[str], rows: Sequence[Sequence[str | None]],
                tail: str = "") -> None:
    """`head` + SELECT of `rows` (text or None, one per type) + `tail`, as one statement."""
    if not rows:
        return
    k = len(types)
    nulls = 0
    packed = []
    for r in rows:
        if None in r:
            nulls += r.count(None)
            packed.append(US.join([NUL if v is None else v for v in r]))
        else:
            packed.append(US.join(r))
    blob = RS.join(packed)
    n = len(rows)
    if blob.count(RS) == n - 1 and blob.count(US) == n * (k - 1) and blob.count(NUL) == nulls:
        cols = ", ".join(f"CAST(nullif(f[{i + 1}], chr(0)) AS {t})" for i, t in enumerate(types))
        store.execute(f"{head} SELECT {cols} FROM (SELECT string_split(r, chr(31)) AS f "
                      f"FROM (SELECT unnest(string_split(?, chr(30))) AS r)) {tail}", [blob])
        return
    lists = ", ".join(f"unnest(?::VARCHAR[]) AS c{i}" for i in range(k))
    cols = ", ".join(f"CAST(c{i} AS {t})" for i, t in enumerate(types))
    store.execute(f"{head} SELECT {cols} FROM (SELECT {lists}) {tail}", [list(c) for c in zip(*rows)])


def _id_set(ids: Sequence[str]) -> tuple[str, list[Any]]:
    """A subquery of these ids and its parameter (packed when no id holds the separator)."""
    blob = RS.join(ids)
    if blob.count(RS) == len(ids) - 1:
        return "SELECT unnest(string_split(?, chr(30)))", [blob]
    return "SELECT unnest(?::VARCHAR[])", [list(ids)]



# --------------------------------------------------------------------------- fingerprint miner state


def load_clusters(store: Store) -> list[dict[str, Any]]:
    """The miner's clusters, oldest first (input of `Fingerprinter(state=...)`)."""
    return [json.loads(r[0]) for r in store.execute("SELECT state FROM fingerprint_clusters ORDER BY seq").fetchall()]


def save_clusters(store: Store, clusters: Sequence[dict[str, Any]], at: datetime | None = None) -> None:
    at_text = text(at or now_utc())
    bulk_insert(store, "INSERT OR REPLACE INTO fingerprint_clusters", ("VARCHAR", "BIGINT", "JSON", "TIMESTAMP"),
                [(c["fingerprint"], str(int(c["seq"])), json.dumps(c), at_text) for c in clusters])


# --------------------------------------------------------------------------- checks


def load_checks(store: Store) -> dict[str, int]:
    """check key -> consecutive failures so far."""
    return dict(store.execute("SELECT check_key, consecutive FROM triage_checks").fetchall())


def save_checks(store: Store, rows: Sequence[tuple], at: datetime | None = None) -> None:
    """rows: (check_key, source, service, host, key, consecutive, last_signal, last_ts)."""
    at_text = text(at or now_utc())
    bulk_insert(store, "INSERT OR REPLACE INTO triage_checks",
                ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "INTEGER", "VARCHAR", "TIMESTAMP", "TIMESTAMP"),
                [tuple(text(v) for v in r) + (at_text,) for r in rows])


# --------------------------------------------------------------------------- fingerprints


def known_fingerprints(store: Store) -> set[str]:
    return {r[0] for r in store.execute("SELECT fingerprint FROM fingerprints").fetchall()}


def upsert_fingerprints(store: Store, rows: Sequence[tuple[str, str, str | None, str, datetime]]) -> None:
    """rows: (fingerprint, source, service, template, first_seen); a known fingerprint gets its newer template."""
    bulk_insert(store, "INSERT INTO fingerprints", ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "TIMESTAMP"),
                [tuple(text(v) for v in r) for r in rows],
                "ON CONFLICT (fingerprint) DO UPDATE SET template = excluded.template")


# --------------------------------------------------------------------------- signals and verdicts


def stored_results(store: Store, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Verdicts already given to these signal ids."""
    if not ids or not store.scalar("SELECT count(*) FROM (SELECT 1 FROM triage_results LIMIT 1)"):
        return {}
    sub, params = _id_set(ids)
    rows = store.rows(
        "SELECT signal_id, fingerprint, template, verdict, issue_id, rule, reason FROM triage_results "
        f"WHERE signal_id IN ({sub})", params)
    return {r["signal_id"]: r for r in rows}


def existing_ids(store: Store, ids: Sequence[str]) -> set[str]:
    """Which of these signal ids are stored."""
    if not ids or not store.scalar("SELECT count(*) FROM (SELECT 1 FROM signals LIMIT 1)"):
        return set()
    sub, params = _id_set(ids)
    return {r[0] for r in store.execute(f"SELECT id FROM signals WHERE id IN ({sub})", params).fetchall()}


_SIGNAL_COLS = ("id", "ts", "source", "service", "host", "level", "message", "value", "attrs", "extra", "fingerprint",
                "ingested_at")
_SIGNAL_TYPES = ("VARCHAR", "TIMESTAMP", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "DOUBLE", "JSON",
                 "JSON", "VARCHAR", "TIMESTAMP")


def insert_new_signals(store: Store, rows: Sequence[tuple[Signal, str, str]], at: datetime | None = None) -> None:
    """Store signals not stored yet (the caller checked), in order, with the same columns as
    agent/store/signals.insert_signals; rows: (signal, fingerprint, its ts as bulk text)."""
    at_text = text(at or now_utc())
    dumps = _ENCODE
    out = []
    for s, fp, ts in rows:
        extra = s.model_extra
        out.append((s.id, ts, s.source, s.service, s.host, s.level, s.message,
                    None if s.value is None else repr(s.value), dumps(s.attrs) if s.attrs else None,
                    dumps(extra) if extra else None, fp, at_text))
    bulk_insert(store, f"INSERT INTO signals ({', '.join(_SIGNAL_COLS)})", _SIGNAL_TYPES, out)


def insert_verdicts(store: Store, rows: Sequence[tuple], at: datetime | None = None) -> None:
    """Verdicts of signals not judged yet (the caller checked): (signal_id, fingerprint, template, verdict,
    issue_id, rule, reason, signal ts as bulk text)."""
    at_text = text(at or now_utc())
    bulk_insert(store, "INSERT INTO triage_results",
                ("VARCHAR",) * 7 + ("TIMESTAMP", "TIMESTAMP"), [r + (at_text,) for r in rows])


def counter(store: Store, name: str) -> int:
    return store.scalar("SELECT value FROM counters WHERE name = ?", [name]) or 0


def set_counter(store: Store, name: str, value: int) -> None:
    store.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", [name, value])


def insert_issues(store: Store, rows: Sequence[tuple]) -> None:
    """New issues (the same rows as issues.open_issue): (id, num, fingerprint, kind, title, source, service, host,
    first_signal, opened_at); their 'opened' events go through insert_issue_events."""
    bulk_insert(store, "INSERT INTO issues", ("VARCHAR", "INTEGER") + ("VARCHAR",) * 7 + ("TIMESTAMP",),
                [tuple(text(v) for v in r) for r in rows])


def insert_issue_events(store: Store, rows: Sequence[tuple]) -> None:
    """(issue_id, ts, status, event, reason, signal_id, chain_id, fix_id, cycle_id, attrs dict|None), in order."""
    bulk_insert(store, "INSERT INTO issue_events (issue_id, ts, status, event, reason, signal_id, chain_id, fix_id, "
                "cycle_id, attrs)", ("VARCHAR", "TIMESTAMP") + ("VARCHAR",) * 7 + ("JSON",),
                [tuple(text(v) for v in r) for r in rows])


def unfingerprinted_ids(store: Store, ids: Sequence[str]) -> set[str]:
    """Which of these stored signals have no fingerprint yet (stored by ingest, not by triage)."""
    if not ids:
        return set()
    sub, params = _id_set(ids)
    rows = store.execute(f"SELECT id FROM signals WHERE fingerprint IS NULL AND id IN ({sub})", params).fetchall()
    return {r[0] for r in rows}


def pending_signals(store: Store, limit: int) -> list[Signal]:
    """Stored signals without a verdict, in ingestion order."""
    rows = store.rows(
        "SELECT s.* FROM signals s ANTI JOIN triage_results t ON t.signal_id = s.id ORDER BY s.seq LIMIT ?", [int(limit)]
    )
    return [row_to_signal(r) for r in rows]


def insert_occurrences(store: Store, rows: Sequence[tuple[str, str, datetime, str]]) -> None:
    """rows: (issue_id, signal_id, ts, verdict)."""
    bulk_insert(store, "INSERT INTO occurrences", ("VARCHAR", "VARCHAR", "TIMESTAMP", "VARCHAR"),
                [(a, b, text(ts), v) for a, b, ts, v in rows])


# --------------------------------------------------------------------------- issues, for the CLI


def issue_activity(store: Store) -> dict[str, dict[str, Any]]:
    """issue id -> occurrences count and last occurrence time."""
    rows = store.execute("SELECT issue_id, count(*), max(ts) FROM occurrences GROUP BY issue_id").fetchall()
    return {iid: {"occurrences": n, "last_seen": aware(last)} for iid, n, last in rows}


def last_activity(store: Store, issue_id: str) -> datetime | None:
    """The latest occurrence or state change of an issue."""
    ts = store.scalar(
        "SELECT max(ts) FROM (SELECT ts FROM occurrences WHERE issue_id = ? UNION ALL "
        "SELECT ts FROM issue_events WHERE issue_id = ?)",
        [issue_id, issue_id],
    )
    return aware(ts)


# --------------------------------------------------------------------------- history for `selfheal tune`


def check_observations(store: Store, sources: Iterable[str]) -> list[dict[str, Any]]:
    """Signals of check sources in ingestion order, with their verdict and issue (if judged)."""
    return store.rows(
        "SELECT s.id, s.seq, s.ts, s.source, s.service, s.host, s.level, s.attrs, t.verdict, t.issue_id "
        "FROM signals s LEFT JOIN triage_results t ON t.signal_id = s.id "
        "WHERE s.source IN (SELECT unnest(?::VARCHAR[])) ORDER BY s.seq",
        [list(sources)],
    )


def issues_with_analysis(store: Store) -> set[str]:
    """Issues that have a chain or a fix: someone found (or tried) a cause, so their recoveries were not by chance."""
    rows = store.execute(
        "SELECT issue_id FROM chains WHERE issue_id IS NOT NULL UNION SELECT issue_id FROM fixes WHERE issue_id IS NOT NULL"
    ).fetchall()
    return {r[0] for r in rows}


def issues_with_passed_chain(store: Store) -> set[str]:
    return {r[0] for r in store.execute("SELECT DISTINCT issue_id FROM chains WHERE passed AND issue_id IS NOT NULL").fetchall()}


def failure_fingerprint_stats(store: Store, min_count: int) -> list[dict[str, Any]]:
    """Fingerprints of failure-level signals seen at least `min_count` times, with their span and verdicts."""
    return store.rows(
        "SELECT s.fingerprint, any_value(s.source) AS source, any_value(s.service) AS service, count(*) AS n, "
        "min(s.ts) AS first_ts, max(s.ts) AS last_ts, "
        "count(*) FILTER (WHERE t.verdict IN ('new', 'ongoing', 'recurrence')) AS genuine, "
        "list(DISTINCT t.issue_id) FILTER (WHERE t.issue_id IS NOT NULL) AS issues, "
        "any_value(f.template) AS template "
        "FROM signals s LEFT JOIN triage_results t ON t.signal_id = s.id "
        "LEFT JOIN fingerprints f ON f.fingerprint = s.fingerprint "
        "WHERE s.level IN ('ERROR', 'CRITICAL') AND s.fingerprint IS NOT NULL "
        "GROUP BY s.fingerprint HAVING count(*) >= ? ORDER BY n DESC, s.fingerprint",
        [int(min_count)],
    )


def fingerprint_times(store: Store, fingerprint: str) -> list[datetime]:
    return [aware(r[0]) for r in store.execute(
        "SELECT ts FROM signals WHERE fingerprint = ? ORDER BY ts", [fingerprint]).fetchall()]


def genuine_failures(store: Store) -> list[dict[str, Any]]:
    """Signals judged genuine failures (new, ongoing, recurrence), in time order."""
    rows = store.rows(
        "SELECT t.signal_id, t.ts, t.fingerprint, t.verdict, s.service, s.source FROM triage_results t "
        "JOIN signals s ON s.id = t.signal_id WHERE t.verdict IN ('new', 'ongoing', 'recurrence') ORDER BY t.ts"
    )
    for r in rows:
        r["ts"] = aware(r["ts"])
    return rows


def rule_firings(store: Store, rule: str) -> list[dict[str, Any]]:
    """Verdicts given by one rule (e.g. 'learned:ew-1'), with their signals, in time order."""
    rows = store.rows(
        "SELECT t.signal_id, t.ts, t.verdict, t.issue_id, s.service, s.source FROM triage_results t "
        "LEFT JOIN signals s ON s.id = t.signal_id WHERE t.rule = ? ORDER BY t.ts",
        [rule],
    )
    for r in rows:
        r["ts"] = aware(r["ts"])
    return rows


def failure_signals_between(store: Store, since: datetime, until: datetime, *, source: str | None = None,
                            service: str | None = None) -> list[Signal]:
    where = ["level IN ('ERROR', 'CRITICAL')", "ts >= ?", "ts <= ?"]
    params: list[Any] = [naive_utc(since), naive_utc(until)]
    if source:
        where.append("source = ?")
        params.append(source)
    if service:
        where.append("service = ?")
        params.append(service)
    rows = store.rows("SELECT * FROM signals WHERE " + " AND ".join(where) + " ORDER BY ts, seq", params)
    return [row_to_signal(r) for r in rows]
