"""Queries behind the report, `selfheal status`, the chat answerers and the read-only SQL tool.

Everything here reads; nothing writes. Aggregations over signals happen in SQL
(there can be millions); the smaller histories (issues, events, chains, gate
results, fixes) come back as rows for agent/report.py to compute with.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Sequence

import duckdb

from agent.errors import InputError
from agent.store import Store, aware, naive_utc

GENUINE = ("new", "ongoing", "recurrence")


def _aware_rows(rows: list[dict[str, Any]], *cols: str) -> list[dict[str, Any]]:
    for r in rows:
        for c in cols:
            if c in r:
                r[c] = aware(r[c])
    return rows


def _json_cols(rows: list[dict[str, Any]], *cols: str) -> list[dict[str, Any]]:
    for r in rows:
        for c in cols:
            if isinstance(r.get(c), str):
                r[c] = json.loads(r[c])
    return rows


# --------------------------------------------------------------------------- time bounds


def latest_record_ts(store: Store) -> datetime | None:
    """The store's own "now": its latest signal, issue event or cycle boundary (demo and eval stores keep their own clock)."""
    ts = store.scalar(
        "SELECT max(t) FROM (SELECT max(ts) AS t FROM signals UNION ALL SELECT max(ts) FROM issue_events "
        "UNION ALL SELECT max(started_at) FROM cycles UNION ALL SELECT max(ended_at) FROM cycles)"
    )
    return aware(ts)


def lifetime_bounds(store: Store) -> tuple[datetime | None, datetime | None]:
    """(first signal, latest signal or issue event); the first issue event stands in when there are no signals."""
    row = store.execute(
        "SELECT coalesce((SELECT min(ts) FROM signals), (SELECT min(ts) FROM issue_events)), "
        "greatest((SELECT max(ts) FROM signals), (SELECT max(ts) FROM issue_events))"
    ).fetchone()
    return aware(row[0]), aware(row[1])


# --------------------------------------------------------------------------- histories (small tables)


# The queries below read the tables, not the v_* views, so that a reader of a store whose newest
# migrations a writer has not applied yet still gets its report.

def issue_rows(store: Store) -> list[dict[str, Any]]:
    """Every issue with its current status (latest event), last change, resolution time, reopenings, occurrences."""
    rows = store.rows(
        """
        SELECT i.id, i.num, i.fingerprint, i.kind, i.title, i.source, i.service, i.host, i.first_signal, i.opened_at,
               e.status, e.last_change, CASE WHEN e.status = 'resolved' THEN e.resolved_at END AS resolved_at,
               e.reopened, coalesce(o.n, 0) AS occurrences
        FROM issues i
        JOIN (SELECT issue_id, arg_max(status, seq) AS status, max(ts) AS last_change,
                     max(ts) FILTER (WHERE status = 'resolved') AS resolved_at,
                     count(*) FILTER (WHERE event IN ('recurrence', 'reopened')) AS reopened
              FROM issue_events GROUP BY issue_id) e ON e.issue_id = i.id
        LEFT JOIN (SELECT issue_id, count(*) AS n FROM occurrences GROUP BY issue_id) o ON o.issue_id = i.id
        ORDER BY i.num
        """
    )
    return _aware_rows(rows, "opened_at", "last_change", "resolved_at")


def issue_event_rows(store: Store, issue_id: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT seq, issue_id, ts, status, event, reason, signal_id, chain_id, fix_id, cycle_id FROM issue_events"
    sql += (" WHERE issue_id = ?" if issue_id else "") + " ORDER BY seq"
    return _aware_rows(store.rows(sql, [issue_id] if issue_id else None), "ts")


def cycle_rows(store: Store) -> list[dict[str, Any]]:
    return _aware_rows(store.rows("SELECT id, kind, started_at, ended_at FROM cycles ORDER BY started_at, id"),
                       "started_at", "ended_at")


def chain_rows(store: Store, issue_id: str | None = None) -> list[dict[str, Any]]:
    """Chains with their root, symptom and fix pulled out of the JSON (the chain itself under 'chain')."""
    sql = "SELECT id, issue_id, created_at, analyst, mode, passed, chain FROM chains"
    sql += (" WHERE issue_id = ?" if issue_id else "") + " ORDER BY created_at, id"
    rows = _json_cols(_aware_rows(store.rows(sql, [issue_id] if issue_id else None), "created_at"), "chain")
    for r in rows:
        chain = r["chain"]
        nodes = {n.get("id"): n for n in chain.get("nodes") or []}
        root = nodes.get(chain.get("root")) or {}
        fix = chain.get("fix") or {}
        r.update(symptom_statement=(nodes.get(chain.get("symptom")) or {}).get("statement"),
                 root_statement=root.get("statement"), root_category=root.get("category"),
                 links=len(chain.get("links") or []), fix_action=fix.get("action"), fix_effect=fix.get("effect"),
                 fix_description=fix.get("description"))
    return rows


def gate_rows(store: Store, issue_id: str | None = None) -> list[dict[str, Any]]:
    """Gate results in the order they were judged; the issue comes from the chain when the result has none."""
    sql = ("SELECT g.seq, g.chain_id, coalesce(g.issue_id, c.issue_id) AS issue_id, g.ts, g.passed, g.elapsed_ms, "
           "g.checks FROM gate_results g LEFT JOIN chains c ON c.id = g.chain_id")
    sql += (" WHERE coalesce(g.issue_id, c.issue_id) = ?" if issue_id else "") + " ORDER BY g.seq"
    return _json_cols(_aware_rows(store.rows(sql, [issue_id] if issue_id else None), "ts"), "checks")


def archive_rows(store: Store) -> list[dict[str, Any]]:
    rows = store.rows("SELECT chain_id, issue_id, resolved_at, outcome, archived_at FROM archive "
                      "ORDER BY archived_at, chain_id")
    return _aware_rows(rows, "resolved_at", "archived_at")


def fix_rows(store: Store, issue_id: str | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT f.id, f.issue_id, f.chain_id, f.action, f.params, f.kind, f.created_at, f.plan, e.status, e.updated_at "
           "FROM fixes f LEFT JOIN (SELECT fix_id, arg_max(status, seq) AS status, max(ts) AS updated_at "
           "FROM fix_events GROUP BY fix_id) e ON e.fix_id = f.id")
    sql += (" WHERE f.issue_id = ?" if issue_id else "") + " ORDER BY f.created_at, f.id"
    rows = store.rows(sql, [issue_id] if issue_id else None)
    return _json_cols(_aware_rows(rows, "created_at", "updated_at"), "params")


def fix_event_rows(store: Store, issue_id: str | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT e.seq, e.fix_id, e.ts, e.status, e.detail FROM fix_events e"
           + (" JOIN fixes f ON f.id = e.fix_id WHERE f.issue_id = ?" if issue_id else "") + " ORDER BY e.seq")
    return _aware_rows(store.rows(sql, [issue_id] if issue_id else None), "ts")


def verification_rows(store: Store, issue_id: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT seq, fix_id, issue_id, ts, step, passed, detail FROM verifications"
    sql += (" WHERE issue_id = ?" if issue_id else "") + " ORDER BY seq"
    return _aware_rows(store.rows(sql, [issue_id] if issue_id else None), "ts")


def learned_rule_rows(store: Store) -> list[dict[str, Any]]:
    rows = store.rows("SELECT id, kind, definition, explanation, chain_id, issue_id, created_at, status "
                      "FROM rules_learned ORDER BY created_at, id")
    return _json_cols(_aware_rows(rows, "created_at"), "definition")


def learned_rule_firings(store: Store) -> list[dict[str, Any]]:
    """Triage verdicts given by learned rules (rule 'learned:<id>'), oldest first."""
    rows = store.rows(
        "SELECT t.signal_id, t.ts, t.verdict, t.issue_id, substr(t.rule, 9) AS rule_id, s.message "
        "FROM triage_results t LEFT JOIN signals s ON s.id = t.signal_id "
        "WHERE t.rule LIKE 'learned:%' ORDER BY t.ts, s.seq"
    )
    return _aware_rows(rows, "ts")


def occurrence_rows(store: Store, issue_id: str) -> list[dict[str, Any]]:
    rows = store.rows(
        "SELECT o.signal_id, o.ts, o.verdict, s.source, s.service, s.level, s.message FROM occurrences o "
        "LEFT JOIN signals s ON s.id = o.signal_id WHERE o.issue_id = ? ORDER BY o.ts, s.seq", [issue_id])
    return _aware_rows(rows, "ts")


# --------------------------------------------------------------------------- occurrences of failure modes


def first_genuine_after(store: Store, probes: Sequence[tuple[str, datetime]]) -> list[dict[str, Any] | None]:
    """For each (fingerprint, time): the first genuine occurrence of that failure mode strictly after the time.

    An occurrence is an `occurrences` row of an issue with that fingerprint, or a genuine triage verdict
    (new, ongoing, recurrence) of a signal with that fingerprint; returns {ts, signal_id} or None per probe.
    """
    if not probes:
        return []
    fps = [p[0] for p in probes]
    times = [naive_utc(p[1]) for p in probes]
    rows = store.execute(
        """
        WITH p AS (SELECT unnest(?::VARCHAR[]) AS fingerprint, unnest(?::TIMESTAMP[]) AS after,
                          unnest(range(len(?::VARCHAR[]))) AS k),
        occ AS (
            SELECT i.fingerprint, o.ts, o.signal_id FROM occurrences o JOIN issues i ON i.id = o.issue_id
            WHERE o.verdict IN ('new', 'ongoing', 'recurrence')
            UNION ALL
            SELECT fingerprint, ts, signal_id FROM triage_results WHERE verdict IN ('new', 'ongoing', 'recurrence')
        )
        SELECT p.k, min(occ.ts) AS ts, arg_min(occ.signal_id, occ.ts) AS signal_id
        FROM p JOIN occ ON occ.fingerprint = p.fingerprint AND occ.ts > p.after
        GROUP BY p.k
        """,
        [fps, times, fps],
    ).fetchall()
    found = {k: {"ts": aware(ts), "signal_id": sid} for k, ts, sid in rows}
    return [found.get(k) for k in range(len(probes))]


# --------------------------------------------------------------------------- signal and verdict aggregates


def verdict_counts(store: Store) -> dict[str, int]:
    return {v: n for v, n in store.execute("SELECT verdict, count(*) FROM triage_results GROUP BY verdict").fetchall()}


def verdicts_by_source(store: Store) -> list[dict[str, Any]]:
    return store.rows(
        "SELECT coalesce(s.source, '?') AS source, t.verdict, count(*) AS n FROM triage_results t "
        "LEFT JOIN signals s ON s.id = t.signal_id GROUP BY ALL ORDER BY ALL"
    )


def signal_counts(store: Store, since: datetime | None = None, until: datetime | None = None) -> dict[str, int]:
    """Signals with ts in [since, until], by verdict ('untriaged' for signals not judged yet)."""
    where, params = [], []
    if since is not None:
        where.append("s.ts >= ?")
        params.append(naive_utc(since))
    if until is not None:
        where.append("s.ts <= ?")
        params.append(naive_utc(until))
    rows = store.execute(
        "SELECT coalesce(t.verdict, 'untriaged'), count(*) FROM signals s LEFT JOIN triage_results t ON t.signal_id = s.id"
        + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY 1",
        params,
    ).fetchall()
    return {v: n for v, n in rows}


def verdict_buckets(store: Store, unit: str) -> list[dict[str, Any]]:
    """Noise and genuine verdicts per time bucket (unit: hour, day or week) of the signal's time."""
    if unit not in ("hour", "day", "week"):
        raise ValueError(unit)
    rows = store.rows(
        f"SELECT date_trunc('{unit}', ts) AS t, count(*) FILTER (WHERE verdict = 'noise') AS noise, "
        "count(*) FILTER (WHERE verdict IN ('new', 'ongoing', 'recurrence')) AS genuine, count(*) AS judged "
        "FROM triage_results GROUP BY 1 ORDER BY 1"
    )
    return _aware_rows(rows, "t")


def noise_groups(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The biggest kinds of noise: by the rule that called it noise and the template, with an example signal."""
    rows = store.rows(
        "SELECT t.rule, coalesce(t.template, s.message) AS template, any_value(s.source) AS source, "
        "any_value(s.service) AS service, count(*) AS n, arg_max(t.signal_id, t.ts) AS example, max(t.ts) AS last "
        "FROM triage_results t LEFT JOIN signals s ON s.id = t.signal_id WHERE t.verdict = 'noise' "
        "GROUP BY 1, 2 ORDER BY n DESC, last DESC LIMIT ?",
        [int(limit)],
    )
    return _aware_rows(rows, "last")


def genuine_between(store: Store, since: datetime, until: datetime, limit: int = 500) -> list[dict[str, Any]]:
    """Genuine verdicts of signals in [since, until], with the signal, oldest first."""
    rows = store.rows(
        "SELECT t.signal_id, t.ts, t.verdict, t.issue_id, t.rule, s.source, s.service, s.level, s.message "
        "FROM triage_results t LEFT JOIN signals s ON s.id = t.signal_id "
        "WHERE t.verdict IN ('new', 'ongoing', 'recurrence') AND t.ts >= ? AND t.ts <= ? ORDER BY t.ts, s.seq LIMIT ?",
        [naive_utc(since), naive_utc(until), int(limit)],
    )
    return _aware_rows(rows, "ts")


def signals_between(store: Store, since: datetime, until: datetime, *, sources: Sequence[str] | None = None,
                    service: str | None = None, min_level: str | None = None,
                    limit: int = 200) -> list[dict[str, Any]]:
    """Signals with ts in [since, until] and their verdicts (plain rows, oldest first)."""
    where, params = ["s.ts >= ?", "s.ts <= ?"], [naive_utc(since), naive_utc(until)]
    if sources:
        where.append("s.source IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(sources))
    if service:
        where.append("s.service = ?")
        params.append(service)
    if min_level:
        from agent.models import LEVELS

        where.append("s.level IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(LEVELS[LEVELS.index(min_level):]))
    params.append(int(limit))
    rows = store.rows(
        "SELECT s.id, s.ts, s.source, s.service, s.host, s.level, s.message, s.value, t.verdict, t.issue_id "
        "FROM signals s LEFT JOIN triage_results t ON t.signal_id = s.id WHERE " + " AND ".join(where)
        + " ORDER BY s.ts, s.seq LIMIT ?",
        params,
    )
    return _aware_rows(rows, "ts")


def untriaged_count(store: Store) -> int:
    return store.scalar("SELECT count(*) FROM signals s ANTI JOIN triage_results t ON t.signal_id = s.id")


def existing(store: Store, kind: str, ids: Sequence[str]) -> set[str]:
    """Which of these ids exist (kind: issue, signal, chain, fix, rule) — to check what an answer refers to."""
    table = {"issue": "issues", "signal": "signals", "chain": "chains", "fix": "fixes", "rule": "rules_learned"}[kind]
    if not ids:
        return set()
    rows = store.execute(f"SELECT id FROM {table} WHERE id IN (SELECT unnest(?::VARCHAR[]))", [list(ids)]).fetchall()
    return {r[0] for r in rows}


# --------------------------------------------------------------------------- read-only SQL


_LEADING = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_SAFE_TABLE_FUNCTIONS = frozenset({"unnest", "range", "generate_series"})
_parser: duckdb.DuckDBPyConnection | None = None


def _parse_con() -> duckdb.DuckDBPyConnection:
    """An empty in-memory database used only to parse statements (parsing needs no catalog)."""
    global _parser
    if _parser is None:
        _parser = duckdb.connect(":memory:")
    return _parser


def check_select(sql: str) -> str:
    """The statement if it is one read-only SELECT (or WITH ... SELECT); InputError naming the problem otherwise."""
    text = sql.strip()
    if not text:
        raise InputError("empty SQL statement")
    body = _LEADING.sub("", text, count=1)
    first = re.match(r"[A-Za-z]+", body)
    keyword = first.group(0).upper() if first else body[:1]
    try:
        statements = _parse_con().extract_statements(text)
    except duckdb.Error as exc:
        raise InputError(f"SQL does not parse: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise InputError(f"only one statement is allowed, got {len(statements)}")
    kind = statements[0].type.name
    if keyword not in ("SELECT", "WITH") or kind != "SELECT":
        shown = kind if kind != "SELECT" else keyword
        raise InputError(f"read-only: only SELECT (or WITH ... SELECT) statements are allowed, not {shown}")
    return text.rstrip().rstrip(";")


def _walk(node: Any, tables: set[str], functions: set[str], ctes: set[str]) -> None:
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "BASE_TABLE":
            tables.add(str(node.get("table_name", "")).lower())
        elif kind == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            functions.add(str(fn.get("function_name", "")).lower())
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map", []):
                ctes.add(str(entry.get("key", "")).lower())
        for value in node.values():
            _walk(value, tables, functions, ctes)
    elif isinstance(node, list):
        for value in node:
            _walk(value, tables, functions, ctes)


def check_views_only(store: Store, sql: str) -> str:
    """check_select, and every relation it reads is one of the store's v_* views (or a CTE of the query itself)."""
    text = check_select(sql)
    raw = _parse_con().execute("SELECT json_serialize_sql(?)", [text]).fetchone()[0]
    tree = json.loads(raw)
    if tree.get("error"):
        raise InputError(f"SQL does not parse: {tree.get('error_message', 'unknown error')}")
    tables: set[str] = set()
    functions: set[str] = set()
    ctes: set[str] = set()
    _walk(tree, tables, functions, ctes)
    views = set(require_views(store))
    real = {r[0].lower() for r in store.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    shadowing = sorted(ctes & (real | views))
    if shadowing:
        raise InputError(f"a WITH name may not reuse a table or view name: {', '.join(shadowing)}")
    outside = sorted(t for t in tables if t not in views and t not in ctes)
    if outside:
        raise InputError(f"only the views may be queried ({', '.join(sorted(views))}); not: {', '.join(outside)}")
    bad_fns = sorted(functions - _SAFE_TABLE_FUNCTIONS)
    if bad_fns:
        raise InputError(f"table functions are not allowed here: {', '.join(bad_fns)}")
    return text


def require_views(store: Store) -> list[str]:
    names = view_names(store)
    if not names:
        raise InputError("this store has no v_* views yet: run any writing command (e.g. `selfheal run --once`) "
                         "once to apply its migrations")
    return names


def view_names(store: Store) -> list[str]:
    rows = store.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal AND view_name LIKE 'v\\_%' ESCAPE '\\' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def view_columns(store: Store) -> dict[str, list[str]]:
    rows = store.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE table_name LIKE 'v\\_%' ESCAPE '\\' "
        "ORDER BY table_name, column_index"
    ).fetchall()
    out: dict[str, list[str]] = {}
    for t, c in rows:
        out.setdefault(t, []).append(c)
    return out


def harden(store: Store) -> None:
    """Cut a connection this process owns off from files and the network for good (the engine refuses read_csv & co.)."""
    store.con.execute("SET enable_external_access = false")
    store.con.execute("SET lock_configuration = true")


def run_select(store: Store, sql: str, *, limit: int | None = None,
               views_only: bool = False) -> tuple[list[str], list[tuple], bool]:
    """Run one checked SELECT: (column names, rows, truncated). Errors from the engine are one-line InputErrors."""
    text = check_views_only(store, sql) if views_only else check_select(sql)
    try:
        cur = store.con.execute(text)
        cols = [d[0] for d in cur.description or ()]
        if limit:
            rows = cur.fetchmany(limit + 1)
            truncated = len(rows) > limit
            rows = rows[:limit]
        else:
            rows, truncated = cur.fetchall(), False
    except duckdb.Error as exc:
        raise InputError(f"SQL error: {str(exc).splitlines()[0]}") from None
    return _unique(cols), rows, truncated


def _unique(cols: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for c in cols:
        if c in seen:
            seen[c] += 1
            out.append(f"{c}_{seen[c]}")
        else:
            seen[c] = 0
            out.append(c)
    return out
