"""OpenClaw's cron scheduler, watched through its store (either layout): runs, missed runs, failure streaks.

Every round the sensor reads the store read-only and emits:
- one `cron` signal per run finished since the last round (job name as service, the run's error and delivery
  error in the message, its duration in seconds as value; ERROR when the run failed or its output was not
  delivered), levelled further by rules/openclaw.yaml;
- one missed-run ERROR per scheduled slot of an enabled job whose time passed by more than `grace_s` with no
  run (the stored nextRunAtMs, then the schedule's following slots);
- a WARNING when a job's consecutiveErrors rises (a failure streak, visible before anyone reads the runs);
- on the SQLite layout: the cron imports recorded in migration_sources, and an ERROR when a leftover
  jobs.json* lists jobs the SQLite store does not hold (a 2026.6 migration that lost jobs).
Cursors (per-job sequence or finish time, run-file offsets) live in sensor_state and are committed with the
signals, so a restart neither repeats nor loses a run; signal ids derive from the run itself, so a run that
moved from runs/*.jsonl into SQLite keeps its id.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.clock import Clock
from agent.models import Signal, rfc3339
from agent.sensors.base import Sensor, SensorContext
from agent.sensors.openclaw_files import OpenClawInstall
from agent.sensors.openclaw_rules import OpenClawRules
from agent.sensors.openclaw_store import (
    CronSnapshot,
    Job,
    RunEntry,
    connect_ro,
    detect_layout,
    legacy_job_files,
    quarantined_ids,
    read_jobs_file,
    read_jobs_sqlite,
    read_migrations,
    read_run_file,
    read_runs_sqlite,
    run_files,
    table_exists,
)
from agent.store import Store
from agent.store.state import get_state, set_state

EARLY_TOLERANCE_MS = 60_000  # a run that starts a little before its slot (clock skew, stagger) still counts
SQLITE_SLACK_MS = 3_600_000  # runs logged this long before the newest one seen are read again (late inserts)
MAX_MISSED_PER_JOB = 100  # per round; older missed slots are summed up in one signal
MAX_TEXT = 4000
MAX_IMPORTS_KEPT = 500
RECENT_KEEP_MS = 24 * 3_600_000  # runs remembered for the in-flight count
MAX_RECENT = 500


@dataclass(frozen=True)
class CronOptions:
    grace_s: float = 300.0
    consecutive_errors_warn: int = 2
    start_at: str = "end"


def ms_to_dt(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, timezone.utc)


def _text(value: Any) -> str:
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    s = s.strip()
    return s if len(s) <= MAX_TEXT else s[:MAX_TEXT] + " ..."


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sid(prefix: str, *parts: Any) -> str:
    return prefix + hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


class OpenClawCronSensor(Sensor):
    kind = "cron"

    def __init__(self, conf: Any, ctx: SensorContext, inst: OpenClawInstall, rules: OpenClawRules,
                 options: CronOptions):
        super().__init__(conf, ctx)
        self.inst = inst
        self.rules = rules
        self.opts = options

    def target(self) -> str:
        return f"OpenClaw cron store in {self.inst.state_dir}"

    # ------------------------------------------------------------------ one round

    def poll(self, store: Store, clock: Clock) -> list[Signal]:
        now = clock.now()
        now_ms = int(now.timestamp() * 1000)
        st = {k: get_state(store, self.id, k) for k in
              ("initialized", "since_ms", "runs", "files", "streak", "consec", "missed", "migration", "imports",
               "layout", "recent", "overlaps")}
        initialized = bool(st["initialized"])
        runs_cur: dict[str, dict[str, Any]] = st["runs"] or {}
        since_ms = st["since_ms"]
        if not initialized:
            since_ms = now_ms if self.opts.start_at == "end" else 0
        snap, files_state = self._read(runs_cur, st["files"] or {}, since_ms)
        self.warnings.extend(snap.warnings)
        out: list[Signal] = []
        if snap.layout == "none":
            self.warn(f"no OpenClaw cron store: neither {self.inst.sqlite_path} nor {self.inst.cron_store} exists")
        if st["layout"] and st["layout"] != snap.layout and snap.layout != "none":
            where = self.inst.sqlite_path if snap.layout == "sqlite" else self.inst.cron_store
            out.append(self._plain(now, "INFO", f"openclaw cron store: now read from {self._rel(where)} "
                                                f"({snap.layout} layout, was {st['layout']})",
                                   layout=snap.layout, previous_layout=st["layout"]))
        streak: dict[str, int] = st["streak"] or {}
        backfill = initialized or self.opts.start_at == "beginning"
        fresh = self._new_runs(snap, runs_cur, streak, since_ms)
        if backfill:
            out += [self._run_signal(run, snap.jobs.get(run.job_id), n, snap.layout) for run, n in fresh]
        recent: list[list[Any]] = st["recent"] or []
        overlaps: list[str] = st["overlaps"] or []
        out += self._in_flight([run for run, _ in fresh], snap, recent, overlaps, now_ms, report=backfill)
        missed: dict[str, int] = st["missed"] or {}
        out += self._missed(snap, runs_cur, missed, now_ms, since_ms)
        consec: dict[str, int] = st["consec"] or {}
        out += self._consecutive(snap, consec, now, initialized)
        migration = st["migration"]
        imports: list[str] = st["imports"] or []
        if snap.layout == "sqlite":
            out += self._imports(snap, imports, now)
            sig, migration = self._migration_check(snap, migration, now)
            out += sig
        for key, value in (("runs", runs_cur), ("files", files_state), ("streak", streak), ("missed", missed),
                           ("consec", consec), ("migration", migration), ("imports", imports[-MAX_IMPORTS_KEPT:]),
                           ("layout", snap.layout if snap.layout != "none" else st["layout"]),
                           ("since_ms", since_ms), ("initialized", True), ("recent", recent),
                           ("overlaps", overlaps[-MAX_IMPORTS_KEPT:])):
            set_state(store, self.id, key, value, at=now)
        return out

    # ------------------------------------------------------------------ reading

    def _read(self, runs_cur: dict[str, Any], files_state: dict[str, Any],
              since_ms: int) -> tuple[CronSnapshot, dict[str, Any]]:
        inst = self.inst
        layout = detect_layout(inst)
        snap = CronSnapshot(layout=layout)
        store_key = str(inst.cron_store.resolve()) if inst.cron_store.parent.exists() else str(inst.cron_store)
        if layout == "sqlite":
            with closing(connect_ro(inst.sqlite_path)) as conn:
                snap.jobs = read_jobs_sqlite(conn, store_key)
                if table_exists(conn, "cron_run_logs"):
                    seen = [c.get("ts") for c in runs_cur.values() if isinstance(c.get("ts"), (int, float))]
                    mark = max(seen + [since_ms]) if (seen or since_ms) else None
                    floor = None if mark is None or mark <= 0 else int(mark) - SQLITE_SLACK_MS
                    snap.runs = read_runs_sqlite(conn, floor, store_key)
                snap.migrations = read_migrations(conn)
            return snap, files_state
        if layout == "files":
            snap.jobs = read_jobs_file(inst.cron_store, inst.cron_state_file)
            new_files: dict[str, Any] = {}
            for path in run_files(inst.runs_dir):
                try:
                    fst = os.stat(path)
                except OSError:
                    continue
                prev = files_state.get(path.name)
                same = bool(prev) and (prev["dev"], prev["ino"]) == (fst.st_dev, fst.st_ino) \
                    and fst.st_size >= prev["offset"]
                try:
                    entries, end = read_run_file(path, prev["offset"] if same else 0)
                except OSError as exc:
                    snap.warnings.append(f"{path}: {exc.strerror or exc}")
                    if prev:
                        new_files[path.name] = prev
                    continue
                new_files[path.name] = {"dev": fst.st_dev, "ino": fst.st_ino, "offset": end}
                snap.runs += [RunEntry(job_id=e["jobId"], ts=int(e["ts"]), entry=e) for e in entries]
            snap.runs.sort(key=lambda r: (r.ts, r.job_id))
            return snap, new_files
        return snap, files_state

    # ------------------------------------------------------------------ runs

    def _new_runs(self, snap: CronSnapshot, cursors: dict[str, dict[str, Any]], streak: dict[str, int],
                  since_ms: int) -> list[tuple[RunEntry, int]]:
        """Runs not seen before, each with the job's error streak after it; the cursors move past them."""
        out: list[tuple[RunEntry, int]] = []
        for run in snap.runs:
            cur = cursors.get(run.job_id)
            if cur is None:
                cur = cursors[run.job_id] = {"ts": since_ms, "seq": None, "seen": [], "run_at": None}
            if not _is_new(run, cur):
                continue
            _advance(cur, run)
            status = run.entry.get("status")
            if status == "error":
                streak[run.job_id] = streak.get(run.job_id, 0) + 1
            elif status == "ok":
                streak[run.job_id] = 0
            out.append((run, streak.get(run.job_id, 0)))
        return out

    def _in_flight(self, fresh: list[RunEntry], snap: CronSnapshot, recent: list[list[Any]], reported: list[str],
                   now_ms: int, report: bool) -> list[Signal]:
        """Runs that were in flight together (from runAtMs and durationMs): the most at one new run's start."""
        for run in fresh:
            start, dur = _num(run.entry.get("runAtMs")), _num(run.entry.get("durationMs"))
            if start is not None and dur is not None:
                name = snap.jobs[run.job_id].name if run.job_id in snap.jobs else run.job_id
                recent.append([run.job_id, name, int(start), int(start + dur)])
        recent[:] = [r for r in recent if r[3] >= now_ms - RECENT_KEEP_MS][-MAX_RECENT:]
        if not report or not fresh:
            return []
        best: tuple[int, int, list[list[Any]]] | None = None
        for run in fresh:
            at = _num(run.entry.get("runAtMs"))
            if at is None:
                continue
            together = [r for r in recent if r[2] <= at < r[3]]
            if len(together) >= 2 and (best is None or len(together) > best[0]):
                best = (len(together), int(at), together)
        if best is None:
            return []
        n, at, together = best
        together = sorted(together, key=lambda r: r[2])
        key = _sid("openclaw-inflight-", at, ",".join(r[0] for r in together))
        if key in reported:
            return []
        reported.append(key)
        sig = self._plain(ms_to_dt(at), "INFO",
                          f"openclaw cron: {n} runs in flight at once at {rfc3339(ms_to_dt(at))}: "
                          + ", ".join(repr(r[1]) for r in together),
                          value=float(n), runs_in_flight=n, jobs=[r[1] for r in together])
        sig.id = key
        return [sig]

    def _run_signal(self, run: RunEntry, job: Job | None, streak: int, layout: str) -> Signal:
        e = run.entry
        name = job.name if job else run.job_id
        status = str(e.get("status") or "unknown")
        error = _text(e.get("error"))
        delivery_error = _text(e.get("deliveryError"))
        delivery_status = e.get("deliveryStatus")
        duration_ms = _num(e.get("durationMs"))
        level = "INFO"
        if status == "error":
            level = "ERROR"
            message = f"openclaw cron job {name!r} failed: {error or 'no error text recorded'}"
            if delivery_error:
                message += f" (delivery {delivery_status or 'failed'}: {delivery_error})"
        elif status == "skipped":
            summary = _text(e.get("summary")).splitlines()
            reason = error or (summary[0] if summary else "no reason recorded")
            message = f"openclaw cron job {name!r} skipped: {reason}"
        elif delivery_error and delivery_status != "delivered":
            level = "ERROR"
            message = f"openclaw cron job {name!r} ran but its output was not delivered: {delivery_error}"
        else:
            took = f" in {duration_ms / 1000:.1f}s" if duration_ms is not None else ""
            message = f"openclaw cron job {name!r} finished {status}{took}"
            if delivery_status and delivery_status != "not-requested":
                message += f", delivery {delivery_status}"
        attrs: dict[str, Any] = {
            "job": name, "job_id": run.job_id, "status": status, "error_reason": e.get("errorReason"),
            "delivery_status": delivery_status, "delivery_error": delivery_error or None,
            "run_at": rfc3339(ms_to_dt(e["runAtMs"])) if _num(e.get("runAtMs")) is not None else None,
            "duration_ms": duration_ms, "next_run_at": rfc3339(ms_to_dt(e["nextRunAtMs"]))
            if _num(e.get("nextRunAtMs")) is not None else None,
            "model": e.get("model"), "provider": e.get("provider"), "session_key": e.get("sessionKey"),
            "summary": _text(e.get("summary"))[:500] or None, "layout": layout, "openclaw": True,
        }
        if status == "error":
            attrs["consecutive_errors"] = streak
        if run.seq is not None:
            attrs["seq"] = run.seq
        sig = self.rules.classify("cron", message)
        if sig is not None:
            attrs["signature"] = sig.id
            level = sig.level or level
        return Signal(id=_sid("openclaw-run-", run.key), ts=ms_to_dt(run.ts), source="cron", service=name,
                      host=self.ctx.host, level=level, message=message,
                      value=round(duration_ms / 1000, 3) if duration_ms is not None else None,
                      attrs={k: v for k, v in attrs.items() if v is not None})

    # ------------------------------------------------------------------ missed runs

    def _missed(self, snap: CronSnapshot, cursors: dict[str, Any], reported: dict[str, int],
                now_ms: int, watch_from: int) -> list[Signal]:
        grace_ms = int(self.opts.grace_s * 1000)
        out: list[Signal] = []
        for job in snap.jobs.values():
            if not job.enabled:
                continue
            nxt = _num(job.state.get("nextRunAtMs"))
            if nxt is None:
                continue
            ran = [_num(job.state.get(k)) for k in ("lastRunAtMs", "runningAtMs")]
            cur = cursors.get(job.id) or {}
            ran.append(_num(cur.get("run_at")))
            last_run = max((r for r in ran if r is not None), default=None)
            last = reported.get(job.id)
            missed: list[int] = []
            for slot in self._slots(job, int(nxt), now_ms - grace_ms):
                if last is not None and slot <= last:
                    continue
                if last_run is not None and last_run >= slot - EARLY_TOLERANCE_MS:
                    continue
                missed.append(slot)
            if not missed:
                continue
            reported[job.id] = missed[-1]
            # Slots that passed before selfheal watched are history; that the job is overdue now is not.
            missed = [t for t in missed if t + grace_ms >= watch_from] or missed[-1:]
            if len(missed) > MAX_MISSED_PER_JOB:
                older = missed[:-MAX_MISSED_PER_JOB]
                out.append(self._plain(
                    ms_to_dt(older[-1] + grace_ms), "ERROR",
                    f"openclaw cron job {job.name!r} also missed {len(older)} earlier scheduled runs "
                    f"({rfc3339(ms_to_dt(older[0]))} .. {rfc3339(ms_to_dt(older[-1]))}, {_describe(job.schedule)})",
                    service=job.name, job_id=job.id, missed=True, missed_count=len(older)))
            for slot in missed[-MAX_MISSED_PER_JOB:]:
                out.append(self._missed_signal(job, slot, grace_ms, last_run))
        return out

    def _slots(self, job: Job, first: int, until_ms: int) -> list[int]:
        """The stored next run and the schedule's following slots, up to `until_ms` (ms)."""
        if first > until_ms:
            return []
        slots = [first]
        sched = job.schedule or {}
        kind = sched.get("kind")
        limit = 10 * MAX_MISSED_PER_JOB
        if kind == "every" and (_num(sched.get("everyMs")) or 0) > 0:
            step = int(sched["everyMs"])
            while slots[-1] + step <= until_ms and len(slots) < limit:
                slots.append(slots[-1] + step)
        elif kind == "cron" and isinstance(sched.get("expr"), str):
            try:
                from croniter import croniter

                from agent.sensors.cron import schedule_zone

                zone = schedule_zone(sched.get("tz"))
                it = croniter(sched["expr"], ms_to_dt(first).astimezone(zone))
                while len(slots) < limit:
                    t = int(it.get_next(datetime).timestamp() * 1000)
                    if t > until_ms:
                        break
                    slots.append(t)
            except (ValueError, KeyError, TypeError):
                pass  # an expression croniter does not know: only the stored slot is judged
        if len(slots) >= limit:
            slots = slots[:1] + slots[-(MAX_MISSED_PER_JOB + 1):]
        return slots

    def _missed_signal(self, job: Job, slot: int, grace_ms: int, last_run: float | None) -> Signal:
        last = rfc3339(ms_to_dt(last_run)) if last_run is not None else "never"
        sig = self._plain(
            ms_to_dt(slot + grace_ms), "ERROR",
            f"openclaw cron job {job.name!r} did not run at its scheduled time {rfc3339(ms_to_dt(slot))} "
            f"({_describe(job.schedule)}, {grace_ms / 1000:g}s grace; last run {last})",
            service=job.name, job_id=job.id, missed=True, scheduled_at=rfc3339(ms_to_dt(slot)),
            schedule=_describe(job.schedule), last_run_at=None if last_run is None else rfc3339(ms_to_dt(last_run)))
        sig.id = _sid("openclaw-missed-", job.id, slot)
        return sig

    # ------------------------------------------------------------------ failure streaks

    def _consecutive(self, snap: CronSnapshot, seen: dict[str, int], now: datetime, initialized: bool) -> list[Signal]:
        out = []
        for job in snap.jobs.values():
            n = _num(job.state.get("consecutiveErrors"))
            if n is None:
                continue
            n_int = int(n)
            prev = seen.get(job.id)
            seen[job.id] = n_int
            if not initialized or prev is None or n_int <= prev or n_int < self.opts.consecutive_errors_warn:
                continue
            last_error = _text(job.state.get("lastError")).splitlines()
            sig = self._plain(now, "WARNING",
                              f"openclaw cron job {job.name!r} has failed {n_int} runs in a row"
                              + (f" (last error: {last_error[0]})" if last_error else ""),
                              value=float(n_int), service=job.name, job_id=job.id, consecutive_errors=n_int,
                              metric="consecutive_errors")
            sig.id = _sid("openclaw-streak-", job.id, n_int, job.state.get("lastRunAtMs"))
            out.append(sig)
        return out

    # ------------------------------------------------------------------ the 2026.6 migration

    def _imports(self, snap: CronSnapshot, reported: list[str], now: datetime) -> list[Signal]:
        out = []
        known = set(reported)
        for m in snap.migrations:
            mid = _sid("openclaw-import-", m.source_path, m.target_table, m.imported_at)
            if mid in known:
                continue
            known.add(mid)
            reported.append(mid)
            count = f"{m.records} records" if m.records is not None else "records not counted"
            sig = self._plain(ms_to_dt(m.imported_at) if _num(m.imported_at) else now, "INFO",
                              f"openclaw migration: imported {self._rel(Path(m.source_path))} into {m.target_table}: "
                              f"{count}, status {m.status or 'unknown'}",
                              source_path=m.source_path, target_table=m.target_table, records=m.records,
                              migration_status=m.status)
            sig.id = mid
            out.append(sig)
        return out

    def _migration_check(self, snap: CronSnapshot, reported: str | None, now: datetime) -> tuple[list[Signal], str | None]:
        cron_dir = self.inst.cron_store.parent
        in_sqlite = set(snap.jobs)
        worst: tuple[Path, dict[str, Job], list[str]] | None = None
        for path in legacy_job_files(cron_dir):
            try:
                legacy = read_jobs_file(path)
            except (OSError, ValueError) as exc:
                self.warn(f"{path}: {exc}")
                continue
            missing = sorted(set(legacy) - in_sqlite)
            if missing and (worst is None or len(missing) > len(worst[2])):
                worst = (path, legacy, missing)
        db = self._rel(self.inst.sqlite_path)
        if worst is None:
            if reported:
                return [self._plain(now, "INFO", f"openclaw cron store: {db} holds every job of the leftover "
                                                 f"legacy cron files ({len(in_sqlite)} jobs)",
                                    sqlite_jobs=len(in_sqlite))], None
            return [], None
        path, legacy, missing = worst
        key = f"{path.name}|{','.join(missing)}"
        if key == reported:
            return [], reported
        names = ", ".join(repr(legacy[j].name) for j in missing[:20]) + (" ..." if len(missing) > 20 else "")
        quarantined = len(set(missing) & quarantined_ids(cron_dir))
        note = f" ({quarantined} of them in {self._rel(cron_dir / 'jobs-quarantine.json')})" if quarantined else ""
        sig = self._plain(now, "ERROR",
                          f"openclaw cron store: {db} holds {len(in_sqlite)} jobs but {self._rel(path)} lists "
                          f"{len(legacy)}; not in SQLite: {names}{note}",
                          legacy_file=str(path), sqlite_jobs=len(in_sqlite), legacy_jobs=len(legacy),
                          missing=missing, missing_names=[legacy[j].name for j in missing])
        sig.id = _sid("openclaw-migration-", key)
        return [sig], key

    # ------------------------------------------------------------------ helpers

    def _plain(self, ts: datetime, level: str, message: str, value: float | None = None,
               service: str | None = None, **attrs: Any) -> Signal:
        attrs["openclaw"] = True
        return Signal(ts=ts, source="cron", service=service or self.service, host=self.ctx.host, level=level,
                      message=message, value=value, attrs={k: v for k, v in attrs.items() if v is not None})

    def _rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.inst.state_dir))
        except ValueError:
            return str(path)


def _is_new(run: RunEntry, cur: dict[str, Any]) -> bool:
    if run.seq is not None and cur.get("seq") is not None:
        return run.seq > cur["seq"]
    ts = cur.get("ts") or 0
    return run.ts > ts or (run.ts == ts and run.key not in cur.get("seen", []))


def _advance(cur: dict[str, Any], run: RunEntry) -> None:
    if run.seq is not None:
        cur["seq"] = max(run.seq, cur.get("seq") or 0)
    ts = cur.get("ts") or 0
    if run.ts > ts:
        cur["ts"], cur["seen"] = run.ts, [run.key]
    elif run.ts == ts and run.key not in cur.get("seen", []):
        cur.setdefault("seen", []).append(run.key)
    run_at = _num(run.entry.get("runAtMs"))
    if run_at is not None and (cur.get("run_at") is None or run_at > cur["run_at"]):
        cur["run_at"] = run_at


def _describe(schedule: dict[str, Any]) -> str:
    kind = schedule.get("kind")
    if kind == "cron" and schedule.get("expr"):
        return f"schedule '{schedule['expr']}'" + (f" {schedule['tz']}" if schedule.get("tz") else "")
    if kind == "every" and _num(schedule.get("everyMs")):
        return f"every {float(schedule['everyMs']) / 1000:g}s"
    if kind == "at" and schedule.get("at"):
        return f"at {schedule['at']}"
    return "schedule unknown"

