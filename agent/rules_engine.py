"""Triage rules: loaded from rules files, validated, compiled into a durable_rules ruleset.

The files are data (rules/triage.yaml, rules/noise.yaml, plus triage*/noise*
files in the config's `rules_dirs` and the state dir's rules/). This module
turns them into one durable_rules ruleset and asks it which rule decides a
fact. Facts are small: only the fields the rules refer to, all of them
low-cardinality (booleans, states, counts), so the engine is asked once per
distinct fact and the answer is kept (`RulesEngine.decide`); the rules are
stateless per event, so the same fact always gets the same rule.

durable_rules traps handled here, deliberately:
- an event no rule matches raises: a catch-all rule is always appended;
- an exception inside an action is swallowed into the session state: the
  state is checked after every post, cleared, and the error raised;
- a ruleset name registers once per host: every compiled version gets a
  fresh name, so rules can be reloaded at run time;
- `set_rulesets` mutates the dict it is given: it gets a deep copy;
- one huge batch is slow: facts are posted in chunks (settings.chunk_size).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import operator
import re
import string
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import yaml

from agent.errors import InputError, SelfhealError
from agent.models import SOURCES, VERDICTS

if TYPE_CHECKING:
    from agent.config import Config

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "rules"
_SUFFIXES = (".yaml", ".yml", ".json")

ISSUE_STATES = ("none", "active", "resolved")
SUBJECTS = ("fingerprint", "warning")
# Every field a fact may carry, with its type; rules may refer to these only.
FACT_FIELDS: dict[str, type] = {
    "source": str,
    "level": str,
    "service": str,
    "host": str,
    "failure": bool,
    "check": bool,
    "consecutive": int,
    "threshold": int,
    "benign": str,
    "maintenance": str,
    "warning": str,
    "issue_state": str,
    "warning_state": str,
    "seen": bool,
}
# Fields whose value depends on earlier verdicts (an issue opened a moment ago): every other field is known
# before any verdict, so the engine can be asked about whole batches up front, once per possible state.
STATE_FIELDS = ("issue_state", "warning_state")
# Names a rule's reason may use besides the fact fields.
REASON_EXTRAS = frozenset({"id", "fingerprint", "template", "issue", "check_name", "threshold_from",
                           "benign_description", "maintenance_reason", "warning_title", "prevention"})
_OPS = {"eq": None, "ne": "$neq", "lt": "$lt", "lte": "$lte", "gt": "$gt", "gte": "$gte"}
_ORDERED_OPS = ("lt", "lte", "gt", "gte")
_RULE_KEYS = {"id", "priority", "when", "verdict", "subject", "attribute_to", "reason", "enabled", "description"}
_PATTERN_KEYS = {"id", "description", "match", "unless", "sources", "services", "enabled"}
_ID = re.compile(r"^[a-z0-9][a-z0-9_.:-]*$")
CATCH_ALL_ID = "unmatched"
CATCH_ALL_PRIORITY = 1_000_000


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class TriageRule:
    id: str
    priority: int
    when: dict[str, Any]
    verdict: str
    reason: str
    origin: str
    subject: str = "fingerprint"
    attribute_to: str | None = None
    description: str = ""
    fields: frozenset[str] = frozenset()
    condition: Any = None  # the durable_rules expression; None: always

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "priority": self.priority, "when": self.when, "verdict": self.verdict,
               "subject": self.subject, "reason": self.reason, "origin": self.origin}
        if self.attribute_to:
            out["attribute_to"] = self.attribute_to
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class NoisePattern:
    id: str
    description: str
    match: tuple[str, ...]
    origin: str
    unless: tuple[str, ...] = ()
    sources: frozenset[str] | None = None
    services: frozenset[str] | None = None
    regex: re.Pattern | None = None
    veto: re.Pattern | None = None

    def matches(self, source: str, service: str | None, message: str) -> bool:
        if self.sources is not None and source not in self.sources:
            return False
        if self.services is not None and service not in self.services:
            return False
        if self.regex is None or self.regex.search(message) is None:
            return False
        return self.veto is None or self.veto.search(message) is None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "description": self.description, "match": list(self.match),
                               "origin": self.origin}
        if self.unless:
            out["unless"] = list(self.unless)
        if self.sources is not None:
            out["sources"] = sorted(self.sources)
        if self.services is not None:
            out["services"] = sorted(self.services)
        return out


@dataclass(frozen=True)
class TriageSettings:
    check_sources: tuple[str, ...] = ("health", "heartbeat", "metric")
    check_attrs: tuple[str, ...] = ("check", "url", "metric")
    chunk_size: int = 200


@dataclass(frozen=True)
class TuneSettings:
    min_flaps: int = 3
    max_threshold: int = 10
    benign_min_count: int = 20
    benign_window_h: float = 1.0
    warning_min_firings: int = 3
    warning_window_h: float = 6.0


@dataclass(frozen=True)
class RuleData:
    """Everything the rules files say, merged in load order (later files override by id)."""

    rules: tuple[TriageRule, ...]
    patterns: tuple[NoisePattern, ...]
    settings: TriageSettings
    tune: TuneSettings
    files: tuple[str, ...]
    digest: str
    origins: dict[str, str] = field(default_factory=dict)  # "settings.<key>" / "tune.<key>" -> file


# --------------------------------------------------------------------------- loading


def rules_dirs(cfg: "Config | None") -> list[Path]:
    """Shipped rules first, then the config's rules_dirs, then the state dir's rules/ (later ones override)."""
    dirs = [SHIPPED_DIR]
    if cfg is not None:
        for d in cfg.rules_dirs:
            p = cfg.path(d)
            if not p.is_dir():
                raise InputError(f"rules_dirs: {p}: no such directory")
            dirs.append(p)
        if cfg.learned_rules_dir.is_dir():
            dirs.append(cfg.learned_rules_dir)
    seen: set[Path] = set()
    out = []
    for d in dirs:
        r = d.resolve()
        if r not in seen:
            seen.add(r)
            out.append(d)
    return out


def _files(dirs: Iterable[Path], prefix: str) -> list[Path]:
    found = []
    for d in dirs:
        found += sorted(p for p in d.iterdir()
                        if p.is_file() and p.name.startswith(prefix) and p.suffix in _SUFFIXES)
    return found


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(raw.decode("utf-8", errors="replace"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data, raw


def load_rules(cfg: "Config | None" = None, dirs: Sequence[Path] | None = None) -> RuleData:
    """Read and validate every rules file; the first problem raises an InputError naming file, rule and what."""
    dirs = list(dirs) if dirs is not None else rules_dirs(cfg)
    digest = hashlib.sha256()
    rules: dict[str, TriageRule] = {}
    patterns: dict[str, NoisePattern] = {}
    settings: dict[str, Any] = {}
    tune: dict[str, Any] = {}
    origins: dict[str, str] = {}
    files: list[str] = []
    for path in _files(dirs, "triage"):
        data, raw = _read(path)
        digest.update(str(path).encode() + b"\0" + raw + b"\0")
        files.append(str(path))
        unknown = set(data) - {"settings", "rules", "tune"}
        if unknown:
            raise InputError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (expected settings, rules, tune)")
        for key, value in _mapping(data.get("settings"), path, "settings").items():
            settings[key] = (value, path)
            origins[f"settings.{key}"] = str(path)
        for key, value in _mapping(data.get("tune"), path, "tune").items():
            tune[key] = (value, path)
            origins[f"tune.{key}"] = str(path)
        entries = data.get("rules") or []
        if not isinstance(entries, list):
            raise InputError(f"{path}: rules: expected a list of rules, got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            rule = _parse_rule(entry, path, i)
            if rule is None:
                rules.pop(_entry_id(entry), None)
            else:
                rules[rule.id] = rule
    for path in _files(dirs, "noise"):
        data, raw = _read(path)
        digest.update(str(path).encode() + b"\0" + raw + b"\0")
        files.append(str(path))
        unknown = set(data) - {"patterns"}
        if unknown:
            raise InputError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (expected patterns)")
        entries = data.get("patterns") or []
        if not isinstance(entries, list):
            raise InputError(f"{path}: patterns: expected a list of patterns, got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            pattern = _parse_pattern(entry, path, i)
            if pattern is None:
                patterns.pop(_entry_id(entry), None)
            else:
                patterns[pattern.id] = pattern
    if not files:
        raise InputError(f"no triage rules found in {', '.join(str(d) for d in dirs)}")
    ordered = _check_priorities(list(rules.values()))
    return RuleData(
        rules=tuple(ordered),
        patterns=tuple(patterns.values()),
        settings=_settings(settings),
        tune=_tune(tune),
        files=tuple(files),
        digest=digest.hexdigest(),
        origins=origins,
    )


def _entry_id(entry: Any) -> Any:
    return entry.get("id") if isinstance(entry, dict) else None


def _mapping(value: Any, path: Path, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{path}: {name}: expected a mapping, got {type(value).__name__}")
    return value


def _check_priorities(rules: list[TriageRule]) -> list[TriageRule]:
    by_priority: dict[int, TriageRule] = {}
    for r in rules:
        other = by_priority.get(r.priority)
        if other is not None:
            raise InputError(f"{r.origin}: rule {r.id!r}: priority {r.priority} is also rule {other.id!r}'s "
                             f"({other.origin}); priorities must differ so that one rule decides")
        by_priority[r.priority] = r
    return sorted(rules, key=lambda r: r.priority)


def _entry_head(entry: Any, path: Path, index: int, section: str, kind: str, keys: set[str] | frozenset[str]
                ) -> tuple[str, str] | None:
    """(id, where) of a rules-file entry, after the checks every entry shares; None when it is switched off."""
    where = f"{path}: {section}[{index}]"
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a mapping, got {type(entry).__name__}")
    eid = entry.get("id")
    if not isinstance(eid, str) or not _ID.match(eid):
        raise InputError(f"{where}: 'id' must be a lowercase name (letters, digits, - _ . :), got {eid!r}")
    where = f"{path}: {kind} {eid!r}"
    unknown = set(entry) - keys
    if unknown:
        raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r} (expected {', '.join(sorted(keys))})")
    if entry.get("enabled", True) is False:
        return None
    return eid, where


def _parse_rule(entry: Any, path: Path, index: int) -> TriageRule | None:
    head = _entry_head(entry, path, index, "rules", "rule", _RULE_KEYS)
    if head is None:
        return None
    rid, where = head
    priority = entry.get("priority")
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority < CATCH_ALL_PRIORITY:
        raise InputError(f"{where}: 'priority' must be an integer from 0 to {CATCH_ALL_PRIORITY - 1}, got {priority!r}")
    verdict = entry.get("verdict")
    if verdict not in VERDICTS:
        raise InputError(f"{where}: 'verdict' must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    subject = entry.get("subject", "fingerprint")
    if subject not in SUBJECTS:
        raise InputError(f"{where}: 'subject' must be one of {', '.join(SUBJECTS)}, got {subject!r}")
    attribute_to = entry.get("attribute_to")
    if attribute_to is not None and (attribute_to not in FACT_FIELDS or FACT_FIELDS[attribute_to] is not str):
        raise InputError(f"{where}: 'attribute_to' must name a text fact field, got {attribute_to!r}")
    reason = entry.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InputError(f"{where}: 'reason' is required (a sentence saying why this verdict)")
    _check_reason(reason, where)
    when = entry.get("when")
    if when is None:
        raise InputError(f"{where}: 'when' is required (use {{}} for a rule that always holds)")
    fields: set[str] = set()
    condition = compile_when(when, where, fields)
    if attribute_to:
        fields.add(attribute_to)
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise InputError(f"{where}: 'description' must be text")
    return TriageRule(id=rid, priority=priority, when=when, verdict=verdict, reason=reason, origin=str(path),
                      subject=subject, attribute_to=attribute_to, description=description,
                      fields=frozenset(fields), condition=condition)


def _check_reason(reason: str, where: str) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(reason) if name is not None]
    except ValueError as exc:
        raise InputError(f"{where}: 'reason' is not a valid template: {exc}") from None
    for name in names:
        if name not in FACT_FIELDS and name not in REASON_EXTRAS:
            raise InputError(f"{where}: 'reason' uses unknown name {{{name}}} "
                             f"(known: {', '.join(sorted(set(FACT_FIELDS) | REASON_EXTRAS))})")


def compile_when(when: Any, where: str, fields: set[str]) -> Any:
    """The durable_rules expression of a `when` mapping (None: always); collects the fields it reads."""
    if not isinstance(when, dict):
        raise InputError(f"{where}: 'when' must be a mapping of fact fields to conditions, got {type(when).__name__}")
    terms = []
    for key, value in when.items():
        if key == "any":
            if not isinstance(value, list) or not value:
                raise InputError(f"{where}: 'any' must be a non-empty list of conditions")
            alternatives = []
            for alt in value:
                sub = compile_when(alt, where, fields)
                if sub is None:
                    raise InputError(f"{where}: an empty condition inside 'any' always holds; remove the 'any'")
                alternatives.append(sub)
            terms.append(alternatives[0] if len(alternatives) == 1 else {"$or": alternatives})
        else:
            terms.append(_term(key, value, where, fields))
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {"$and": terms}


def _term(name: str, value: Any, where: str, fields: set[str]) -> Any:
    ftype = FACT_FIELDS.get(name)
    if ftype is None:
        raise InputError(f"{where}: unknown fact field {name!r} (known: {', '.join(sorted(FACT_FIELDS))}, any)")
    fields.add(name)
    if not isinstance(value, dict):
        return {name: _literal(name, ftype, value, where)}
    if len(value) != 1:
        raise InputError(f"{where}: condition on {name!r} must have exactly one operator, got {sorted(value)}")
    op, operand = next(iter(value.items()))
    if op in ("in", "not_in"):
        if not isinstance(operand, list) or not operand:
            raise InputError(f"{where}: {name} {op}: expected a non-empty list")
        values = [_literal(name, ftype, v, where) for v in operand]
        if op == "in":
            alts = [{name: v} for v in values]
            return alts[0] if len(alts) == 1 else {"$or": alts}
        negs = [{"$neq": {name: v}} for v in values]
        return negs[0] if len(negs) == 1 else {"$and": negs}
    if op not in _OPS:
        raise InputError(f"{where}: unknown operator {op!r} on {name!r} (expected {', '.join(list(_OPS) + ['in', 'not_in'])})")
    if op in _ORDERED_OPS and ftype is not int:
        raise InputError(f"{where}: {name} is {_type_name(ftype)}, so it cannot be compared with {op!r}")
    if isinstance(operand, str) and operand.startswith("$"):
        other = operand[1:]
        otype = FACT_FIELDS.get(other)
        if otype is None:
            raise InputError(f"{where}: {name} {op} {operand}: unknown fact field {other!r}")
        if otype is not ftype:
            raise InputError(f"{where}: {name} {op} {operand}: cannot compare {_type_name(ftype)} with {_type_name(otype)}")
        fields.add(other)
        right: Any = {"$m": other}
    else:
        right = _literal(name, ftype, operand, where)
    dop = _OPS[op]
    return {name: right} if dop is None else {dop: {name: right}}


def _literal(name: str, ftype: type, value: Any, where: str) -> Any:
    ok = isinstance(value, ftype) and not (ftype is int and isinstance(value, bool))
    if not ok:
        raise InputError(f"{where}: {name} is {_type_name(ftype)}, got {value!r}")
    if name in STATE_FIELDS and value not in ISSUE_STATES:
        raise InputError(f"{where}: {name} is one of {', '.join(ISSUE_STATES)}, got {value!r}")
    if name == "source" and value not in SOURCES:
        raise InputError(f"{where}: source is one of {', '.join(SOURCES)}, got {value!r}")
    return value


def _type_name(t: type) -> str:
    return {str: "text", bool: "true/false", int: "a whole number"}[t]


def _regexes(value: Any, where: str, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise InputError(f"{where}: '{key}' must be a regular expression or a non-empty list of them")
    for rx in items:
        try:
            re.compile(rx)
        except re.error as exc:
            raise InputError(f"{where}: '{key}': invalid regular expression {rx!r}: {exc}") from None
    return tuple(items)


def _alternation(regexes: Sequence[str]) -> re.Pattern:
    return re.compile("|".join(_scoped(rx) for rx in regexes))


def _scoped(rx: str) -> str:
    """A leading global flag group such as '(?i)' becomes a scoped one, so alternatives can be joined."""
    m = re.match(r"^\(\?([aiLmsux]+)\)", rx)
    return f"(?{m.group(1)}:{rx[m.end():]})" if m else f"(?:{rx})"


def _parse_pattern(entry: Any, path: Path, index: int) -> NoisePattern | None:
    head = _entry_head(entry, path, index, "patterns", "pattern", _PATTERN_KEYS)
    if head is None:
        return None
    pid, where = head
    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        raise InputError(f"{where}: 'description' is required (why lines like this are benign)")
    if "match" not in entry:
        raise InputError(f"{where}: 'match' is required")
    match = _regexes(entry["match"], where, "match")
    unless = _regexes(entry["unless"], where, "unless") if entry.get("unless") is not None else ()
    sources = services = None
    if entry.get("sources") is not None:
        if not isinstance(entry["sources"], list) or not all(s in SOURCES for s in entry["sources"]):
            raise InputError(f"{where}: 'sources' must be a list of {', '.join(SOURCES)}")
        sources = frozenset(entry["sources"])
    if entry.get("services") is not None:
        if not isinstance(entry["services"], list) or not all(isinstance(s, str) for s in entry["services"]):
            raise InputError(f"{where}: 'services' must be a list of service names")
        services = frozenset(entry["services"])
    return NoisePattern(id=pid, description=description.strip(), match=match, origin=str(path), unless=unless,
                        sources=sources, services=services, regex=_alternation(match),
                        veto=_alternation(unless) if unless else None)


def _settings(raw: dict[str, tuple[Any, Path]]) -> TriageSettings:
    out: dict[str, Any] = {}
    for key, (value, path) in raw.items():
        where = f"{path}: settings.{key}"
        if key in ("check_sources", "check_attrs"):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise InputError(f"{where}: expected a list of names")
            if key == "check_sources" and any(v not in SOURCES for v in value):
                bad = next(v for v in value if v not in SOURCES)
                raise InputError(f"{where}: {bad!r} is not a source ({', '.join(SOURCES)})")
            out[key] = tuple(value)
        elif key == "chunk_size":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000:
                raise InputError(f"{where}: expected a whole number from 1 to 10000, got {value!r}")
            out[key] = value
        else:
            raise InputError(f"{path}: settings: unknown key {key!r} (expected check_sources, check_attrs, chunk_size)")
    return TriageSettings(**out)


def _tune(raw: dict[str, tuple[Any, Path]]) -> TuneSettings:
    defaults = TuneSettings()
    out: dict[str, Any] = {}
    for key, (value, path) in raw.items():
        if not hasattr(defaults, key):
            raise InputError(f"{path}: tune: unknown key {key!r} (expected {', '.join(TuneSettings.__dataclass_fields__)})")
        want = type(getattr(defaults, key))
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        if want is int:
            ok = ok and isinstance(value, int)
        if not ok:
            raise InputError(f"{path}: tune.{key}: expected a positive {'whole ' if want is int else ''}number, got {value!r}")
        out[key] = want(value)
    return TuneSettings(**out)


# --------------------------------------------------------------------------- the engine


def _host():
    """One durable_rules host per process: rulesets are versioned by name, so any number can live in it."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is None:
            from durable import engine

            class _TriageHost(engine.Host):
                """Actions are looked up in a table filled by the engines; nothing runs in the background."""

                def __init__(self) -> None:
                    self.actions: dict[str, Any] = {}
                    super().__init__()

                def get_action(self, action_name: str):
                    try:
                        return self.actions[action_name]
                    except KeyError:
                        raise SelfhealError(f"triage: no action {action_name!r} registered") from None

                def _run(self) -> None:
                    # Facts are posted synchronously and no rule uses timers, so the dispatch threads the base
                    # class starts would only wake up to find nothing to do.
                    return None

            _HOST = _TriageHost()
        return _HOST


_HOST = None
_HOST_LOCK = threading.Lock()
_VERSIONS = itertools.count(1)


class RulesEngine:
    """One compiled version of the triage rules in durable_rules, with the verdict of every fact it was asked."""

    def __init__(self, data: RuleData):
        self.data = data
        rules = list(data.rules)
        if not rules or rules[-1].condition is not None:
            # The catch-all: durable_rules raises on an event no rule matches.
            rules.append(TriageRule(id=CATCH_ALL_ID if all(r.id != CATCH_ALL_ID for r in rules) else "$catch-all",
                                    priority=CATCH_ALL_PRIORITY, when={}, verdict="info",
                                    reason="no triage rule matched this {level} {source} signal",
                                    origin="built-in catch-all"))
        self.rules = tuple(rules)
        self.by_id = {r.id: r for r in self.rules}
        self.fields: tuple[str, ...] = tuple(sorted(set().union(*(r.fields for r in self.rules))))
        if len(self.fields) > 1:
            self.key = operator.itemgetter(*self.fields)  # type: ignore[method-assign]
        self.name = f"selfheal-triage-v{next(_VERSIONS)}"
        self._decided: dict[tuple, TriageRule] = {}
        self._outbox: dict[int, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        host = _host()
        definition: dict[str, Any] = {}
        for r in self.rules:
            action = f"{self.name}/{r.id}"
            host.actions[action] = self._recorder(r.id)
            cond = r.condition if r.condition is not None else {"$ex": {"k": 1}}
            definition[r.id] = {"all": [{"m": cond}], "pri": r.priority, "run": action}
        try:
            host.set_rulesets(copy.deepcopy({self.name: definition}))
        except Exception as exc:  # the engine's own validation, beyond ours
            raise InputError(f"{', '.join(data.files)}: durable_rules rejected the triage rules: {exc}") from None
        self._host = host

    def _recorder(self, rule_id: str):
        outbox = self._outbox

        def record(c) -> None:
            outbox[c.m["k"]] = rule_id

        return record

    def key(self, fact: dict[str, Any]) -> tuple:
        """The part of a fact the rules read (an itemgetter replaces this when there are several fields)."""
        return tuple(fact[f] for f in self.fields)

    def ensure(self, keys: Iterable[tuple]) -> int:
        """Ask the engine about every key not decided yet, in chunks; returns how many were asked."""
        todo = [k for k in dict.fromkeys(keys) if k not in self._decided]
        if not todo:
            return 0
        chunk = self.data.settings.chunk_size
        with self._lock:
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                events = []
                for i, k in enumerate(part):
                    event = dict(zip(self.fields, k))
                    event["k"] = i
                    events.append(event)
                self._outbox.clear()
                state = self._post(events)
                if state and state.get("exception"):
                    self._host.delete_state(self.name, None)
                    first = str(state["exception"]).split(", traceback")[0]
                    raise SelfhealError(f"triage rules ({self.name}): an action failed: {first}")
                for i, k in enumerate(part):
                    rid = self._outbox.get(i)
                    if rid is None:
                        raise SelfhealError(f"triage rules ({self.name}): no rule decided the fact {dict(zip(self.fields, k))}")
                    self._decided[k] = self.by_id[rid]
        return len(todo)

    def _post(self, events: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Post a batch; a batch the engine refuses leaves nothing behind in the session to fire later."""
        for e in events:
            # durable_rules refuses a batch holding two identical events; ids make every event distinct
            e["id"] = next(self._ids)
        try:
            return self._host.post_batch(self.name, events)
        except Exception as exc:
            self._host.delete_state(self.name, None)
            detail = getattr(exc, "message", None) or str(exc)
            raise SelfhealError(f"triage rules ({self.name}): durable_rules refused the facts: {detail[:300]}") from None

    @property
    def decided(self) -> int:
        """Distinct facts the engine has decided so far."""
        return len(self._decided)

    def decide(self, key: tuple) -> TriageRule:
        rule = self._decided.get(key)
        if rule is None:
            self.ensure([key])
            rule = self._decided[key]
        return rule

    def decide_fact(self, fact: dict[str, Any]) -> TriageRule:
        return self.decide(self.key(fact))


_ENGINES: dict[str, RulesEngine] = {}


def engine_for(data: RuleData) -> RulesEngine:
    """The compiled engine of these rules (compiled once per process per distinct rules content)."""
    with _HOST_LOCK:
        found = _ENGINES.get(data.digest)
    if found is None:
        built = RulesEngine(data)
        with _HOST_LOCK:
            found = _ENGINES.setdefault(data.digest, built)
    return found


class TriageRules:
    """The active rules; `reload()` swaps in new ones, or keeps the old ones when the files are broken."""

    def __init__(self, cfg: "Config | None" = None, dirs: Sequence[Path] | None = None):
        self.cfg = cfg
        self.dirs = list(dirs) if dirs is not None else None
        self._stamp = self._files_stamp()
        self.engine = engine_for(load_rules(cfg, self.dirs))
        self.last_error: str | None = None

    def _files_stamp(self) -> tuple | None:
        """Names, sizes and modification times of the rules files: unchanged files are not parsed again."""
        try:
            dirs = self.dirs if self.dirs is not None else rules_dirs(self.cfg)
            files = _files(dirs, "triage") + _files(dirs, "noise")
            return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        except (OSError, SelfhealError):
            return None

    @property
    def data(self) -> RuleData:
        return self.engine.data

    def reload(self) -> str | None:
        """Re-read the rules files: None when they loaded (changed or not), else the error (old rules kept)."""
        stamp = self._files_stamp()
        if stamp is not None and stamp == self._stamp and self.last_error is None:
            return None
        try:
            data = load_rules(self.cfg, self.dirs)
            if data.digest != self.engine.data.digest:
                self.engine = engine_for(data)
            self._stamp = stamp
        except SelfhealError as exc:
            self.last_error = str(exc)
            return self.last_error
        self.last_error = None
        return None


def describe(data: RuleData) -> dict[str, Any]:
    """The active shipped/configured rules as plain data (for `selfheal rules`)."""
    return {
        "files": list(data.files),
        "settings": {"check_sources": list(data.settings.check_sources), "check_attrs": list(data.settings.check_attrs),
                     "chunk_size": data.settings.chunk_size},
        "tune": {k: getattr(data.tune, k) for k in TuneSettings.__dataclass_fields__},
        "origins": dict(data.origins),  # the file each settings/tune key came from
        "rules": [r.to_json() for r in data.rules],
        "patterns": [p.to_json() for p in data.patterns],
    }


def digest_json(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]
