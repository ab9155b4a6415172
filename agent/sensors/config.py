"""The `sensors:` section of selfheal.yaml, validated.

Every key has a default documented here (and in the README's configuration
reference); relative paths resolve against the config file's directory, and
commands run with that directory as their working directory, so a config can
travel with the things it points at.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.errors import InputError

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
HostMetric = Literal["cpu_pct", "memory_pct", "swap_pct", "disk_pct", "inodes_pct", "load1"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SensorBase(_Section):
    name: str = Field(min_length=1)
    service: str | None = None
    interval_s: float = Field(default=30.0, gt=0)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", v):
            raise ValueError(f"{v!r}: use letters, digits and _ . @ - only")
        return v


def _regex(v: str | None) -> str | None:
    if v is not None:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {v!r}: {exc}") from None
    return v


class LogSensorConfig(SensorBase):
    """Follow files and globs, line by line, across rotation and truncation."""

    paths: list[str] = Field(min_length=1)
    exclude: list[str] = Field(default_factory=lambda: ["*.gz", "*.bz2", "*.xz", "*.zst", "*.zip"])
    interval_s: float = Field(default=10.0, gt=0)
    # Where to start in a file that already exists when the sensor first runs; files that
    # appear later (after rotation, or new matches of a glob) are always read from the start.
    start_at: Literal["beginning", "end"] = "end"
    multiline: bool = True
    # A trailing stack trace is held back until the file has been quiet this long (or one
    # more poll saw no growth), so a trace split across two writes stays one signal.
    multiline_flush_s: float = Field(default=1.0, ge=0)
    max_entry_lines: int = Field(default=500, ge=1)
    max_line_bytes: int = Field(default=64 * 1024, ge=256)
    max_bytes_per_poll: int = Field(default=4 * 1024 * 1024, ge=4096)  # per round; a backlog takes several
    default_level: Level = "INFO"
    infer_level: bool = True
    min_level: Level = "DEBUG"
    timezone: str | None = None  # for timestamps without an offset; default: the machine's local zone
    service_pattern: str | None = None  # regex with a named group 'service', searched in the first line
    encoding: str = "utf-8"
    retired_keep_s: float = Field(default=300.0, ge=0)  # keep reading a rotated-away file this long

    @model_validator(mode="before")
    @classmethod
    def _path_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "path" in data:
            data = dict(data)
            single = data.pop("path")
            data.setdefault("paths", [])
            data["paths"] = ([single] if isinstance(single, str) else list(single)) + list(data["paths"])
        if isinstance(data, dict) and isinstance(data.get("paths"), str):
            data = dict(data, paths=[data["paths"]])
        return data

    @field_validator("service_pattern")
    @classmethod
    def _sp(cls, v: str | None) -> str | None:
        return _service_pattern(v)


def _service_pattern(v: str | None) -> str | None:
    _regex(v)
    if v is not None and "service" not in re.compile(v).groupindex:
        raise ValueError("service_pattern needs a named group (?P<service>...)")
    return v


class CronJobConfig(SensorBase):
    """A job run through `selfheal cron --name NAME -- CMD`; with a schedule, missed runs are signals."""

    schedule: str | None = None  # a cron expression (5 fields, or @daily style)
    grace_s: float = Field(default=300.0, ge=0)  # how late a run may start before it counts as missed
    timeout_s: float | None = Field(default=None, gt=0)  # default for `selfheal cron --timeout`
    kill_grace_s: float = Field(default=5.0, ge=0)  # SIGTERM, then SIGKILL after this
    timezone: str | None = None  # the schedule's zone; default: the machine's local zone
    tail_lines: int = Field(default=10, ge=1)
    interval_s: float = Field(default=60.0, gt=0)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        if v is not None:
            from croniter import croniter

            if not croniter.is_valid(v):
                raise ValueError(f"not a valid cron schedule: {v!r}")
        return v


class HealthConfig(SensorBase):
    """One check: exactly one of url (HTTP), tcp ("host:port") or command (argv)."""

    url: str | None = None
    tcp: str | None = None
    command: list[str] | None = None
    timeout_s: float = Field(default=5.0, gt=0)
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: list[int | str] | None = None  # default: any 2xx or 3xx; entries like 200 or "2xx"
    body_match: str | None = None  # regex searched in the response body
    max_latency_s: float | None = Field(default=None, gt=0)  # slower is a failure
    verify_tls: bool = True
    follow_redirects: bool = False
    use_env_proxy: bool = False
    expect_exit: int = 0

    @field_validator("body_match")
    @classmethod
    def _bm(cls, v: str | None) -> str | None:
        return _regex(v)

    @field_validator("expect_status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> Any:
        if v is None:
            return v
        items = v if isinstance(v, list) else [v]
        for item in items:
            if isinstance(item, int) and 100 <= item <= 599:
                continue
            if isinstance(item, str) and re.fullmatch(r"[1-5](xx|\d\d)", item.strip().lower()):
                continue
            raise ValueError(f"expected an HTTP status like 200 or '2xx', got {item!r}")
        return items

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"https?://[^/\s]+", v):
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v

    @field_validator("tcp")
    @classmethod
    def _tcp(cls, v: str | None) -> str | None:
        if v is not None:
            host, _, port = v.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected 'host:port', got {v!r}")
        return v

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("command must name a program (an argv list)")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> "HealthConfig":
        given = [k for k in ("url", "tcp", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a health check needs exactly one of url, tcp or command")
        return self

    @property
    def kind(self) -> str:
        return "http" if self.url else "tcp" if self.tcp else "command"

    def status_ok(self, status: int) -> bool:
        if not self.expect_status:
            return 200 <= status < 400
        for item in self.expect_status:
            if isinstance(item, int) and item == status:
                return True
            if isinstance(item, str):
                text = item.strip().lower()
                if text.endswith("xx") and str(status)[0] == text[0]:
                    return True
                if text.isdigit() and int(text) == status:
                    return True
        return False

    def expected_text(self) -> str:
        return ", ".join(str(s) for s in self.expect_status) if self.expect_status else "2xx/3xx"


class HeartbeatConfig(SensorBase):
    """Beats arrive through `selfheal beat NAME`, or as the modification time of `file`."""

    every_s: float = Field(gt=0)  # the expected time between beats
    grace_s: float = Field(default=30.0, ge=0)
    file: str | None = None


class PrometheusSource(_Section):
    url: str
    metric: str  # sample name as exposed (counters include _total)
    labels: dict[str, str] = Field(default_factory=dict)  # every label given must match exactly
    aggregate: Literal["sum", "max", "min", "avg"] = "sum"  # when several series match


class MetricConfig(SensorBase):
    """A number from a command, a Prometheus endpoint or the host; compared with its own baseline."""

    command: list[str] | None = None
    prometheus: PrometheusSource | None = None
    host: HostMetric | None = None
    path: str = "/"  # for host disk_pct / inodes_pct
    timeout_s: float = Field(default=5.0, gt=0)
    interval_s: float = Field(default=60.0, gt=0)
    band_k: float = Field(default=4.0, gt=0)  # deviation: |value - median| > band_k * scaled MAD
    min_band: float | None = Field(default=None, ge=0)  # floor of the band's half-width; default 5% of |median|
    min_samples: int = Field(default=10, ge=1)  # warm-up: no band deviation before this many samples
    window: int = Field(default=60, ge=3)  # samples the median/MAD are taken over
    alpha: float = Field(default=0.2, gt=0, le=1)  # EWMA smoothing of the reported level
    direction: Literal["both", "up", "down"] = "both"
    max_value: float | None = Field(default=None, alias="max")  # static threshold: above is a breach
    min_value: float | None = Field(default=None, alias="min")  # static threshold: below is a breach

    @model_validator(mode="after")
    def _one_source(self) -> "MetricConfig":
        given = [k for k in ("command", "prometheus", "host") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a metric needs exactly one of command, prometheus or host")
        if self.command is not None and not self.command:
            raise ValueError("command must name a program (an argv list)")
        return self

    @property
    def kind(self) -> str:
        return "command" if self.command is not None else "prometheus" if self.prometheus else "host"


class SensorsConfig(_Section):
    host: str | None = None  # the `host` of every signal; default: this machine's hostname
    max_workers: int = Field(default=8, ge=1)  # health checks and metrics measured in parallel
    logs: list[LogSensorConfig] = Field(default_factory=list)
    cron: list[CronJobConfig] = Field(default_factory=list)
    health: list[HealthConfig] = Field(default_factory=list)
    heartbeats: list[HeartbeatConfig] = Field(default_factory=list)
    metrics: list[MetricConfig] = Field(default_factory=list)
    # Hook for agent.sensors.openclaw (kept raw; that module validates it).
    openclaw: Any = None

    @model_validator(mode="after")
    def _unique(self) -> "SensorsConfig":
        for section in ("logs", "cron", "health", "heartbeats", "metrics"):
            seen: set[str] = set()
            for entry in getattr(self, section):
                if entry.name in seen:
                    raise ValueError(f"two {section} entries are named {entry.name!r}")
                seen.add(entry.name)
        return self


def parse_sensors(raw: dict[str, Any] | None, where: str = "selfheal.yaml") -> SensorsConfig:
    """Validate the raw `sensors:` mapping; a mistake is one line naming the key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: sensors: expected a mapping of sensor kinds")
    try:
        return SensorsConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        parts: list[str] = ["sensors"]
        for p in err.get("loc", ()):
            if isinstance(p, int):
                parts[-1] += f"[{p}]"
            elif not str(p).startswith(("function-", "function_")):
                parts.append(str(p))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "required key is missing"
        elif err.get("type") == "extra_forbidden":
            msg = "unknown key"
        raise InputError(f"{where}: {'.'.join(parts)}: {msg}") from None


def sensors_config(cfg: Any) -> SensorsConfig:
    where = str(cfg.source) if getattr(cfg, "source", None) else "config"
    return parse_sensors(cfg.sensors, where)


def find_cron_job(cfg: Any, name: str) -> CronJobConfig | None:
    for job in sensors_config(cfg).cron:
        if job.name == name:
            return job
    return None
