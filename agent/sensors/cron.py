"""Cron jobs: a run's outcome as one signal, and scheduled runs that never happened.

`selfheal cron --name NAME -- CMD ARGS...` runs the job (no shell) through
`run_job`, which records exit code, duration and the tails of stdout/stderr
as one `cron` signal (ERROR on a non-zero exit, a kill by signal, or a
timeout) and hands back the job's own exit code.

`CronSensor` watches the jobs that have a `schedule`: every slot whose grace
period has passed without a run starting is one missed-run ERROR signal (its
id is derived from the slot, so each missed slot is reported once).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Sequence

from agent.clock import Clock
from agent.models import Signal, parse_ts, rfc3339
from agent.sensors.base import Sensor, SensorContext
from agent.sensors.config import CronJobConfig
from agent.sensors.logparse import local_zone_name, resolve_tz
from agent.sensors.proc import ProcResult
from agent.store import Store
from agent.store.sensors import cron_run_starts
from agent.store.state import get_state, set_state

EARLY_TOLERANCE_S = 60.0  # a run that starts a little before its slot (clock skew) still counts for it
MAX_LOOKBACK = timedelta(days=31)  # after a long outage, judge at most this far back
MAX_MISSED_SIGNALS = 100  # per round; older missed slots beyond it are summed up in one signal


def schedule_zone(name: str | None) -> tzinfo:
    """The zone cron evaluates schedules in: configured, else the machine's own."""
    tz = resolve_tz(name or local_zone_name())
    return tz if tz is not None else datetime.now().astimezone().tzinfo or timezone.utc


def job_signal(name: str, result: ProcResult, started: datetime, ended: datetime, *,
               service: str | None = None, host: str | None = None, tail_lines: int = 10) -> Signal:
    """One signal for one run: INFO when it succeeded, ERROR otherwise; message = summary + output tail."""
    duration = result.duration_s
    if result.ok:
        head = f"cron job {name!r} succeeded in {duration:.2f}s"
    else:
        head = f"cron job {name!r} failed: {result.describe()} (ran {duration:.2f}s)"
    tail = result.stderr_tail if any(x.strip() for x in result.stderr_tail) else result.stdout_tail
    tail = [line for line in tail if line.strip()][-tail_lines:]
    message = "\n".join([head, *tail])
    attrs: dict[str, Any] = {
        "check": name,
        "exit_code": result.exit_code,
        "duration_s": round(duration, 3),
        "started_at": rfc3339(started),
        "command": result.argv,
    }
    if result.timed_out:
        attrs["timed_out"] = True
        attrs["timeout_s"] = result.timeout_s
    if result.signal:
        attrs["signal"] = result.signal
    if result.error:
        attrs["error"] = result.error
    if result.stdout_tail:
        attrs["stdout_tail"] = result.stdout_tail[-tail_lines:]
    if result.stderr_tail:
        attrs["stderr_tail"] = result.stderr_tail[-tail_lines:]
    return Signal(ts=ended, source="cron", service=service or name, host=host,
                  level="INFO" if result.ok else "ERROR", message=message, value=round(duration, 3), attrs=attrs)


def run_job(name: str, argv: Sequence[str], *, job: CronJobConfig | None, clock: Clock, host: str | None,
            timeout_s: float | None = None, service: str | None = None, tee: bool = True) -> tuple[ProcResult, Signal]:
    from agent.sensors import proc

    timeout = timeout_s if timeout_s is not None else (job.timeout_s if job else None)
    started = clock.now()
    result = proc.run(argv, timeout_s=timeout, tee=tee, reap_group=False,
                      kill_grace_s=job.kill_grace_s if job else 5.0, tail_lines=max(job.tail_lines if job else 10, 20))
    ended = clock.now()
    if ended <= started:
        ended = started + timedelta(seconds=result.duration_s)
    sig = job_signal(name, result, started, ended, service=service or (job.service if job else None),
                     host=host, tail_lines=job.tail_lines if job else 10)
    return result, sig


def last_run_state(sig: Signal) -> dict[str, Any]:
    return {"started_at": sig.attrs.get("started_at"), "ended_at": rfc3339(sig.ts),
            "exit_code": sig.attrs.get("exit_code"), "level": sig.level, "signal_id": sig.id}


class CronSensor(Sensor):
    kind = "cron"

    def __init__(self, conf: CronJobConfig, ctx: SensorContext):
        super().__init__(conf, ctx)
        self.conf: CronJobConfig = conf
        if self.service is None:
            self.service = conf.name
        self.zone = schedule_zone(conf.timezone) if conf.schedule else timezone.utc

    def target(self) -> str:
        return f"schedule '{self.conf.schedule}'" if self.conf.schedule else "runs via selfheal cron"

    def poll(self, store: Store, clock: Clock) -> list[Signal]:
        if not self.conf.schedule:
            return []
        now = clock.now()
        grace = timedelta(seconds=self.conf.grace_s)
        raw = get_state(store, self.id, "checked_until")
        if raw is None:
            # Start judging from now: slots before selfheal watched the job are not its business.
            set_state(store, self.id, "checked_until", rfc3339(now - grace), at=now)
            return []
        since = max(parse_ts(raw), now - grace - MAX_LOOKBACK)
        slots = self.slots_between(since, now - grace)
        if not slots:
            return []
        runs = cron_run_starts(store, self.name, slots[0] - timedelta(seconds=EARLY_TOLERANCE_S))
        missed = [t for t in slots if not _ran(t, runs, grace)]
        out = [self._missed(t, grace) for t in missed[-MAX_MISSED_SIGNALS:]]
        if len(missed) > MAX_MISSED_SIGNALS:
            older = missed[:-MAX_MISSED_SIGNALS]
            out.insert(0, self.signal(
                older[-1] + grace, "ERROR",
                f"cron job {self.name!r} also missed {len(older)} earlier scheduled runs "
                f"({rfc3339(older[0])} .. {rfc3339(older[-1])}, schedule '{self.conf.schedule}')",
                check=self.name, missed=True, missed_count=len(older), schedule=self.conf.schedule))
        set_state(store, self.id, "checked_until", rfc3339(slots[-1]), at=now)
        return out

    def slots_between(self, after: datetime, until: datetime) -> list[datetime]:
        """Scheduled times t with after < t <= until, in UTC."""
        from croniter import croniter

        it = croniter(self.conf.schedule, after.astimezone(self.zone))
        out: list[datetime] = []
        while True:
            t = it.get_next(datetime).astimezone(timezone.utc)
            if t > until:
                return out
            out.append(t)

    def _missed(self, slot: datetime, grace: timedelta) -> Signal:
        sig = self.signal(
            slot + grace, "ERROR",
            f"cron job {self.name!r} did not run at its scheduled time {rfc3339(slot)} "
            f"(schedule '{self.conf.schedule}', {self.conf.grace_s:g}s grace)",
            check=self.name, missed=True, scheduled_at=rfc3339(slot), schedule=self.conf.schedule,
        )
        sig.id = "cron-missed-" + hashlib.sha1(f"{self.name}|{rfc3339(slot)}".encode()).hexdigest()[:16]
        return sig


def _ran(slot: datetime, runs: list[datetime], grace: timedelta) -> bool:
    lo = slot - timedelta(seconds=EARLY_TOLERANCE_S)
    hi = slot + grace
    return any(lo <= r <= hi for r in runs)
