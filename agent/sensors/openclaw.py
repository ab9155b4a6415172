"""OpenClaw, watched out of the box: the `openclaw:` section of selfheal.yaml and the sensors it builds.

    openclaw:
      state_dir: ~/.openclaw        # default: $OPENCLAW_STATE_DIR, else ~/.openclaw

is enough: the cron store (jobs.json + runs/*.jsonl, or state/openclaw.sqlite, detected every round), the
gateway log (`logging.file` from openclaw.json, else /tmp/openclaw/openclaw-YYYY-MM-DD.log) and the heartbeat
interval (agents.defaults.heartbeat.every) are read from the installation's own files. Nothing here needs
OpenClaw (or Node) to run: an installation whose gateway is down is exactly what the sensors must notice.

The sensor runner calls `build_sensors(cfg, ctx)`; `selfheal init` calls `detect()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import InputError
from agent.sensors.base import Sensor, SensorContext
from agent.sensors.openclaw_files import OpenClawInstall, default_state_dir, looks_installed

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CronSection(_Section):
    enabled: bool = True
    grace_s: float = Field(default=300.0, ge=0)  # how late a run may start before its slot counts as missed
    consecutive_errors_warn: int = Field(default=2, ge=1)  # a rising streak from this many is a WARNING


class HeartbeatSection(_Section):
    enabled: bool = True
    every_s: float | None = Field(default=None, gt=0)  # default: agents.defaults.heartbeat.every, else 30 min
    grace_s: float = Field(default=600.0, ge=0)


class LogsSection(_Section):
    enabled: bool = True
    min_level: Level = "INFO"  # records below are read (heartbeat activity counts) but not stored
    max_bytes_per_poll: int = Field(default=4 * 1024 * 1024, ge=4096)
    retired_keep_s: float = Field(default=300.0, ge=0)


class OpenClawConfig(_Section):
    enabled: bool = True
    state_dir: str | None = None  # default: $OPENCLAW_STATE_DIR, else ~/.openclaw
    config_file: str | None = None  # default: $OPENCLAW_CONFIG_PATH, else <state_dir>/openclaw.json
    log: str | None = None  # file or glob; default: logging.file, else /tmp/openclaw/openclaw-<date>.log
    service: str = "openclaw"  # service of the gateway's log lines and store-level signals
    interval_s: float = Field(default=30.0, gt=0)
    start_at: Literal["end", "beginning"] = "end"  # runs and log lines that exist when watching starts
    cron: CronSection = Field(default_factory=CronSection)
    heartbeat: HeartbeatSection = Field(default_factory=HeartbeatSection)
    logs: LogsSection = Field(default_factory=LogsSection)


def parse_config(raw: Any, where: str = "selfheal.yaml") -> OpenClawConfig:
    """The raw `openclaw:` mapping validated; a mistake is one line naming the key."""
    if raw is None or raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: openclaw: expected a mapping (state_dir, log, cron, heartbeat, ...)")
    try:
        return OpenClawConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in ("openclaw", *err.get("loc", ())))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        raise InputError(f"{where}: {loc}: {msg}") from None


def raw_section(cfg: Any) -> Any:
    """The `openclaw:` section: top level, or under `sensors:`."""
    raw = getattr(cfg, "openclaw", None)
    if raw is None and isinstance(getattr(cfg, "sensors", None), dict):
        raw = cfg.sensors.get("openclaw")
    return raw


def install_for(oc: OpenClawConfig, ctx: SensorContext | None = None) -> OpenClawInstall:
    resolve = ctx.path if ctx is not None else (lambda v: Path(os.path.expandvars(str(v))).expanduser())
    state = resolve(oc.state_dir) if oc.state_dir else default_state_dir()
    config_file = resolve(oc.config_file) if oc.config_file else None
    log = str(resolve(oc.log)) if oc.log else None
    return OpenClawInstall(state, config_file, log)


@dataclass(frozen=True)
class _SensorConf:
    """What Sensor.__init__ reads from a config entry."""

    name: str
    interval_s: float
    service: str | None
    enabled: bool = True


def build_sensors(cfg: Any, ctx: SensorContext) -> list[Sensor]:
    """The OpenClaw sensors for the config's `openclaw:` section (none when it is absent or disabled)."""
    raw = raw_section(cfg)
    if raw is None or raw is False:
        return []
    where = str(cfg.source) if getattr(cfg, "source", None) else "config"
    oc = parse_config(raw, where)
    if not oc.enabled:
        return []
    from agent.sensors.openclaw_cron import CronOptions, OpenClawCronSensor
    from agent.sensors.openclaw_gateway import GatewayLogSensor, OpenClawHeartbeatSensor
    from agent.sensors.openclaw_rules import load_rules

    inst = install_for(oc, ctx)
    rules = load_rules()
    sensors: list[Sensor] = []
    if oc.cron.enabled:
        sensors.append(OpenClawCronSensor(
            _SensorConf("openclaw-cron", oc.interval_s, oc.service), ctx, inst, rules,
            CronOptions(grace_s=oc.cron.grace_s, consecutive_errors_warn=oc.cron.consecutive_errors_warn,
                        start_at=oc.start_at)))
    log_sensor = None
    if oc.logs.enabled or oc.heartbeat.enabled:
        from agent.sensors.config import LogSensorConfig

        log_conf = LogSensorConfig(name="openclaw-gateway", paths=[inst.log_pattern()], service=oc.service,
                                   interval_s=oc.interval_s, start_at=oc.start_at, multiline=False,
                                   infer_level=False, default_level="INFO",
                                   # with logs off the records are still read: heartbeat activity is in them
                                   min_level=oc.logs.min_level if oc.logs.enabled else "CRITICAL",
                                   max_bytes_per_poll=oc.logs.max_bytes_per_poll,
                                   retired_keep_s=oc.logs.retired_keep_s)
        log_sensor = GatewayLogSensor(log_conf, ctx, inst, rules)
        sensors.append(log_sensor)
    if oc.heartbeat.enabled and log_sensor is not None:
        sensors.append(OpenClawHeartbeatSensor(
            _SensorConf("openclaw-heartbeat", oc.interval_s, oc.service), ctx, inst, log_sensor.id,
            oc.heartbeat.every_s, oc.heartbeat.grace_s))
    return sensors


def detect(env: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The `openclaw:` section for `selfheal init` when an installation is found, else None."""
    state = default_state_dir(env)
    if not looks_installed(state):
        return None
    inst = OpenClawInstall(state)
    section: dict[str, Any] = {"state_dir": str(state)}
    configured_log = inst.config().get("logging", {}).get("file") if isinstance(inst.config().get("logging"), dict) \
        else None
    if isinstance(configured_log, str) and configured_log.strip():
        section["log"] = configured_log.strip()
    every = inst.heartbeat_every_s()
    section["heartbeat"] = {"enabled": every is not None, "grace_s": 600}
    section["cron"] = {"grace_s": 300}
    return section
