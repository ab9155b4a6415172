"""The knowledge base of failure modes: loads and validates rules/knowledge/*.yaml.

The format is documented in rules/knowledge/README.md. Loading turns each file
into a frozen `Mode` the offline analyst walks; any malformed entry is one
InputError naming the file and the field, so a typo never surfaces as a wrong
chain later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import InputError
from agent.models import CATEGORIES, SOURCES

if TYPE_CHECKING:
    from agent.config import Config

KNOWLEDGE_DIR = Path(__file__).resolve().parents[2] / "rules" / "knowledge"

ACTIONS = ("set_config", "write_file", "patch_file", "add_logrotate", "set_crontab", "set_env", "restart_service",
           "run_command")
PROBE_KINDS: dict[str, tuple[tuple[str, ...], ...]] = {
    # kind -> alternative sets of required parameters
    "config_key": (("file", "key"), ("file", "key_match")),
    "stat": (("path",),),
    "cert_expiry": (("path",), ("host",)),
    "crontab": ((),),
    "package_version": (("name",),),
    "http_get": (("url",),),
    "command": (("name",),),
}
BUILTINS = frozenset({"service", "host", "symptom", "config_file", "metric", "metric_value"})
VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
NODE_ID = re.compile(r"^[a-z][a-z0-9_]*$")
MODE_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


# --------------------------------------------------------------------------- templates


def variables(template: str) -> list[str]:
    return VAR.findall(template)


def fill(template: str, values: Mapping[str, str], *, regex: bool = False) -> str | None:
    """Replace every {{name}}; None when a name has no value. In regexes values are inserted escaped."""
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(m.group(1))
        if value is None:
            missing = True
            return ""
        return re.escape(str(value)) if regex else str(value)

    out = VAR.sub(sub, template)
    return None if missing else out


def _probe_regex(template: str) -> re.Pattern[str]:
    """Compile a regex template with every variable replaced by a plain word (validation and group discovery)."""
    return re.compile(VAR.sub("x", template))


# --------------------------------------------------------------------------- parsed form


@dataclass(frozen=True)
class ObserveSpec:
    source: str
    match: str | None = None
    metric: str | None = None  # a regex over attrs.metric
    op: str | None = None
    value: float | str | None = None  # a number or "observed"

    @property
    def is_metric(self) -> bool:
        return self.match is None

    @property
    def groups(self) -> frozenset[str]:
        if self.match is None:
            return frozenset()
        return frozenset(_probe_regex(self.match).groupindex)


@dataclass(frozen=True)
class SymptomSpec:
    node: str
    sources: tuple[str, ...]
    match: str
    regex: re.Pattern[str]
    weight: int = 1
    level: str = "failure"


@dataclass(frozen=True)
class FixSpec:
    action: str
    params: dict[str, Any]
    effect: str
    postcondition: ObserveSpec | None
    description: str


@dataclass(frozen=True)
class NodeSpec:
    id: str
    statement: str
    observes: tuple[ObserveSpec, ...]
    probes: tuple[dict[str, Any], ...] = ()
    category: str | None = None
    fix: FixSpec | None = None
    scope: str = "service"
    within_s: float | None = None
    recurrence: bool = False

    @property
    def is_root(self) -> bool:
        return self.category is not None and self.fix is not None


@dataclass(frozen=True)
class EdgeSpec:
    cause: str
    effect: str
    mechanism: str


@dataclass(frozen=True)
class Mode:
    id: str
    title: str
    description: str
    defaults: dict[str, str]
    facts: tuple[ObserveSpec, ...]
    symptoms: tuple[SymptomSpec, ...]
    nodes: dict[str, NodeSpec]
    edges: tuple[EdgeSpec, ...]
    path: Path
    causes_of: dict[str, tuple[EdgeSpec, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        roots = [n for n in self.nodes.values() if n.is_root]
        return {
            "id": self.id,
            "title": self.title,
            "file": str(self.path),
            "symptoms": len(self.symptoms),
            "nodes": len(self.nodes),
            "edges": len(self.edges),
            "roots": [{"node": n.id, "category": n.category, "action": n.fix.action if n.fix else None} for n in roots],
        }


# --------------------------------------------------------------------------- file schema (pydantic, strict)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_regex(v: str | None) -> str | None:
    if v is not None:
        try:
            _probe_regex(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {v!r}: {exc}") from None
    return v


class _ObserveIn(_Strict):
    source: Literal["log", "cron", "health", "heartbeat", "metric", "probe", "alert"]
    match: str | None = None
    metric: str | None = None
    op: Literal[">", ">=", "<", "<=", "==", "!="] | None = None
    value: float | Literal["observed"] | None = None

    _re_match = field_validator("match")(classmethod(lambda cls, v: _check_regex(v)))
    _re_metric = field_validator("metric")(classmethod(lambda cls, v: _check_regex(v)))

    def check(self) -> None:
        metric_form = (self.metric, self.op, self.value)
        if self.match is None and not all(x is not None for x in metric_form):
            raise ValueError("needs either match or all of metric, op and value")
        if self.match is not None and any(x is not None for x in metric_form):
            raise ValueError("use either match or metric/op/value, not both")


class _SymptomIn(_Strict):
    node: str
    source: str | list[str]
    match: str
    weight: int = Field(default=1, ge=1, le=5)
    level: Literal["failure", "any"] = "failure"

    _re = field_validator("match")(classmethod(lambda cls, v: _check_regex(v)))

    @field_validator("source")
    @classmethod
    def _sources(cls, v: str | list[str]) -> str | list[str]:
        for s in [v] if isinstance(v, str) else v:
            if s not in SOURCES:
                raise ValueError(f"unknown source {s!r} (expected one of {', '.join(SOURCES)})")
        return v


class _FixIn(_Strict):
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    effect: Literal["eliminate", "mitigate"] = "eliminate"
    postcondition: _ObserveIn | None = None
    description: str = Field(min_length=1)

    @field_validator("action")
    @classmethod
    def _action(cls, v: str) -> str:
        if v not in ACTIONS:
            raise ValueError(f"unknown action {v!r} (allowed: {', '.join(ACTIONS)})")
        return v


class _NodeIn(_Strict):
    id: str
    statement: str = Field(min_length=1)
    observe: _ObserveIn | list[_ObserveIn]
    probes: list[dict[str, Any]] = Field(default_factory=list)
    category: str | None = None
    fix: _FixIn | None = None
    scope: Literal["service", "host", "any"] = "service"
    within_s: float | None = Field(default=None, gt=0)
    recurrence: bool = False

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not NODE_ID.match(v):
            raise ValueError(f"node id {v!r} must match [a-z][a-z0-9_]*")
        return v

    @field_validator("category")
    @classmethod
    def _category(cls, v: str | None) -> str | None:
        if v is not None and v not in CATEGORIES:
            raise ValueError(f"unknown category {v!r} (expected one of {', '.join(CATEGORIES)})")
        return v


class _EdgeIn(_Strict):
    cause: str
    effect: str
    mechanism: str = Field(min_length=1)


class _ModeIn(_Strict):
    id: str
    title: str = Field(min_length=1)
    description: str = ""
    defaults: dict[str, str | int | float] = Field(default_factory=dict)
    facts: list[_ObserveIn] = Field(default_factory=list)
    symptoms: list[_SymptomIn] = Field(min_length=1)
    nodes: list[_NodeIn] = Field(min_length=1)
    edges: list[_EdgeIn] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not MODE_ID.match(v):
            raise ValueError(f"mode id {v!r} must be lowercase-kebab (e.g. unbounded-cache-oom)")
        return v


def _loc(err: dict[str, Any]) -> str:
    parts: list[str] = []
    for p in err.get("loc", ()):
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        elif p in ("list[_ObserveIn]", "_ObserveIn", "str", "list[str]", "float", "int", "literal['observed']"):
            continue
        else:
            parts.append(str(p))
    return ".".join(parts)


# --------------------------------------------------------------------------- loading


def _obs(o: _ObserveIn) -> ObserveSpec:
    return ObserveSpec(source=o.source, match=o.match, metric=o.metric, op=o.op, value=o.value)


def parse_mode(data: Any, path: Path) -> Mode:
    """Validate one file's content; every problem is an InputError naming the file and the field."""
    where = str(path)
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping at the top level")
    try:
        m = _ModeIn.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "missing required field"
        elif err.get("type") == "extra_forbidden":
            msg = "unknown field"
        raise InputError(f"{where}: {_loc(err)}: {msg}") from None

    def fail(loc: str, msg: str) -> InputError:
        return InputError(f"{where}: {loc}: {msg}")

    nodes: dict[str, NodeSpec] = {}
    for i, n in enumerate(m.nodes):
        if n.id in nodes:
            raise fail(f"nodes[{i}].id", f"duplicate node id {n.id!r}")
        alts = n.observe if isinstance(n.observe, list) else [n.observe]
        if not alts:
            raise fail(f"nodes[{i}].observe", "needs at least one alternative")
        for j, o in enumerate(alts):
            try:
                o.check()
            except ValueError as exc:
                raise fail(f"nodes[{i}].observe[{j}]", str(exc)) from None
        if (n.category is None) != (n.fix is None):
            which = "fix" if n.fix is None else "category"
            raise fail(f"nodes[{i}].{which}", "a root node needs both category and fix")
        fix = None
        if n.fix is not None:
            post = None
            if n.fix.postcondition is not None:
                try:
                    n.fix.postcondition.check()
                except ValueError as exc:
                    raise fail(f"nodes[{i}].fix.postcondition", str(exc)) from None
                post = _obs(n.fix.postcondition)
            fix = FixSpec(action=n.fix.action, params=dict(n.fix.params), effect=n.fix.effect, postcondition=post,
                          description=n.fix.description)
        for j, spec in enumerate(n.probes):
            _check_probe(spec, lambda msg, j=j: fail(f"nodes[{i}].probes[{j}]", msg))
        nodes[n.id] = NodeSpec(id=n.id, statement=n.statement, observes=tuple(_obs(o) for o in alts),
                               probes=tuple(dict(p) for p in n.probes), category=n.category, fix=fix, scope=n.scope,
                               within_s=n.within_s, recurrence=n.recurrence)

    symptoms = []
    for i, s in enumerate(m.symptoms):
        if s.node not in nodes:
            raise fail(f"symptoms[{i}].node", f"{s.node!r} is not a node id")
        sources = (s.source,) if isinstance(s.source, str) else tuple(s.source)
        if VAR.search(s.match):
            raise fail(f"symptoms[{i}].match", "symptom patterns cannot use {{variables}}")
        symptoms.append(SymptomSpec(node=s.node, sources=sources, match=s.match, regex=re.compile(s.match),
                                    weight=s.weight, level=s.level))

    edges = []
    seen_edges: set[tuple[str, str]] = set()
    for i, e in enumerate(m.edges):
        for end in ("cause", "effect"):
            if getattr(e, end) not in nodes:
                raise fail(f"edges[{i}].{end}", f"{getattr(e, end)!r} is not a node id")
        if e.cause == e.effect:
            raise fail(f"edges[{i}]", "an edge cannot join a node to itself")
        if (e.cause, e.effect) in seen_edges:
            raise fail(f"edges[{i}]", f"duplicate edge {e.cause} -> {e.effect}")
        seen_edges.add((e.cause, e.effect))
        edges.append(EdgeSpec(cause=e.cause, effect=e.effect, mechanism=e.mechanism))

    facts = []
    for i, f in enumerate(m.facts):
        try:
            f.check()
        except ValueError as exc:
            raise fail(f"facts[{i}]", str(exc)) from None
        facts.append(_obs(f))

    defaults = {k: str(v) for k, v in m.defaults.items()}
    # Which variables could ever be known: a template naming anything else is a typo.
    known = set(BUILTINS) | set(defaults)
    for s in symptoms:
        known |= set(s.regex.groupindex)
    for n in nodes.values():
        for o in n.observes:
            known |= o.groups
    for f in facts:
        known |= f.groups

    def check_vars(loc: str, text: Any) -> None:
        for name in variables(text) if isinstance(text, str) else ():
            if name not in known:
                raise fail(loc, f"template variable {{{{{name}}}}} is never supplied (no regex group, default or built-in)")

    for k, v in defaults.items():
        check_vars(f"defaults.{k}", v)
    for i, n in enumerate(m.nodes):
        node = nodes[n.id]
        check_vars(f"nodes[{i}].statement", node.statement)
        for j, o in enumerate(node.observes):
            check_vars(f"nodes[{i}].observe[{j}].match", o.match or "")
        for j, spec in enumerate(node.probes):
            for key, val in spec.items():
                check_vars(f"nodes[{i}].probes[{j}].{key}", val)
        if node.fix:
            check_vars(f"nodes[{i}].fix.description", node.fix.description)
            for key, val in node.fix.params.items():
                for text in _strings(val):
                    check_vars(f"nodes[{i}].fix.params.{key}", text)
            if node.fix.postcondition:
                check_vars(f"nodes[{i}].fix.postcondition.match", node.fix.postcondition.match or "")
    for i, e in enumerate(edges):
        check_vars(f"edges[{i}].mechanism", e.mechanism)
    for i, f in enumerate(facts):
        check_vars(f"facts[{i}].match", f.match or "")

    if not any(n.is_root for n in nodes.values()):
        raise fail("nodes", "no root node (a node with category and fix)")

    causes: dict[str, list[EdgeSpec]] = {}
    for e in edges:
        causes.setdefault(e.effect, []).append(e)
    return Mode(id=m.id, title=m.title, description=m.description.strip(), defaults=defaults, facts=tuple(facts),
                symptoms=tuple(symptoms), nodes=nodes, edges=tuple(edges), path=path,
                causes_of={k: tuple(v) for k, v in causes.items()})


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _check_probe(spec: Mapping[str, Any], fail: Any) -> None:
    kind = spec.get("kind")
    if kind not in PROBE_KINDS:
        raise fail(f"unknown probe kind {kind!r} (expected one of {', '.join(PROBE_KINDS)})")
    if not any(all(k in spec for k in need) for need in PROBE_KINDS[kind]):
        options = " or ".join("+".join(need) or "nothing" for need in PROBE_KINDS[kind])
        raise fail(f"probe {kind} needs {options}")


def load_file(path: Path) -> Mode:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(f"{at}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_mode(data, path)


def knowledge_dirs(cfg: "Config | None" = None) -> list[Path]:
    dirs = [KNOWLEDGE_DIR]
    if cfg is not None:
        for d in cfg.rules_dirs:
            sub = cfg.path(d) / "knowledge"
            if sub.is_dir() and sub.resolve() != KNOWLEDGE_DIR:
                dirs.append(sub)
    return dirs


def _mode_files(dirs: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("_"))
    return files


@lru_cache(maxsize=16)
def _load_cached(key: tuple[tuple[str, float], ...]) -> tuple[Mode, ...]:
    modes: dict[str, Mode] = {}
    for name, _mtime in key:
        mode = load_file(Path(name))
        if mode.id in modes:
            raise InputError(f"{name}: id: mode {mode.id!r} is already defined in {modes[mode.id].path}")
        modes[mode.id] = mode
    return tuple(modes.values())


def load_modes(cfg: "Config | None" = None, dirs: Iterable[Path] | None = None) -> tuple[Mode, ...]:
    """Every mode of the knowledge base, validated; cached until a file changes."""
    files = _mode_files(dirs if dirs is not None else knowledge_dirs(cfg))
    key = tuple((str(p), p.stat().st_mtime) for p in files)
    return _load_cached(key)
