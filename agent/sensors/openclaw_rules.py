"""rules/openclaw.yaml: the signatures that level OpenClaw's messages, and what counts as heartbeat activity."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from agent.errors import InputError
from agent.models import LEVELS

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "openclaw.yaml"
_SOURCES = ("log", "cron")
_KEYS = {"id", "description", "sources", "subsystems", "match", "unless", "level"}


@dataclass(frozen=True)
class Signature:
    id: str
    description: str
    sources: frozenset[str]
    match: re.Pattern[str]
    level: str | None
    unless: re.Pattern[str] | None = None
    subsystems: re.Pattern[str] | None = None

    def matches(self, source: str, message: str, subsystem: str | None = None) -> bool:
        if source not in self.sources:
            return False
        if self.subsystems is not None and not (subsystem and self.subsystems.search(subsystem)):
            return False
        if self.match.search(message) is None:
            return False
        return self.unless is None or self.unless.search(message) is None


@dataclass(frozen=True)
class HeartbeatActivity:
    subsystems: re.Pattern[str] | None
    match: re.Pattern[str] | None
    unless_subsystems: re.Pattern[str] | None

    def matches(self, message: str, subsystem: str | None) -> bool:
        if subsystem and self.unless_subsystems is not None and self.unless_subsystems.search(subsystem):
            return False
        if subsystem and self.subsystems is not None and self.subsystems.search(subsystem):
            return True
        return self.match is not None and self.match.search(message) is not None


@dataclass(frozen=True)
class OpenClawRules:
    signatures: tuple[Signature, ...]
    heartbeat: HeartbeatActivity

    def classify(self, source: str, message: str, subsystem: str | None = None) -> Signature | None:
        for sig in self.signatures:
            if sig.matches(source, message, subsystem):
                return sig
        return None


def _regex(value: Any, where: str, key: str, optional: bool = False) -> re.Pattern[str] | None:
    if value is None and optional:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise InputError(f"{where}: '{key}' must be a regular expression or a non-empty list of them")
    try:
        return re.compile("|".join(f"(?:{_scoped(x)})" for x in items))
    except re.error as exc:
        raise InputError(f"{where}: '{key}': invalid regular expression: {exc}") from None


def _scoped(rx: str) -> str:
    m = re.match(r"^\(\?([aiLmsux]+)\)", rx)
    return f"(?{m.group(1)}:{rx[m.end():]})" if m else rx


def parse_rules(data: Any, where: str) -> OpenClawRules:
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping with 'signatures' and 'heartbeat'")
    unknown = set(data) - {"signatures", "heartbeat"}
    if unknown:
        raise InputError(f"{where}: unknown top-level key {sorted(unknown)[0]!r} (expected signatures, heartbeat)")
    sigs: list[Signature] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("signatures") or []):
        at = f"{where}: signatures[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{at}: expected a mapping")
        extra = set(entry) - _KEYS
        if extra:
            raise InputError(f"{at}: unknown key {sorted(extra)[0]!r}")
        sid = entry.get("id")
        if not isinstance(sid, str) or not sid or sid in seen:
            raise InputError(f"{at}: 'id' must be a unique name, got {sid!r}")
        seen.add(sid)
        sources = entry.get("sources") or list(_SOURCES)
        if not isinstance(sources, list) or not set(sources) <= set(_SOURCES):
            raise InputError(f"{at}: 'sources' must be a list of {', '.join(_SOURCES)}")
        level = entry.get("level")
        if level is not None and level not in LEVELS:
            raise InputError(f"{at}: 'level' must be one of {', '.join(LEVELS)}, got {level!r}")
        sigs.append(Signature(id=sid, description=str(entry.get("description") or ""), sources=frozenset(sources),
                              match=_regex(entry.get("match"), at, "match"),  # type: ignore[arg-type]
                              level=level, unless=_regex(entry.get("unless"), at, "unless", optional=True),
                              subsystems=_regex(entry.get("subsystems"), at, "subsystems", optional=True)))
    hb = data.get("heartbeat") or {}
    if not isinstance(hb, dict):
        raise InputError(f"{where}: heartbeat: expected a mapping")
    at = f"{where}: heartbeat"
    activity = HeartbeatActivity(subsystems=_regex(hb.get("subsystems"), at, "subsystems", optional=True),
                                 match=_regex(hb.get("match"), at, "match", optional=True),
                                 unless_subsystems=_regex(hb.get("unless_subsystems"), at, "unless_subsystems",
                                                          optional=True))
    return OpenClawRules(signatures=tuple(sigs), heartbeat=activity)


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> OpenClawRules:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_rules(data, path)


def load_rules(path: Path | None = None) -> OpenClawRules:
    """The signatures file, parsed once per version of the file."""
    p = path or RULES_FILE
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc.strerror or exc}") from None
    return _load(str(p), mtime)
