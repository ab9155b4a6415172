"""The fact each signal becomes: the signal enriched with what history knows.

A fact holds only what the triage rules may test (rules_engine.FACT_FIELDS):
is it a failure, a check, how many consecutive failures of that check so far,
the threshold that check needs, the benign pattern / maintenance window /
learned early-warning rule it matches, and the state of its failure mode's
issue. Everything here is plain Python over in-memory history; the store is
read before a batch and written after it (agent/triage.py).
"""

from __future__ import annotations

import fnmatch
import logging
import operator
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Sequence

from agent.errors import InputError
from agent.models import FAILURE_LEVELS, Signal, parse_ts, rfc3339
from agent.rules_engine import RuleData

log = logging.getLogger(__name__)

_CMP = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
        "!=": operator.ne}
SEP = "\x1f"


def warning_fingerprint(rule_id: str) -> str:
    """The failure mode a learned early-warning rule's warning issues are filed under."""
    return f"warning:{rule_id}"


# --------------------------------------------------------------------------- learned rules


def observe_matcher(observe: dict[str, Any]) -> Callable[[Signal], bool]:
    """A contract `observe` (source, service?, match | metric+op+value) as a predicate on signals."""
    source = observe["source"]
    service = observe.get("service")
    if observe.get("match") is not None:
        regex = re.compile(observe["match"])

        def test(s: Signal) -> bool:
            return regex.search(s.message) is not None
    elif observe.get("metric") is not None:
        metric, op, value = observe["metric"], _CMP[observe["op"]], float(observe["value"])

        def test(s: Signal) -> bool:
            return s.attrs.get("metric") == metric and s.value is not None and op(s.value, value)
    else:
        def test(s: Signal) -> bool:
            return True

    def matches(s: Signal) -> bool:
        return s.source == source and (service is None or s.service == service) and test(s)

    return matches


@dataclass(frozen=True)
class EarlyWarning:
    rule_id: str
    title: str
    source: str
    matches: Callable[[Signal], bool]


@dataclass(frozen=True)
class LearnedThreshold:
    rule_id: str
    spec: tuple[tuple[str, str], ...]  # (field, value) pairs that must be equal
    threshold: int

    def matches(self, check: tuple[str, str, str, str]) -> bool:
        values = dict(zip(("source", "service", "host", "key"), check))
        return all(values[k] == v for k, v in self.spec)


@dataclass(frozen=True)
class LearnedBenign:
    rule_id: str
    fingerprint: str | None
    regex: re.Pattern | None
    explanation: str


@dataclass
class LearnedRules:
    """The active learned rules (rules_learned rows), compiled; malformed ones are skipped and listed in errors."""

    warnings: dict[str, list[EarlyWarning]] = field(default_factory=dict)  # by source
    thresholds: list[LearnedThreshold] = field(default_factory=list)
    benign_fps: dict[str, LearnedBenign] = field(default_factory=dict)
    benign_patterns: list[LearnedBenign] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    signature: tuple = ()

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]]) -> "LearnedRules":
        out = cls(signature=tuple((r["id"], r["status"], str(r["definition"])) for r in rows))
        for r in rows:
            if r.get("status", "active") != "active":
                continue
            try:
                out._add(r)
            except (KeyError, TypeError, ValueError, re.error) as exc:
                out.errors.append(f"learned rule {r['id']} ({r['kind']}): {exc}")
        for e in out.errors:
            log.warning("skipping %s", e)
        return out

    def _add(self, r: dict[str, Any]) -> None:
        d = r["definition"]
        rid = r["id"]
        if r["kind"] == "early-warning":
            obs = d["observe"]
            ew = EarlyWarning(rule_id=rid, title=str(d.get("title") or f"early warning {rid}"), source=obs["source"],
                              matches=observe_matcher(obs))
            self.warnings.setdefault(ew.source, []).append(ew)
        elif r["kind"] == "threshold":
            check = d["check"]
            spec = tuple((k, str(check[k])) for k in ("source", "service", "host", "key") if check.get(k) is not None)
            n = int(d["failure_threshold"])
            if n < 1:
                raise ValueError(f"failure_threshold must be at least 1, got {n}")
            self.thresholds.append(LearnedThreshold(rid, spec, n))
        elif r["kind"] == "benign":
            fp, pattern = d.get("fingerprint"), d.get("pattern")
            if not fp and not pattern:
                raise ValueError("a benign rule needs a fingerprint or a pattern")
            b = LearnedBenign(rid, fp, re.compile(pattern) if pattern else None, r.get("explanation") or "")
            if fp:
                self.benign_fps[fp] = b
            if pattern:
                self.benign_patterns.append(b)
        else:
            raise ValueError(f"unknown kind {r['kind']!r}")

    def threshold_for(self, check: tuple[str, str, str, str]) -> LearnedThreshold | None:
        """The most specific matching threshold rule (the latest among equally specific ones)."""
        best: LearnedThreshold | None = None
        for t in self.thresholds:
            if t.matches(check) and (best is None or len(t.spec) >= len(best.spec)):
                best = t
        return best


# --------------------------------------------------------------------------- maintenance windows


@dataclass(frozen=True)
class Window:
    label: str
    service: str
    start: datetime
    end: datetime

    def covers(self, service: str | None, ts: datetime) -> bool:
        return self.start <= ts < self.end and (self.service == "*" or fnmatch.fnmatchcase(service or "", self.service))

    def describe(self) -> str:
        return f"'{self.label}' ({rfc3339(self.start)} to {rfc3339(self.end)})"


def maintenance_windows(entries: Iterable[Any]) -> list[Window]:
    out = []
    for i, w in enumerate(entries):
        try:
            start, end = parse_ts(w.start), parse_ts(w.end)
        except ValueError as exc:
            raise InputError(f"maintenance[{i}]: {exc}") from None
        if end <= start:
            raise InputError(f"maintenance[{i}]: end {w.end} is not after start {w.start}")
        label = w.reason or f"{w.service} maintenance {i + 1}"
        out.append(Window(label=label, service=w.service, start=start, end=end))
    return out


# --------------------------------------------------------------------------- facts


class Fact:
    """One signal's fact plus what its verdict's reason and actions need."""

    __slots__ = ("signal", "fingerprint", "template", "fact", "check", "check_name", "threshold_from",
                 "benign_description", "maintenance_reason", "warning", "ts_text")

    def __init__(self, signal: Signal, fingerprint: str, template: str, fact: dict[str, Any]):
        self.signal = signal
        # naive UTC, as the store keeps it (Signal.ts is always UTC)
        self.ts_text = signal.ts.replace(tzinfo=None).isoformat(sep=" ")
        self.fingerprint = fingerprint
        self.template = template
        self.fact = fact
        self.check: tuple[str, str, str, str] | None = None
        self.check_name = ""
        self.threshold_from = ""
        self.benign_description = ""
        self.maintenance_reason = ""
        self.warning: EarlyWarning | None = None


class FactBuilder:
    """Builds facts in signal order, advancing the history it was given (consecutive failures, fingerprints seen)."""

    def __init__(self, data: RuleData, *, failure_threshold: int, windows: Sequence[Window], learned: LearnedRules,
                 checks: dict[str, int], seen: set[str]):
        if failure_threshold < 1:
            raise InputError(f"failure_threshold must be at least 1, got {failure_threshold}")
        self.check_sources = frozenset(data.settings.check_sources)
        self.check_attrs = data.settings.check_attrs
        self.patterns = data.patterns
        self.any_pattern = re.compile("|".join(f"(?:{p.regex.pattern})" for p in self.patterns)) if self.patterns else None
        self.failure_threshold = failure_threshold
        self.windows = list(windows)
        self.learned = learned
        self.checks = checks
        self.seen = seen
        self.changed_checks: dict[str, tuple] = {}
        self._thresholds: dict[str, tuple[int, str]] = {}
        self._benign_seen: dict[tuple, tuple[str, str] | None] = {}

    def build(self, s: Signal, fingerprint: str, template: str) -> Fact:
        failure = s.level in FAILURE_LEVELS
        service = s.service or ""
        host = s.host or ""
        source = s.source
        fact: dict[str, Any] = {
            "source": source, "level": s.level, "service": service, "host": host, "failure": failure,
            "check": False, "consecutive": 0, "threshold": self.failure_threshold, "benign": "",
            "maintenance": "", "warning": "", "issue_state": "none", "warning_state": "none",
            "seen": fingerprint in self.seen,
        }
        self.seen.add(fingerprint)
        f = Fact(s, fingerprint, template, fact)

        if source in self.check_sources:
            key = ""
            attrs = s.attrs
            if attrs:
                for a in self.check_attrs:
                    v = attrs.get(a)
                    if v is not None:
                        key = str(v)
                        break
            check = (source, service, host, key)
            ckey = SEP.join(check)
            n = self.checks.get(ckey, 0) + 1 if failure else 0
            self.checks[ckey] = n
            self.changed_checks[ckey] = (ckey, source, s.service, s.host, key or None, n, s.id, s.ts)
            fact["check"] = True
            fact["consecutive"] = n
            f.check = check
            f.check_name = key or f"{service or '-'}@{host or '-'}"
            fact["threshold"], f.threshold_from = self._threshold(ckey, check)
        else:
            f.threshold_from = "failure_threshold in the config"

        if failure:
            benign = self._benign(s, fingerprint)
            if benign:
                fact["benign"], f.benign_description = benign

        if self.windows:
            for w in self.windows:
                if w.covers(s.service, s.ts):
                    fact["maintenance"] = w.label
                    f.maintenance_reason = w.describe()
                    break

        candidates = self.learned.warnings.get(source)
        if candidates:
            for ew in candidates:
                if ew.matches(s):
                    fact["warning"] = f"learned:{ew.rule_id}"
                    f.warning = ew
                    break
        return f

    def _threshold(self, ckey: str, check: tuple[str, str, str, str]) -> tuple[int, str]:
        found = self._thresholds.get(ckey)
        if found is None:
            t = self.learned.threshold_for(check)
            found = (t.threshold, f"learned rule {t.rule_id}") if t else (
                self.failure_threshold, "failure_threshold in the config")
            self._thresholds[ckey] = found
        return found

    def _benign(self, s: Signal, fingerprint: str) -> tuple[str, str] | None:
        lb = self.learned.benign_fps.get(fingerprint)
        if lb is not None:
            return f"learned:{lb.rule_id}", lb.explanation or "a learned benign failure mode"
        message = s.message
        # Failure lines repeat word for word (a retry loop, a scanner): the patterns run once per distinct line.
        key = (message, s.source, s.service)
        found = self._benign_seen.get(key, False)
        if found is not False:
            return found
        found = None
        if self.any_pattern is not None and self.any_pattern.search(message) is not None:
            for p in self.patterns:
                if p.matches(s.source, s.service, message):
                    found = f"noise:{p.id}", p.description
                    break
        if found is None:
            for lb in self.learned.benign_patterns:
                if lb.regex is not None and lb.regex.search(message):
                    found = f"learned:{lb.rule_id}", lb.explanation or "a learned benign pattern"
                    break
        if len(self._benign_seen) >= 100_000:
            self._benign_seen.clear()
        self._benign_seen[key] = found
        return found
