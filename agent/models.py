"""pydantic models for every format in the contracts (../shared/contracts/README.md).

Extra fields are allowed and kept everywhere; missing or invalid required
fields raise a ValidationError that `describe_error` turns into one line naming
the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from agent.errors import InputError

SOURCES = ("log", "cron", "health", "heartbeat", "metric", "probe", "alert")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FAILURE_LEVELS = frozenset({"ERROR", "CRITICAL"})
CATEGORIES = ("config", "code", "capacity", "dependency", "data", "schedule", "process", "environment")
OPS = (">", ">=", "<", "<=", "==", "!=")
VERDICTS = ("info", "noise", "new", "ongoing", "recurrence")
CHAIN_SCHEMA = "selfheal.chain/v1"

Source = Literal["log", "cron", "health", "heartbeat", "metric", "probe", "alert"]
Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Op = Literal[">", ">=", "<", "<=", "==", "!="]


def utc(dt: datetime) -> datetime:
    """Timestamps are UTC internally."""
    return dt.astimezone(timezone.utc)


def rfc3339(dt: datetime) -> str:
    """UTC, RFC 3339, 'Z' suffix; microseconds only when present."""
    dt = utc(dt)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if dt.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return dt.strftime(fmt)


def parse_ts(value: Any) -> datetime:
    """Parse an RFC 3339 timestamp (or a datetime) into an aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from None
    else:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    if dt.tzinfo is None:
        raise ValueError(f"timestamp has no UTC offset (use 'Z' or '+HH:MM'): {value!r}")
    try:
        return utc(dt)
    except OverflowError:  # year 1 or 9999 shifted past the calendar by its offset
        raise ValueError(f"timestamp out of range: {value!r}") from None


class _Open(BaseModel):
    """Contract models keep unknown fields."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --------------------------------------------------------------------------- signals


class Signal(_Open):
    id: str | None = None
    ts: datetime
    source: Source
    service: str | None = None
    host: str | None = None
    level: Level = "INFO"
    message: str
    value: float | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> datetime:
        return parse_ts(v)

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Any:
        if v is None:
            return "INFO"
        if isinstance(v, str):
            up = v.strip().upper()
            return {"WARN": "WARNING", "FATAL": "CRITICAL", "ERR": "ERROR", "CRIT": "CRITICAL"}.get(up, up)
        return v

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("value must be a number, not a boolean")
        return v

    @field_validator("attrs", mode="before")
    @classmethod
    def _attrs(cls, v: Any) -> Any:
        return {} if v is None else v

    @model_validator(mode="after")
    def _assign_id(self) -> "Signal":
        if not self.id:
            self.id = stable_id(self.model_dump(mode="json", exclude={"id"}))
        return self

    @field_serializer("ts")
    def _ser_ts(self, ts: datetime) -> str:
        return rfc3339(ts)

    @property
    def is_failure(self) -> bool:
        return self.level in FAILURE_LEVELS

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def stable_id(record: dict[str, Any]) -> str:
    """A stable id for a record without one: the same record always hashes alike."""
    canon = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return "h" + hashlib.sha1(canon.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- chains


def check_regex(v: str | None) -> str | None:
    """A pydantic validator body: the text compiles as a Python regular expression (None passes)."""
    if v is not None:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {v!r}: {exc}") from None
    return v


class Observe(_Open):
    source: Source
    service: str | None = None
    match: str | None = None
    metric: str | None = None
    op: Op | None = None
    value: float | None = None

    @field_validator("match")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return check_regex(v)

    @model_validator(mode="after")
    def _either(self) -> "Observe":
        metric_form = (self.metric, self.op, self.value)
        if self.match is None and any(x is not None for x in metric_form) and not all(x is not None for x in metric_form):
            missing = [n for n, x in zip(("metric", "op", "value"), metric_form) if x is None]
            raise ValueError(f"a metric observe needs metric, op and value (missing: {', '.join(missing)})")
        return self

    @property
    def is_metric(self) -> bool:
        return self.match is None and self.metric is not None

    def key(self) -> tuple:
        """Identity of an observe, for comparing roots and indexing archives."""
        return (self.source, self.service or "", self.match or "", self.metric or "", self.op or "", self.value)


class Node(_Open):
    id: str
    statement: str
    observe: Observe | None = None
    category: str | None = None


class Link(_Open):
    cause: str
    effect: str
    mechanism: str


class Fix(_Open):
    action: str
    target: str | None = None
    effect: str
    params: dict[str, Any] = Field(default_factory=dict)
    postcondition: Observe | None = None
    description: str = ""


class Chain(_Open):
    schema_: str = Field(default=CHAIN_SCHEMA, alias="schema")
    id: str
    symptom: str
    root: str
    nodes: list[Node]
    links: list[Link]
    fix: Fix | None = None

    @model_validator(mode="after")
    def _references(self) -> "Chain":
        ids = [n.id for n in self.nodes]
        seen: set[str] = set()
        for nid in ids:
            if nid in seen:
                raise ValueError(f"duplicate node id {nid!r}")
            seen.add(nid)
        for name in ("symptom", "root"):
            ref = getattr(self, name)
            if ref not in seen:
                raise ValueError(f"{name} {ref!r} is not a node id")
        for i, link in enumerate(self.links):
            for end in ("cause", "effect"):
                ref = getattr(link, end)
                if ref not in seen:
                    raise ValueError(f"links[{i}].{end} {ref!r} is not a node id")
        if self.fix is not None and self.fix.target is not None and self.fix.target not in seen:
            raise ValueError(f"fix.target {self.fix.target!r} is not a node id")
        return self

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    @property
    def root_node(self) -> Node:
        return self.node(self.root)

    @property
    def symptom_node(self) -> Node:
        return self.node(self.symptom)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ArchiveEntry(_Open):
    chain: Chain
    resolved_at: datetime | None = None

    @field_validator("resolved_at", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> datetime | None:
        return None if v is None else parse_ts(v)

    @field_serializer("resolved_at")
    def _ser(self, ts: datetime | None) -> str | None:
        return None if ts is None else rfc3339(ts)


class GateCase(_Open):
    chain: Chain
    signals: list[Signal] = Field(default_factory=list)
    archive: list[ArchiveEntry] = Field(default_factory=list)


class CheckResult(_Open):
    passed: bool
    reason: str


class GateChecks(_Open):
    reproduce: CheckResult
    archive: CheckResult
    completeness: CheckResult
    counterfactual: CheckResult


class GateResult(_Open):
    passed: bool
    elapsed_ms: float
    checks: GateChecks

    def failed_reasons(self) -> list[str]:
        return [f"{name}: {c.reason}" for name, c in self.checks if not c.passed]


# --------------------------------------------------------------------------- triage, fingerprints


class TriageResult(_Open):
    signal_id: str
    fingerprint: str
    template: str
    verdict: Literal["info", "noise", "new", "ongoing", "recurrence"]
    issue: str | None = None
    rule: str
    reason: str = ""


class FingerprintResult(_Open):
    line: int
    fingerprint: str
    template: str


# --------------------------------------------------------------------------- analysis cases


class CaseIssue(_Open):
    id: str
    symptom_signal: str


class AnalysisCase(_Open):
    issue: CaseIssue
    signals: list[Signal]
    archive: list[ArchiveEntry] = Field(default_factory=list)


class AnalysisResult(_Open):
    escalated: bool
    chain: Chain | None = None
    gate: GateResult | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        out.setdefault("chain", None)
        out.setdefault("gate", None)
        return out


# --------------------------------------------------------------------------- reading files


def describe_error(exc: ValidationError) -> str:
    """One line naming the first invalid field and what is wrong with it."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("function-after[_assign_id(), Signal]",))
    msg = err.get("msg", "invalid")
    msg = msg.removeprefix("Value error, ")
    if err.get("type") == "missing":
        return f"missing required field '{loc}'"
    if err.get("type") == "literal_error" and loc:
        return f"field '{loc}': {msg} (got {err.get('input')!r})"
    return f"field '{loc}': {msg}" if loc else msg


def parse_model(model: type[BaseModel], data: Any, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{where}: {describe_error(exc)}") from None


def iter_jsonl(lines: Iterable[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a bad line is an InputError naming FILE:LINE."""
    for lineno, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{name}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_signals(lines: Iterable[str], name: str) -> list[Signal]:
    """Validate every line as a contract signal; the first bad line raises, nothing is returned partially."""
    return [parse_model(Signal, obj, f"{name}:{lineno}") for lineno, obj in iter_jsonl(lines, name)]


def open_text(path: str | Path) -> Iterable[str]:
    """Lines of a file, or of stdin for '-'; unreadable files are one-line InputErrors."""
    import sys

    if str(path) == "-":
        return sys.stdin
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None


def load_signals_file(path: str | Path) -> list[Signal]:
    return read_signals(open_text(path), "<stdin>" if str(path) == "-" else str(path))


def load_json_file(path: str | Path) -> Any:
    text = "\n".join(open_text(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
