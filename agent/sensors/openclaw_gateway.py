"""OpenClaw's gateway log (JSON lines) and the heartbeat activity it shows.

The gateway writes one tslog record per line (src/logging/logger.ts, src/logging/subsystem.ts):

    {"0": "{\"subsystem\":\"gateway/heartbeat\"}", "1": {"reason": "quiet-hours"}, "2": "heartbeat skipped",
     "_meta": {"name": "{\"subsystem\":\"gateway/heartbeat\"}", "logLevelName": "INFO", "date": "...", ...},
     "time": "2026-06-01T03:12:09.123Z"}

The message parts sit under "0", "1", ...; a sub-logger's name (a JSON string of its bindings) is repeated as
the first part. `GatewayLogSensor` follows the files with the log sensor's machinery (offsets and file
identity in sensor_state, rotation by date and by size: `openclaw-YYYY-MM-DD.log` renamed to
`...YYYY-MM-DD.1.log`), and turns each record into a `log` signal whose level is `_meta.logLevelName` and whose
`attrs.subsystem` comes from `_meta.name`, levelled further by rules/openclaw.yaml. Heartbeats are not
persisted by OpenClaw: the last heartbeat record seen is kept in sensor_state, and `OpenClawHeartbeatSensor`
reports a gap (ERROR, a check) when none came for the heartbeat interval plus grace.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.clock import Clock
from agent.models import Signal, parse_ts, rfc3339
from agent.sensors.base import Sensor, SensorContext
from agent.sensors.config import LogSensorConfig
from agent.sensors.logparse import LEVEL_RANK, Entry
from agent.sensors.logs import LogSensor
from agent.sensors.openclaw_files import OpenClawInstall
from agent.sensors.openclaw_rules import OpenClawRules
from agent.store import Store
from agent.store.state import get_state, set_state

_TSLOG_LEVELS = {"SILLY": "DEBUG", "TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING",
                 "WARNING": "WARNING", "ERROR": "ERROR", "FATAL": "CRITICAL", "CRITICAL": "CRITICAL"}
_MAX_MESSAGE = 64 * 1024
HEARTBEAT_KEY = "heartbeat_last"


@dataclass(frozen=True)
class GatewayRecord:
    time: datetime | None
    level: str
    subsystem: str | None
    message: str
    logger: str | None  # _meta.name as written


def _subsystem(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    if name.startswith("{"):
        try:
            bindings = json.loads(name)
        except ValueError:
            return name
        if isinstance(bindings, dict):
            for key in ("subsystem", "module", "name", "component"):
                if isinstance(bindings.get(key), str):
                    return bindings[key]
            strings = [v for v in bindings.values() if isinstance(v, str)]
            return strings[0] if strings else None
    return name


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() for c in value) else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def parse_gateway_line(line: str) -> GatewayRecord | None:
    """A gateway log line as a record, or None when it is not a tslog JSON record."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    meta = obj.get("_meta") if isinstance(obj.get("_meta"), dict) else {}
    numbered = sorted((int(k), v) for k, v in obj.items() if isinstance(k, str) and k.isdigit())
    if not numbered and not meta:
        return None
    logger = meta.get("name") if isinstance(meta.get("name"), str) else None
    parts = [v for _, v in numbered]
    if parts and logger and parts[0] == logger:
        parts = parts[1:]  # the sub-logger's prefix repeats its name
    words = [p for p in parts if isinstance(p, str)]
    extras: list[str] = []
    for p in parts:
        if isinstance(p, dict):
            extras += [f"{k}={_render(v)}" for k, v in p.items()]
        elif not isinstance(p, str):
            extras.append(_render(p))
    message = " ".join(w for w in words if w) + ((" " + " ".join(extras)) if extras else "")
    message = message.strip() or text
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + f" ... ({len(message) - _MAX_MESSAGE} more characters)"
    level = _TSLOG_LEVELS.get(str(meta.get("logLevelName") or "").upper(), "INFO")
    when = None
    for raw in (obj.get("time"), meta.get("date")):
        if isinstance(raw, str) and raw:
            try:
                when = parse_ts(raw)
                break
            except (ValueError, TypeError):
                continue
    return GatewayRecord(time=when, level=level, subsystem=_subsystem(logger), message=message, logger=logger)


class GatewayLogSensor(LogSensor):
    """The log sensor with OpenClaw's record format: same files, offsets and rotation handling."""

    def __init__(self, conf: LogSensorConfig, ctx: SensorContext, inst: OpenClawInstall, rules: OpenClawRules):
        super().__init__(conf, ctx)
        self.inst = inst
        self.rules = rules
        self._beat: tuple[datetime, str] | None = None

    def target(self) -> str:
        return f"OpenClaw gateway log {', '.join(self.conf.paths)}"

    def poll(self, store: Store, clock: Clock) -> list[Signal]:
        self._beat = None
        out = super().poll(store, clock)
        if self._beat is not None:
            when, message = self._beat
            prev = get_state(store, self.id, HEARTBEAT_KEY)
            if prev is None or parse_ts(prev["at"]) <= when:
                set_state(store, self.id, HEARTBEAT_KEY, {"at": rfc3339(when), "message": message[:300]},
                          at=clock.now())
        return out

    def _signal(self, path: str, st: dict[str, Any], entry: Entry, now: datetime) -> Signal | None:
        first = entry.lines[0]
        rec = parse_gateway_line(first)
        if rec is None:
            return super()._signal(path, st, entry, now)
        ts = rec.time or now
        if self.rules.heartbeat.matches(rec.message, rec.subsystem):
            if self._beat is None or self._beat[0] <= ts:
                self._beat = (ts, rec.message)
        level = rec.level
        attrs: dict[str, Any] = {"path": st.get("path") or path, "offset": entry.offset, "openclaw": True}
        if rec.subsystem:
            attrs["subsystem"] = rec.subsystem
        sig = self.rules.classify("log", rec.message, rec.subsystem)
        if sig is not None:
            attrs["signature"] = sig.id
            level = sig.level or level
        if LEVEL_RANK[level] < self.min_rank:
            return None
        if path != attrs["path"]:
            attrs["file"] = path
        sid = "log-" + hashlib.sha1(f"{self.id}|{st['fid']}|{st['gen']}|{entry.offset}".encode()).hexdigest()[:20]
        return Signal(id=sid, ts=ts, source="log", service=self.service, host=self.ctx.host, level=level,
                      message=rec.message, attrs=attrs)


class OpenClawHeartbeatSensor(Sensor):
    """A gap in the gateway's heartbeat activity: ERROR once none was seen for interval + grace (a check)."""

    kind = "heartbeat"

    def __init__(self, conf: Any, ctx: SensorContext, inst: OpenClawInstall, log_sensor_id: str,
                 every_s: float | None, grace_s: float):
        super().__init__(conf, ctx)
        self.inst = inst
        self.log_sensor_id = log_sensor_id
        self.every_s = every_s  # None: from openclaw.json every round
        self.grace_s = grace_s

    def target(self) -> str:
        every = self.every_s or self.inst.heartbeat_every_s()
        return f"OpenClaw heartbeat activity in the gateway log, every {every:g}s" if every else \
            "OpenClaw heartbeat (disabled in openclaw.json)"

    def poll(self, store: Store, clock: Clock) -> list[Signal]:
        now = clock.now()
        every = self.every_s if self.every_s is not None else self.inst.heartbeat_every_s()
        if not every:
            return []  # heartbeats are switched off: silence is expected
        limit = every + self.grace_s
        since = get_state(store, self.id, "watching_since")
        if since is None:
            since = rfc3339(now)
            set_state(store, self.id, "watching_since", since, at=now)
        seen = get_state(store, self.log_sensor_id, HEARTBEAT_KEY)
        check = self.name
        expect = f"expected every {every:g}s + {self.grace_s:g}s grace"
        if seen is None:
            gap = max(0.0, (now - parse_ts(since)).total_seconds())
            if gap <= limit:
                return [self.signal(now, "INFO", f"openclaw heartbeat: waiting for the first heartbeat in the "
                                                 f"gateway log (watching for {gap:.0f}s, {expect})",
                                    round(gap, 3), check=check)]
            return [self.signal(now, "ERROR", f"openclaw heartbeat missed: no heartbeat activity in the gateway "
                                              f"log in {gap:.0f}s of watching ({expect})",
                                round(gap, 3), check=check, gap_s=round(gap, 3), expected_s=limit)]
        last = parse_ts(seen["at"])
        gap = max(0.0, (now - last).total_seconds())
        if gap > limit:
            return [self.signal(now, "ERROR", f"openclaw heartbeat missed: no heartbeat activity for {gap:.0f}s "
                                              f"({expect}; last heartbeat record at {rfc3339(last)})",
                                round(gap, 3), check=check, gap_s=round(gap, 3), expected_s=limit,
                                last_beat=rfc3339(last), last_record=seen.get("message"))]
        return [self.signal(now, "INFO", f"openclaw heartbeat on time: last activity {gap:.0f}s ago",
                            round(gap, 3), check=check, last_beat=rfc3339(last))]
