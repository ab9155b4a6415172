"""Heartbeats: jobs and services prove they are alive; silence longer than expected is a failure.

A beat arrives through `selfheal beat NAME` (a `heartbeat` INFO signal with
`attrs.beat = true`, plus the last-beat time in sensor_state) or, for a
heartbeat with a `file`, as that file's modification time. Every round the
sensor emits one signal: ERROR when the gap since the last beat is longer than
`every_s + grace_s` (`value` = the gap in seconds), INFO when on time.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from agent.clock import Clock
from agent.models import Signal, parse_ts, rfc3339
from agent.sensors.base import Sensor, SensorContext, describe_os_error
from agent.sensors.config import HeartbeatConfig
from agent.store import Store
from agent.store.sensors import last_beat
from agent.store.state import get_state, set_state


def sensor_id(name: str) -> str:
    return f"heartbeat:{name}"


def beat_signal(name: str, at: datetime, *, service: str | None = None, host: str | None = None,
                message: str | None = None) -> Signal:
    text = f"heartbeat {name!r} beat" + (f": {message}" if message else "")
    return Signal(ts=at, source="heartbeat", service=service or name, host=host, level="INFO", message=text,
                  attrs={"check": name, "beat": True})


def beat_state(sig: Signal) -> tuple[str, str, Any]:
    """The sensor_state row that goes with a beat signal."""
    return (sensor_id(sig.attrs["check"]), "last_beat", rfc3339(sig.ts))


class HeartbeatSensor(Sensor):
    kind = "heartbeat"

    def __init__(self, conf: HeartbeatConfig, ctx: SensorContext):
        super().__init__(conf, ctx)
        self.conf: HeartbeatConfig = conf
        if self.service is None:
            self.service = conf.name
        self.file = ctx.path(conf.file) if conf.file else None

    def target(self) -> str:
        how = f"mtime of {self.conf.file}" if self.conf.file else f"selfheal beat {self.name}"
        return f"{how}, every {self.conf.every_s:g}s"

    def _last_beat(self, store: Store) -> tuple[datetime | None, str | None]:
        """(time of the last beat, why it is unknown)."""
        if self.file is not None:
            try:
                mtime = os.stat(self.file).st_mtime
            except OSError as exc:
                return None, f"heartbeat file {self.file}: {describe_os_error(exc)}"
            return datetime.fromtimestamp(mtime, timezone.utc), None
        recorded = get_state(store, self.id, "last_beat")
        candidates = [parse_ts(recorded)] if recorded else []
        stored = last_beat(store, self.name)
        if stored is not None:
            candidates.append(stored)
        return (max(candidates), None) if candidates else (None, None)

    def poll(self, store: Store, clock: Clock) -> list[Signal]:
        now = clock.now()
        limit = self.conf.every_s + self.conf.grace_s
        beat, problem = self._last_beat(store)
        since = get_state(store, self.id, "watching_since")
        if since is None:
            since = rfc3339(now)
            set_state(store, self.id, "watching_since", since, at=now)
        if beat is None:
            # Never beaten: the gap runs from when selfheal started watching.
            gap = max(0.0, (now - parse_ts(since)).total_seconds())
            if gap <= limit and problem is None:
                return [self.signal(now, "INFO", f"heartbeat {self.name!r}: waiting for the first beat "
                                                 f"(watching for {gap:.0f}s, expected every {self.conf.every_s:g}s)",
                                    round(gap, 3), check=self.name)]
            why = problem or f"no beat received in {gap:.0f}s of watching"
            return [self.signal(now, "ERROR", f"heartbeat {self.name!r} missed: {why} "
                                              f"(expected every {self.conf.every_s:g}s + {self.conf.grace_s:g}s grace)",
                                round(gap, 3), check=self.name, gap_s=round(gap, 3), expected_s=limit)]
        gap = max(0.0, (now - beat).total_seconds())
        if gap > limit:
            return [self.signal(now, "ERROR", f"heartbeat {self.name!r} missed: no beat for {gap:.0f}s "
                                              f"(expected every {self.conf.every_s:g}s + {self.conf.grace_s:g}s grace; "
                                              f"last beat {rfc3339(beat)})",
                                round(gap, 3), check=self.name, gap_s=round(gap, 3), expected_s=limit,
                                last_beat=rfc3339(beat))]
        return [self.signal(now, "INFO", f"heartbeat {self.name!r} on time: last beat {gap:.0f}s ago",
                            round(gap, 3), check=self.name, last_beat=rfc3339(beat))]
