"""OpenClaw installations built the way OpenClaw writes them (tests/data/openclaw/README.md cites the sources),
and checks that the fixtures keep OpenClaw's formats. Other tests/test_openclaw*.py import the builders."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "openclaw"
TSLOG_LEVEL_IDS = {"SILLY": 0, "TRACE": 1, "DEBUG": 2, "INFO": 3, "WARN": 4, "ERROR": 5, "FATAL": 6}


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass
class OpenClawFixture:
    """~/.openclaw and /tmp/openclaw under `root`. layout: files (state inside jobs.json, up to 2026.4),
    split (jobs.json + jobs-state.json, 2026.5) or sqlite (state/openclaw.sqlite, 2026.6.1+)."""

    root: Path
    layout: str = "files"
    config: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = self.root / ".openclaw"
        self.log_dir = self.root / "tmp-openclaw"
        (self.state_dir / "cron").mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config = self.config or {
            "gateway": {"mode": "local", "bind": "loopback", "port": 18789},
            "agents": {"defaults": {"model": {"primary": "anthropic/claude-sonnet-4-5"},
                                    "heartbeat": {"every": "30m"}}},
            "cron": {"enabled": True},
            "logging": {"level": "info"},
        }
        self.write_config()
        if self.layout == "sqlite":
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(self.db_path) as conn:
                conn.executescript((DATA / "state-schema.sql").read_text(encoding="utf-8"))
        self.save_jobs()

    # ---------------------------------------------------------------- paths

    @property
    def config_path(self) -> Path:
        return self.state_dir / "openclaw.json"

    @property
    def jobs_path(self) -> Path:
        return self.state_dir / "cron" / "jobs.json"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state" / "openclaw.sqlite"

    @property
    def store_key(self) -> str:
        return str(self.jobs_path.resolve())  # src/cron/store/key.ts: the resolved store path

    def log_path(self, day: str) -> Path:
        return self.log_dir / f"openclaw-{day}.log"

    def section(self, **extra: Any) -> dict[str, Any]:
        """The `openclaw:` section of selfheal.yaml pointing at this installation."""
        base = {"state_dir": str(self.state_dir), "log": str(self.log_dir / "openclaw-[0-9]*.log")}
        base.update(extra)
        return base

    # ---------------------------------------------------------------- config

    def write_config(self) -> None:
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")

    # ---------------------------------------------------------------- jobs

    def add_job(self, job_id: str, name: str, schedule: dict[str, Any], *, enabled: bool = True,
                created: datetime, next_run: datetime | None = None,
                delivery: dict[str, Any] | None = None) -> None:
        job = {
            "id": job_id, "agentId": "main", "name": name, "enabled": enabled,
            "createdAtMs": ms(created), "updatedAtMs": ms(created), "schedule": schedule,
            "sessionTarget": "isolated", "wakeMode": "now",
            "payload": {"kind": "agentTurn", "message": f"Run the {name} task."},
            "delivery": delivery or {"mode": "announce", "channel": "telegram", "to": "-1001234567890"},
            "state": {"nextRunAtMs": ms(next_run)} if next_run else {},
        }
        self.jobs[job_id] = job
        self.save_jobs()

    def save_jobs(self) -> None:
        if self.layout in ("files", "split"):
            jobs = []
            sidecar = {}
            for job in self.jobs.values():
                if self.layout == "split":
                    jobs.append({**job, "state": {}})
                    sidecar[job["id"]] = {"updatedAtMs": job["updatedAtMs"], "state": job["state"]}
                else:
                    jobs.append(job)
            self.jobs_path.write_text(json.dumps({"version": 1, "jobs": jobs}, indent=2), encoding="utf-8")
            if self.layout == "split":
                (self.state_dir / "cron" / "jobs-state.json").write_text(
                    json.dumps({"version": 1, "jobs": sidecar}, indent=2), encoding="utf-8")
            return
        with sqlite3.connect(self.db_path) as conn:
            conn.execute("DELETE FROM cron_jobs WHERE store_key = ?", (self.store_key,))
            for order, job in enumerate(self.jobs.values()):
                conn.execute(*self._job_row(job, order))

    def _job_row(self, job: dict[str, Any], order: int) -> tuple[str, list[Any]]:
        sched, state, delivery = job["schedule"], job["state"], job.get("delivery") or {}
        stripped = {k: v for k, v in job.items() if k not in ("state", "updatedAtMs")}
        stripped["state"] = {}
        row = {
            "store_key": self.store_key, "job_id": job["id"], "name": job["name"], "enabled": int(job["enabled"]),
            "created_at_ms": job["createdAtMs"], "updated_at": job["updatedAtMs"], "agent_id": job.get("agentId"),
            "session_target": job["sessionTarget"], "wake_mode": job["wakeMode"],
            "schedule_kind": sched["kind"], "schedule_expr": sched.get("expr"), "schedule_tz": sched.get("tz"),
            "every_ms": sched.get("everyMs"), "anchor_ms": sched.get("anchorMs"), "at": sched.get("at"),
            "payload_kind": job["payload"]["kind"], "payload_message": job["payload"].get("message"),
            "delivery_mode": delivery.get("mode"), "delivery_channel": delivery.get("channel"),
            "delivery_to": delivery.get("to"),
            "next_run_at_ms": state.get("nextRunAtMs"), "running_at_ms": state.get("runningAtMs"),
            "last_run_at_ms": state.get("lastRunAtMs"),
            "last_run_status": state.get("lastRunStatus") or state.get("lastStatus"),
            "last_error": state.get("lastError"), "last_duration_ms": state.get("lastDurationMs"),
            "consecutive_errors": state.get("consecutiveErrors"),
            "last_delivery_status": state.get("lastDeliveryStatus"),
            "last_delivery_error": state.get("lastDeliveryError"),
            "job_json": json.dumps(stripped), "state_json": json.dumps(state),
            "runtime_updated_at_ms": job["updatedAtMs"], "sort_order": order,
        }
        cols = ", ".join(row)
        return f"INSERT INTO cron_jobs ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values())

    # ---------------------------------------------------------------- runs

    def finish_run(self, job_id: str, *, started: datetime, duration_s: float, status: str = "ok",
                   error: str | None = None, summary: str | None = None, delivery_status: str | None = None,
                   delivery_error: str | None = None, next_run: datetime | None = None,
                   error_reason: str | None = None) -> dict[str, Any]:
        """What src/cron/service/timer.ts does when a run ends: update the job's state, append the run log."""
        job = self.jobs[job_id]
        ended = started + timedelta(seconds=duration_s)
        st = job["state"]
        st.pop("runningAtMs", None)
        st.update(lastRunAtMs=ms(started), lastRunStatus=status, lastStatus=status,
                  lastDurationMs=int(duration_s * 1000))
        if error:
            st["lastError"] = error
        else:
            st.pop("lastError", None)
        st["consecutiveErrors"] = st.get("consecutiveErrors", 0) + 1 if status == "error" else 0
        if delivery_status:
            st["lastDeliveryStatus"] = delivery_status
        if delivery_error:
            st["lastDeliveryError"] = delivery_error
        if next_run is not None:
            st["nextRunAtMs"] = ms(next_run)
        job["updatedAtMs"] = ms(ended)
        entry: dict[str, Any] = {"ts": ms(ended), "jobId": job_id, "action": "finished", "status": status}
        for key, value in (("error", error), ("errorReason", error_reason), ("summary", summary),
                           ("deliveryStatus", delivery_status), ("deliveryError", delivery_error),
                           ("sessionKey", f"agent:main:cron:{job_id}"), ("runAtMs", ms(started)),
                           ("durationMs", int(duration_s * 1000)),
                           ("nextRunAtMs", ms(next_run) if next_run else None),
                           ("model", "claude-sonnet-4-5"), ("provider", "anthropic")):
            if value is not None:
                entry[key] = value
        if self.layout == "sqlite":
            seq = self.seq[job_id] = self.seq.get(job_id, 0) + 1
            with sqlite3.connect(self.db_path) as conn:
                conn.execute(
                    "INSERT INTO cron_run_logs (store_key, job_id, seq, ts, status, error, summary, delivery_status,"
                    " delivery_error, session_key, run_at_ms, duration_ms, next_run_at_ms, model, provider,"
                    " entry_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.store_key, job_id, seq, entry["ts"], status, error, summary, delivery_status,
                     delivery_error, entry["sessionKey"], entry["runAtMs"], entry["durationMs"],
                     entry.get("nextRunAtMs"), entry["model"], entry["provider"], json.dumps(entry), entry["ts"]))
        else:
            runs = self.state_dir / "cron" / "runs"
            runs.mkdir(exist_ok=True)
            with open(runs / f"{job_id}.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self.save_jobs()
        return entry

    def prune_run_log(self, job_id: str, keep_lines: int) -> None:
        """src/cron/run-log.ts pruneIfNeeded: the last keepLines lines written to a temp file renamed over."""
        path = self.state_dir / "cron" / "runs" / f"{job_id}.jsonl"
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        tmp = path.with_name(f"{path.name}.{os.getpid()}.0123456789abcdef.tmp")
        tmp.write_text("\n".join(lines[-keep_lines:]) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    # ---------------------------------------------------------------- gateway log

    def log(self, when: datetime, subsystem: str, level: str, message: str, meta: dict[str, Any] | None = None,
            *, path: Path | None = None, newline: bool = True) -> str:
        """One tslog record as src/logging/logger.ts + subsystem.ts write it to the gateway log."""
        name = json.dumps({"subsystem": subsystem}, separators=(",", ":"))
        parts: list[Any] = [name] + ([meta] if meta else []) + [message]
        record: dict[str, Any] = {str(i): p for i, p in enumerate(parts)}
        record["_meta"] = {"runtime": "node", "runtimeVersion": "24.3.0", "hostname": "unknown", "name": name,
                           "parentNames": ["openclaw"], "date": iso(when),
                           "logLevelId": TSLOG_LEVEL_IDS[level], "logLevelName": level,
                           "path": {"fullFilePath": "file:///usr/lib/node_modules/openclaw/dist/entry.js:1:1"}}
        record["time"] = iso(when)
        line = json.dumps(record, separators=(",", ":"))
        target = path or self.log_path(when.strftime("%Y-%m-%d"))
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(line + ("\n" if newline else ""))
        return line


# --------------------------------------------------------------------------- checks of the fixtures themselves


T0 = datetime(2026, 6, 1, 6, 0, tzinfo=timezone.utc)


def test_files_layout_is_the_legacy_store_shape(tmp_path):
    oc = OpenClawFixture(tmp_path, "files")
    oc.add_job("a1b2", "daily-digest", {"kind": "cron", "expr": "0 7 * * *", "tz": "UTC"}, created=T0,
               next_run=T0 + timedelta(hours=1))
    oc.finish_run("a1b2", started=T0 + timedelta(hours=1), duration_s=12.5, status="error",
                  error="429 rate_limit_error", next_run=T0 + timedelta(days=1, hours=1))
    store = json.loads(oc.jobs_path.read_text())
    assert store["version"] == 1 and store["jobs"][0]["state"]["consecutiveErrors"] == 1
    line = json.loads((oc.state_dir / "cron" / "runs" / "a1b2.jsonl").read_text().splitlines()[0])
    assert list(line)[:4] == ["ts", "jobId", "action", "status"] and line["action"] == "finished"


def test_sqlite_layout_uses_openclaws_schema_and_row_codec(tmp_path):
    oc = OpenClawFixture(tmp_path, "sqlite")
    oc.add_job("a1b2", "daily-digest", {"kind": "every", "everyMs": 3_600_000}, created=T0,
               next_run=T0 + timedelta(hours=1))
    oc.finish_run("a1b2", started=T0 + timedelta(hours=1), duration_s=3, next_run=T0 + timedelta(hours=2))
    with sqlite3.connect(oc.db_path) as conn:
        job_json, state_json, key = conn.execute("SELECT job_json, state_json, store_key FROM cron_jobs").fetchone()
        seq, entry = conn.execute("SELECT seq, entry_json FROM cron_run_logs").fetchone()
    assert json.loads(job_json)["state"] == {} and json.loads(state_json)["lastRunStatus"] == "ok"
    assert key == oc.store_key and seq == 1 and json.loads(entry)["jobId"] == "a1b2"
