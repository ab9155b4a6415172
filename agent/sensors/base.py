"""What every sensor is: built from its config section, polled one round at a time.

A sensor's `poll(store, clock)` returns the signals of one round and reads and
writes its own cursor/baseline state through agent/store/state.py (the runner
commits the signals and the state together, so a restart neither loses nor
repeats). Sensors whose measurement is slow I/O (HTTP, sockets, commands) split
it into `measure(clock)`, which never touches the store and may run in a worker
thread, and `record(store, measurement, clock)` (MeasuredSensor).
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from agent.clock import Clock
from agent.models import Signal
from agent.store import Store


@dataclass(frozen=True)
class SensorContext:
    """What sensors need from the config: where relative paths start, and the host name."""

    base_dir: Path
    host: str

    @classmethod
    def from_config(cls, cfg: Any, host: str | None = None) -> "SensorContext":
        return cls(base_dir=Path(cfg.base_dir), host=host or socket.gethostname())

    def path(self, value: str | os.PathLike[str]) -> Path:
        p = Path(os.path.expandvars(str(value))).expanduser()
        return p if p.is_absolute() else self.base_dir / p


class Sensor(ABC):
    kind: ClassVar[str] = ""
    # True for MeasuredSensor: measure() does slow I/O without the store and may run in a worker thread.
    concurrent: ClassVar[bool] = False

    def __init__(self, conf: Any, ctx: SensorContext):
        self.conf = conf
        self.ctx = ctx
        self.name: str = conf.name
        self.interval_s: float = float(conf.interval_s)
        self.service: str | None = conf.service
        self.last_poll: datetime | None = None
        self.warnings: list[str] = []
        # Set by poll() when it stopped early (a byte budget) and another round right away would find more.
        self.backlog = False

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    def due(self, now: datetime) -> bool:
        return self.last_poll is None or (now - self.last_poll).total_seconds() >= self.interval_s

    def target(self) -> str:
        """What the sensor watches, for listings."""
        return ""

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @abstractmethod
    def poll(self, store: Store, clock: Clock) -> list[Signal]:
        """One round: the signals seen since the last one."""

    def signal(self, clock_or_ts: Any, level: str, message: str, value: float | None = None, **attrs: Any) -> Signal:
        ts = clock_or_ts if isinstance(clock_or_ts, datetime) else clock_or_ts.now()
        return Signal(
            ts=ts,
            source=self.source,
            service=self.service,
            host=self.ctx.host,
            level=level,
            message=message,
            value=value,
            attrs={k: v for k, v in attrs.items() if v is not None},
        )

    @property
    def source(self) -> str:
        return self.kind


class MeasuredSensor(Sensor):
    """A sensor whose slow part (network, subprocess) is separate from its bookkeeping."""

    concurrent = True

    @abstractmethod
    def measure(self, clock: Clock) -> Any:
        """Take the reading; never touches the store (may run in a worker thread)."""

    @abstractmethod
    def record(self, store: Store, measurement: Any, clock: Clock) -> list[Signal]:
        """Turn a reading into signals, updating the sensor's state."""

    def poll(self, store: Store, clock: Clock) -> list[Signal]:
        return self.record(store, self.measure(clock), clock)


def describe_os_error(exc: BaseException) -> str:
    """'permission denied' rather than '[Errno 13] Permission denied: ...'."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
