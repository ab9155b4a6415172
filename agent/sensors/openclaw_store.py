"""Reading OpenClaw's cron store in both layouts, read-only; plain data out.

Files (up to 2026.5.x; src/cron/store.ts, src/cron/run-log.ts):
  cron/jobs.json            {"version": 1, "jobs": [{id, name, enabled, schedule, state, ...}]}
  cron/jobs-state.json      runtime state split out of jobs.json: {"version": 1, "jobs": {"<id>": {...}}}
  cron/runs/<jobId>.jsonl   one line per finished run: {ts, jobId, action: "finished", status, error,
                            errorReason, summary, deliveryStatus, deliveryError, runAtMs, durationMs,
                            nextRunAtMs, model, provider, ...}; pruned by rewriting the file (tmp + rename)
SQLite (2026.6.1 and later; src/state/openclaw-state-schema.sql, src/cron/store/row-codec.ts):
  state/openclaw.sqlite     cron_jobs(store_key, job_id, ..., job_json, state_json, ...),
                            cron_run_logs(store_key, job_id, seq, ts, ..., entry_json),
                            migration_sources(source_path, target_table, source_record_count, imported_at, ...)
The database is opened with a `file:...?mode=ro` URI: the sensor never writes to it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from agent.sensors.openclaw_files import OpenClawInstall


@dataclass
class Job:
    id: str
    name: str
    enabled: bool
    schedule: dict[str, Any]
    state: dict[str, Any]
    store_key: str | None = None


@dataclass
class RunEntry:
    job_id: str
    ts: int  # ms: when the run finished and was logged
    entry: dict[str, Any]
    seq: int | None = None  # SQLite's per-job sequence
    store_key: str | None = None

    @property
    def key(self) -> str:
        """Identity of the run, the same in both layouts (a migration moves runs, it does not make new ones)."""
        return f"{self.job_id}|{self.ts}|{self.entry.get('runAtMs')}"


@dataclass
class Migration:
    source_path: str
    target_table: str
    records: int | None
    status: str
    imported_at: int | None


@dataclass
class CronSnapshot:
    layout: str  # files | sqlite | none
    jobs: dict[str, Job] = field(default_factory=dict)
    runs: list[RunEntry] = field(default_factory=list)
    migrations: list[Migration] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- layout


def detect_layout(inst: OpenClawInstall) -> str:
    """sqlite when the state database has the cron tables, else files when a jobs.json exists, else none."""
    db = inst.sqlite_path
    if db.is_file():
        try:
            with connect_ro(db) as conn:
                if table_exists(conn, "cron_jobs"):
                    return "sqlite"
        except sqlite3.Error:
            pass
    if inst.cron_store.is_file():
        return "files"
    return "none"


def connect_ro(path: Path, timeout_s: float = 2.0) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=timeout_s)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA query_only = 1")
    return conn


def table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}  # table names are ours, not input


# --------------------------------------------------------------------------- jobs


def _obj(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, (str, bytes)) and raw:
        try:
            val = json.loads(raw)
        except ValueError:
            return {}
        return val if isinstance(val, dict) else {}
    return {}


def job_from(raw: dict[str, Any], state: dict[str, Any] | None = None, store_key: str | None = None) -> Job | None:
    jid = raw.get("id") or raw.get("jobId")
    if not isinstance(jid, str) or not jid:
        return None
    merged = dict(raw.get("state") or {}) if isinstance(raw.get("state"), dict) else {}
    merged.update(state or {})
    name = raw.get("name") if isinstance(raw.get("name"), str) and raw.get("name") else jid
    return Job(id=jid, name=name, enabled=raw.get("enabled") is not False,
               schedule=raw.get("schedule") if isinstance(raw.get("schedule"), dict) else {},
               state=merged, store_key=store_key)


def read_jobs_file(path: Path, state_path: Path | None = None) -> dict[str, Job]:
    """jobs.json (and its jobs-state.json sidecar): {id: Job}; a missing file is no jobs, a broken one raises."""
    data = _read_json(path)
    if data is None:
        return {}
    raw_jobs = data.get("jobs") if isinstance(data, dict) else data
    sidecar: dict[str, Any] = {}
    if state_path is not None:
        sdata = _read_json(state_path)
        if isinstance(sdata, dict):
            entries = sdata.get("jobs", sdata)
            if isinstance(entries, dict):
                sidecar = entries
            elif isinstance(entries, list):
                sidecar = {e.get("id") or e.get("jobId"): e for e in entries if isinstance(e, dict)}
    jobs: dict[str, Job] = {}
    for raw in raw_jobs if isinstance(raw_jobs, list) else []:
        if not isinstance(raw, dict):
            continue
        jid = raw.get("id") or raw.get("jobId")
        extra = sidecar.get(jid) if isinstance(jid, str) else None
        state = None
        if isinstance(extra, dict):
            state = extra.get("state") if isinstance(extra.get("state"), dict) else extra
        job = job_from(raw, state)
        if job is not None:
            jobs[job.id] = job
    return jobs


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        return json.loads(text) if text.strip() else None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None


def read_jobs_sqlite(conn: sqlite3.Connection, store_key: str | None = None) -> dict[str, Job]:
    """cron_jobs rows: job_json + state_json, else the scalar columns. Rows of `store_key` when it has any."""
    cols = columns(conn, "cron_jobs")
    rows = [dict(r) for r in conn.execute("SELECT * FROM cron_jobs")]
    if store_key is not None and "store_key" in cols and any(r.get("store_key") == store_key for r in rows):
        rows = [r for r in rows if r.get("store_key") == store_key]
    jobs: dict[str, Job] = {}
    for r in rows:
        raw = _obj(r.get("job_json"))
        raw.setdefault("id", r.get("job_id"))
        if r.get("name") is not None:
            raw.setdefault("name", r.get("name"))
        if r.get("enabled") is not None:
            raw["enabled"] = bool(r["enabled"])
        if not raw.get("schedule") and r.get("schedule_kind"):
            raw["schedule"] = {k: v for k, v in {"kind": r.get("schedule_kind"), "expr": r.get("schedule_expr"),
                                                 "tz": r.get("schedule_tz"), "everyMs": r.get("every_ms"),
                                                 "anchorMs": r.get("anchor_ms"), "at": r.get("at")}.items()
                               if v is not None}
        state = _obj(r.get("state_json"))
        for col, key in (("next_run_at_ms", "nextRunAtMs"), ("running_at_ms", "runningAtMs"),
                         ("last_run_at_ms", "lastRunAtMs"), ("last_run_status", "lastRunStatus"),
                         ("last_error", "lastError"), ("consecutive_errors", "consecutiveErrors"),
                         ("last_delivery_status", "lastDeliveryStatus"), ("last_delivery_error", "lastDeliveryError")):
            if col in cols and r.get(col) is not None and key not in state:
                state[key] = r[col]
        job = job_from(raw, state, r.get("store_key"))
        if job is not None:
            jobs[job.id] = job
    return jobs


# --------------------------------------------------------------------------- runs


def parse_run_line(line: str | bytes) -> dict[str, Any] | None:
    """One run-log line as OpenClaw's reader accepts it (action 'finished', a jobId, a numeric ts), else None."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("action", "finished") != "finished":
        return None
    if not isinstance(obj.get("jobId"), str) or not obj["jobId"].strip():
        return None
    if not isinstance(obj.get("ts"), (int, float)) or isinstance(obj.get("ts"), bool):
        return None
    return obj


def read_run_file(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete lines of a run log from `offset`: (entries, offset after the last complete line)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    cut = data.rfind(b"\n")
    if cut < 0:
        return [], offset
    out = []
    for line in data[:cut + 1].splitlines():
        if line.strip():
            entry = parse_run_line(line)
            if entry is not None:
                out.append(entry)
    return out, offset + cut + 1


def run_files(runs_dir: Path) -> Iterator[Path]:
    try:
        names = sorted(os.listdir(runs_dir))
    except OSError:
        return
    for name in names:
        if name.endswith(".jsonl"):
            p = runs_dir / name
            if p.is_file():
                yield p


def read_runs_sqlite(conn: sqlite3.Connection, since_ts: int | None, store_key: str | None = None) -> list[RunEntry]:
    """cron_run_logs rows with ts >= since_ts (all when None), oldest first."""
    cols = columns(conn, "cron_run_logs")
    where, args = [], []
    if since_ts is not None:
        where.append("ts >= ?")
        args.append(int(since_ts))
    order = "ts, seq" if "seq" in cols else "ts"
    sql = "SELECT * FROM cron_run_logs" + (f" WHERE {' AND '.join(where)}" if where else "") + f" ORDER BY {order}"
    rows = [dict(r) for r in conn.execute(sql, args)]
    if store_key is not None and "store_key" in cols and any(r.get("store_key") == store_key for r in rows):
        rows = [r for r in rows if r.get("store_key") == store_key]
    out = []
    for r in rows:
        entry = _obj(r.get("entry_json"))
        for col, key in (("status", "status"), ("error", "error"), ("summary", "summary"),
                         ("delivery_status", "deliveryStatus"), ("delivery_error", "deliveryError"),
                         ("run_at_ms", "runAtMs"), ("duration_ms", "durationMs"), ("next_run_at_ms", "nextRunAtMs"),
                         ("model", "model"), ("provider", "provider")):
            if r.get(col) is not None and key not in entry:
                entry[key] = r[col]
        jid = r.get("job_id") or entry.get("jobId")
        ts = r.get("ts") if r.get("ts") is not None else entry.get("ts")
        if not isinstance(jid, str) or not isinstance(ts, (int, float)):
            continue
        entry.setdefault("jobId", jid)
        entry.setdefault("ts", ts)
        out.append(RunEntry(job_id=jid, ts=int(ts), entry=entry, seq=r.get("seq"), store_key=r.get("store_key")))
    return out


def read_migrations(conn: sqlite3.Connection) -> list[Migration]:
    """Rows of migration_sources about the cron store (what `openclaw doctor --fix` imported, and when)."""
    if not table_exists(conn, "migration_sources"):
        return []
    out = []
    for r in conn.execute("SELECT * FROM migration_sources"):
        d = dict(r)
        path = str(d.get("source_path") or "")
        table = str(d.get("target_table") or "")
        if not (table.startswith("cron_") or "/cron/" in path.replace("\\", "/")):
            continue
        out.append(Migration(source_path=path, target_table=table, records=d.get("source_record_count"),
                             status=str(d.get("status") or ""), imported_at=d.get("imported_at")))
    return out


# --------------------------------------------------------------------------- legacy leftovers


def legacy_job_files(cron_dir: Path) -> list[Path]:
    """jobs.json, jobs.json.migrated, jobs.json.bak... left next to the store (not the state or quarantine files)."""
    try:
        names = sorted(os.listdir(cron_dir))
    except OSError:
        return []
    return [cron_dir / n for n in names
            if n.startswith("jobs.json") and not n.endswith((".tmp", ".lock")) and (cron_dir / n).is_file()]


def quarantined_ids(cron_dir: Path) -> set[str]:
    try:
        data = _read_json(cron_dir / "jobs-quarantine.json")
    except (OSError, ValueError):
        return set()
    out: set[str] = set()
    for e in (data or {}).get("jobs", []) if isinstance(data, dict) else []:
        job = e.get("job") if isinstance(e, dict) else None
        if isinstance(job, dict) and isinstance(job.get("id") or job.get("jobId"), str):
            out.add(job.get("id") or job.get("jobId"))
    return out
