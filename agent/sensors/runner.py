"""Run every configured sensor one round, isolating failures.

`sense_once(store, cfg, clock)` is what `selfheal sense` runs; the daemon keeps a
`SensorRunner` and calls `.sense(store, clock, only_due=True)` on every tick, so
each sensor runs on its own `interval_s`. A sensor that raises is rolled back
(its cursor does not move), reported as a one-line warning, and the others run
on: a broken sensor never stops the rest.
"""

from __future__ import annotations

import importlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from agent.clock import Clock
from agent.errors import SelfhealError
from agent.models import Signal, rfc3339
from agent.sensors.base import MeasuredSensor, Sensor, SensorContext, describe_os_error
from agent.sensors.config import SensorsConfig, sensors_config
from agent.store import Store

# section of `sensors:` -> (module, class); imported only when configured (CLI start-up time).
KINDS: dict[str, tuple[str, str]] = {
    "logs": ("agent.sensors.logs", "LogSensor"),
    "cron": ("agent.sensors.cron", "CronSensor"),
    "health": ("agent.sensors.health", "HealthSensor"),
    "heartbeats": ("agent.sensors.heartbeat", "HeartbeatSensor"),
    "metrics": ("agent.sensors.metrics", "MetricSensor"),
}
MAX_BACKLOG_ROUNDS = 10_000  # a log sensor catching up reads its byte budget this many times at most per round


@dataclass
class SensorReport:
    sensor: str
    kind: str
    name: str
    target: str = ""
    signals: int = 0
    stored: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    last: Signal | None = None
    warnings: list[str] = field(default_factory=list)
    failed: bool = False
    elapsed_ms: float = 0.0

    def add(self, signals: Sequence[Signal], stored: int) -> None:
        self.signals += len(signals)
        self.stored += stored
        for s in signals:
            self.levels[s.level] = self.levels.get(s.level, 0) + 1
        if signals:
            self.last = signals[-1]

    def status(self) -> dict[str, Any]:
        """What `selfheal sensors` shows later (kept in sensor_state under key 'status')."""
        last = self.last
        return {
            "signals": self.signals,
            "stored": self.stored,
            "levels": self.levels,
            "last_ts": rfc3339(last.ts) if last else None,
            "last_level": last.level if last else None,
            "last_message": last.message[:500] if last else None,
            "last_value": last.value if last else None,
            "warnings": self.warnings[:20],
            "failed": self.failed,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }

    def to_json(self) -> dict[str, Any]:
        return {"sensor": self.sensor, "kind": self.kind, "name": self.name, "target": self.target,
                "signals": self.signals, "stored": self.stored, "levels": self.levels,
                "last": self.last.model_dump(mode="json", exclude_none=True) if self.last else None,
                "warnings": self.warnings, "failed": self.failed, "elapsed_ms": round(self.elapsed_ms, 1)}


@dataclass
class SenseReport:
    at: datetime
    sensors: list[SensorReport] = field(default_factory=list)
    spooled: int = 0  # signals taken in from the spool (beats and cron runs recorded while the store was busy)
    warnings: list[str] = field(default_factory=list)  # not tied to one sensor

    @property
    def signals(self) -> int:
        return sum(r.signals for r in self.sensors)

    @property
    def stored(self) -> int:
        return sum(r.stored for r in self.sensors) + self.spooled

    def all_warnings(self) -> list[str]:
        return self.warnings + [w for r in self.sensors for w in r.warnings]

    def to_json(self) -> dict[str, Any]:
        return {"at": rfc3339(self.at), "signals": self.signals, "stored": self.stored, "spooled": self.spooled,
                "sensors": [r.to_json() for r in self.sensors], "warnings": self.all_warnings()}


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, SelfhealError):
        return str(exc)
    if isinstance(exc, OSError):
        name = getattr(exc, "filename", None)
        return f"{name}: {describe_os_error(exc)}" if name else describe_os_error(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def build_sensors(cfg: Any, sconf: SensorsConfig | None = None, warnings: list[str] | None = None) -> list[Sensor]:
    """One sensor per enabled entry of every section, in config order."""
    sconf = sconf or sensors_config(cfg)
    ctx = SensorContext.from_config(cfg, sconf.host)
    sensors: list[Sensor] = []
    for section, (module, cls_name) in KINDS.items():
        entries = [e for e in getattr(sconf, section) if e.enabled]
        if not entries:
            continue
        cls = getattr(importlib.import_module(module), cls_name)
        sensors.extend(cls(entry, ctx) for entry in entries)
    try:
        sensors.extend(_openclaw_sensors(cfg, ctx))
    except Exception as exc:  # an optional integration must not take the configured sensors down
        if warnings is not None:
            warnings.append(f"openclaw: {describe_exception(exc)}")
    return sensors


def _openclaw_sensors(cfg: Any, ctx: SensorContext) -> list[Sensor]:
    """Hook: agent.sensors.openclaw may offer `build_sensors(cfg, ctx) -> list[Sensor]`."""
    try:
        mod = importlib.import_module("agent.sensors.openclaw")
    except ImportError:
        return []
    build = getattr(mod, "build_sensors", None)
    return list(build(cfg, ctx)) if callable(build) else []


class SensorRunner:
    def __init__(self, cfg: Any, sensors: Sequence[Sensor] | None = None):
        self.cfg = cfg
        self.sconf = sensors_config(cfg)
        self.build_warnings: list[str] = []
        self.sensors: list[Sensor] = (list(sensors) if sensors is not None
                                      else build_sensors(cfg, self.sconf, self.build_warnings))

    def due(self, now: datetime) -> list[Sensor]:
        return [s for s in self.sensors if s.due(now)]

    def sense(self, store: Store, clock: Clock, *, only_due: bool = False,
              names: Sequence[str] | None = None) -> SenseReport:
        from agent.sensors import spool

        now = clock.now()
        report = SenseReport(at=now)
        report.spooled, spool_warnings = spool.ingest(store, self.cfg)
        report.warnings = self.build_warnings + spool_warnings
        chosen = [s for s in self.sensors if (not only_due or s.due(now)) and _selected(s, names)]
        measured = self._measure_concurrently([s for s in chosen if isinstance(s, MeasuredSensor)], clock)
        for sensor in chosen:
            report.sensors.append(self._run_one(store, clock, sensor, measured.get(id(sensor))))
        return report

    def _measure_concurrently(self, sensors: list[Sensor], clock: Clock) -> dict[int, Future]:
        if len(sensors) < 2:
            return {}
        pool = ThreadPoolExecutor(max_workers=min(self.sconf.max_workers, len(sensors)), thread_name_prefix="sense")
        futures = {id(s): pool.submit(s.measure, clock) for s in sensors}  # type: ignore[attr-defined]
        pool.shutdown(wait=True)
        return futures

    def _run_one(self, store: Store, clock: Clock, sensor: Sensor, measured: Future | None) -> SensorReport:
        import time

        from agent.store.signals import insert_signals
        from agent.store.state import set_state

        rep = SensorReport(sensor.id, sensor.kind, sensor.name, sensor.target())
        started = time.perf_counter()
        rounds = 0
        try:
            while True:
                rounds += 1
                sensor.warnings = []
                with store.transaction():
                    if measured is not None:
                        signals = sensor.record(store, measured.result(), clock)  # type: ignore[attr-defined]
                        measured = None
                    else:
                        signals = sensor.poll(store, clock)
                    stored = insert_signals(store, signals)
                rep.add(signals, stored)
                rep.warnings.extend(f"{sensor.id}: {w}" for w in sensor.warnings if f"{sensor.id}: {w}" not in rep.warnings)
                if not sensor.backlog or rounds >= MAX_BACKLOG_ROUNDS:
                    break
        except Exception as exc:  # one sensor's failure must not stop the others
            rep.failed = True
            rep.warnings.append(f"{sensor.id}: {describe_exception(exc)}")
        rep.elapsed_ms = (time.perf_counter() - started) * 1000
        sensor.last_poll = clock.now()
        try:
            status = dict(rep.status(), last_run=rfc3339(clock.now()))
            set_state(store, sensor.id, "status", status, at=clock.now())
        except Exception as exc:
            rep.warnings.append(f"{sensor.id}: could not record status: {describe_exception(exc)}")
        return rep


def _selected(sensor: Sensor, names: Sequence[str] | None) -> bool:
    return not names or sensor.name in names or sensor.id in names or sensor.kind in names


def sense_once(store: Store, cfg: Any, clock: Clock, sensors: Sequence[Sensor] | None = None,
               only_due: bool = False) -> SenseReport:
    """Run every configured sensor one round (or only the due ones), store what they saw, report per sensor."""
    return SensorRunner(cfg, sensors).sense(store, clock, only_due=only_due)
