"""Configuration: one YAML file plus the state directory.

The state directory (`SELFHEAL_HOME`, default `~/.local/share/selfheal`, or the
global `--home DIR`) holds the store, learned rules and reports. The YAML file
is `--config FILE` or `$SELFHEAL_HOME/selfheal.yaml`; it is optional and every
key has a documented default (README, "Configuration reference").

Relative paths inside the file are relative to the file's own directory, so a
config can travel with the things it points at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import InputError

DEFAULT_HOME = Path("~/.local/share/selfheal")
CONFIG_NAME = "selfheal.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MaintenanceWindow(_Section):
    service: str = "*"
    start: str  # RFC 3339
    end: str  # RFC 3339
    reason: str = ""


class GateConfig(_Section):
    clock_skew_s: float = 5.0
    necessity_window_h: float = 6.0
    episode_gap_min: float = 15.0
    min_links: int = 3
    max_links: int = 7


class ModelConfig(_Section):
    """Any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, llama.cpp server)."""

    base_url: str | None = None
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4


class AnalysisConfig(_Section):
    model: ModelConfig | None = None
    max_redrafts: int = 3
    evidence_window_h: float = 24.0
    # Alertmanager's group_wait: a new issue waits this long before analysis, so the other
    # failures of the same incident are in before the analyst picks which one to explain.
    group_wait_s: float = 30.0


class ProbeConfig(_Section):
    roots: list[str] = Field(default_factory=list)
    commands: dict[str, list[str]] = Field(default_factory=dict)
    timeout_s: float = 5.0


class ServiceConfig(_Section):
    restart: list[str] | None = None
    config_files: list[str] = Field(default_factory=list)


class RemedyConfig(_Section):
    roots: list[str] = Field(default_factory=list)
    commands: dict[str, list[str]] = Field(default_factory=dict)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    mitigations: dict[str, list[str]] = Field(default_factory=dict)
    watch_window_s: float = 300.0
    backup_dir: str | None = None
    command_timeout_s: float = 120.0


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    token_env: str | None = "SELFHEAL_TOKEN"
    max_body_bytes: int = 10 * 1024 * 1024
    max_batch: int = 50_000


class DaemonConfig(_Section):
    interval_s: float = 30.0


class Config(BaseModel):
    model_config = ConfigDict(extra="allow")

    mode: Literal["dry-run", "auto"] = "dry-run"
    failure_threshold: int = 3
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    rules_dirs: list[str] = Field(default_factory=list)
    sensors: dict[str, Any] = Field(default_factory=dict)
    openclaw: dict[str, Any] | None = None
    gate: GateConfig = Field(default_factory=GateConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    remedy: RemedyConfig = Field(default_factory=RemedyConfig)
    redact: list[str] = Field(default_factory=list)
    server: ServerConfig = Field(default_factory=ServerConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)

    # Not from the file: where things live.
    home: Path = Field(default_factory=lambda: resolve_home(None), exclude=True)
    source: Path | None = Field(default=None, exclude=True)

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the config are relative to."""
        return self.source.parent if self.source else Path.cwd()

    def path(self, value: str | os.PathLike[str]) -> Path:
        p = Path(os.path.expandvars(str(value))).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def store_path(self) -> Path:
        return self.home / "store.duckdb"

    @property
    def learned_rules_dir(self) -> Path:
        return self.home / "rules"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    raw = home or os.environ.get("SELFHEAL_HOME") or str(DEFAULT_HOME)
    return Path(raw).expanduser().resolve()


def load_config(home: str | os.PathLike[str] | None = None, config: str | os.PathLike[str] | None = None) -> Config:
    """Read the config file (if any) and bind it to the state directory."""
    home_path = resolve_home(home)
    path = Path(config).expanduser() if config else home_path / CONFIG_NAME
    data: dict[str, Any] = {}
    source: Path | None = None
    if config or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{path}: config file not found") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read config: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise InputError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a mapping at the top level")
        source = path.resolve()
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{path}: {loc}: {err['msg']}") from None
    cfg.home = home_path
    cfg.source = source
    return cfg
