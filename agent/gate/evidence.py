"""The evidence signals, prepared once for the checks.

Signals become plain columns (epoch seconds, id, message, ...) sorted by time
and id, bucketed by source (and on demand by service and metric), so an
observe only looks at signals it could match; each observe's hits are
computed once and shared by the four checks (and by re-drafts judged against
the same evidence). Sorting by (time, id) makes every answer independent of
the order the signals arrived in.

Regex observes are pre-filtered: a literal every match must contain (the
longest run of plain characters in the pattern's top-level sequence) is found
with str.find in the bucket's messages joined by NUL, and only messages that
contain it are searched with the regex. The filter only drops messages that
cannot match, so results equal a full scan.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, NamedTuple, Sequence

from agent.gate.matching import _get, _metric_form, condition, observe_key, pattern
from agent.models import FAILURE_LEVELS

_SEP = "\x00"


class Hit(NamedTuple):
    ts: float  # epoch seconds, UTC
    id: str
    failure: bool  # level ERROR or CRITICAL
    source: str


@lru_cache(maxsize=4096)
def required_literals(regex: str) -> tuple[str, ...] | None:
    """Literals one of which every match of `regex` contains, or None when there is no safe set.

    The longest run of plain characters in the pattern's top-level sequence;
    for a pattern that is one alternation, one such literal per alternative.
    """
    try:
        from re import _constants, _parser  # the stdlib's own parser: exact for every pattern re accepts

        parsed = _parser.parse(regex)
        if parsed.state.flags & re.IGNORECASE:
            return None
        items = list(parsed)
        if len(items) == 1 and items[0][0] is _constants.BRANCH:
            found = [_longest_run(list(alt), _constants.LITERAL) for alt in items[0][1][1]]
            return tuple(found) if all(found) else None
        best = _longest_run(items, _constants.LITERAL)
    except Exception:  # a private API could change; the filter is only an optimisation
        return None
    return (best,) if best else None


def _longest_run(items: list, literal: Any) -> str | None:
    best, run = "", []
    for op, arg in items + [(None, None)]:
        if op is literal:
            run.append(chr(arg))
            continue
        if len(run) > len(best):
            best = "".join(run)
        run = []
    return best if best and _SEP not in best else None


class _Bucket:
    """The signals of one source, time-ordered, as columns."""

    __slots__ = ("source", "ts", "ids", "messages", "services", "metrics", "values", "failure", "_by_service",
                 "_by_metric", "_joined")

    def __init__(self, source: str) -> None:
        self.source = source
        # Columns, time-ordered; tuples, which the garbage collector untracks.
        self.ts: tuple[float, ...] = ()
        self.ids: tuple[str, ...] = ()
        self.messages: tuple[str, ...] = ()
        self.services: tuple[Any, ...] = ()
        self.metrics: tuple[Any, ...] = ()
        self.values: tuple[Any, ...] = ()
        self.failure: tuple[bool, ...] = ()
        self._by_service: dict[Any, list[int]] | None = None
        self._by_metric: dict[Any, list[int]] | None = None
        self._joined: dict[Any, tuple[str, list[int], Sequence[int]]] = {}

    def for_service(self, service: Any) -> Sequence[int]:
        if service is None:
            return range(len(self.ts))
        if self._by_service is None:
            self._by_service = {}
            for i, s in enumerate(self.services):
                self._by_service.setdefault(s, []).append(i)
        return self._by_service.get(service, [])

    def for_metric(self, metric: str) -> list[int]:
        if self._by_metric is None:
            self._by_metric = {}
            for i, m in enumerate(self.metrics):
                if m is not None:
                    self._by_metric.setdefault(m, []).append(i)
        return self._by_metric.get(metric, [])

    def containing(self, service: Any, literals: tuple[str, ...]) -> list[int]:
        """Indices (within the service's signals), in order, of messages that contain one of `literals`."""
        joined = self._joined.get(service)
        if joined is None:
            cand = self.for_service(service)
            msgs = self.messages
            parts = [msgs[i] for i in cand]
            starts, pos = [], 0
            for p in parts:
                starts.append(pos)
                pos += len(p) + 1
            joined = self._joined[service] = (_SEP.join(parts), starts, cand)
        text, starts, cand = joined
        found: set[int] = set()
        find = text.find
        n = len(starts)
        for literal in literals:
            pos = find(literal)
            while pos != -1:
                k = bisect_right(starts, pos) - 1
                found.add(k)
                if k + 1 >= n:
                    break
                pos = find(literal, starts[k + 1])
        return [cand[k] for k in sorted(found)]


class Evidence:
    """Signals indexed for matching observes. Build once per set of signals; `judge` accepts it in place of a list."""

    _CACHE_LIMIT = 2048

    def __init__(self, signals: Sequence[Any]):
        sigs = list(signals)
        keys = [(s.ts.timestamp(), s.id or "") for s in sigs]
        by_source: dict[str, list[int]] = {}
        for i in sorted(range(len(sigs)), key=keys.__getitem__):
            by_source.setdefault(sigs[i].source, []).append(i)
        self.count = len(sigs)
        self._buckets: dict[str, _Bucket] = {}
        for source, idx in by_source.items():
            # One comprehension per column: far quicker than appending field by field.
            b = self._buckets[source] = _Bucket(source)
            rows = [sigs[i] for i in idx]
            b.ts = tuple(keys[i][0] for i in idx)
            b.ids = tuple(keys[i][1] for i in idx)
            b.messages = tuple(s.message or "" for s in rows)
            b.services = tuple(s.service for s in rows)
            b.metrics = tuple(s.attrs.get("metric") if s.attrs else None for s in rows)
            b.values = tuple(s.value for s in rows)
            b.failure = tuple(s.level in FAILURE_LEVELS for s in rows)
        # Plain tuples, which the garbage collector untracks: a big cache costs no collection time.
        self._cache: dict[tuple, tuple[tuple[float, str, bool, str], ...]] = {}

    @classmethod
    def of(cls, signals: "Evidence | Sequence[Any]") -> "Evidence":
        return signals if isinstance(signals, Evidence) else cls(signals)

    def hits(self, observe: Any) -> list[Hit]:
        """Every signal the observe matches (any level), in (time, id) order."""
        if observe is None:
            return []
        key = observe_key(observe)
        found = self._cache.get(key)
        if found is None:
            found = self._scan(observe)
            if len(self._cache) >= self._CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return list(map(Hit._make, found))

    def failures(self, observe: Any) -> list[Hit]:
        """The observe's matches at level ERROR or CRITICAL: the failure signals themselves."""
        return [h for h in self.hits(observe) if h.failure]

    def _scan(self, observe: Any) -> tuple[tuple[float, str, bool, str], ...]:
        b = self._buckets.get(_get(observe, "source"))
        if b is None:
            return ()
        service = _get(observe, "service")
        regex = _get(observe, "match")
        metric = _metric_form(observe)
        msgs = b.messages
        if metric is not None:
            wanted = set(b.for_service(service)) if service is not None else None
            cand: Sequence[int] = [i for i in b.for_metric(metric[0]) if wanted is None or i in wanted]
        elif regex is not None:
            literals = required_literals(regex)
            cand = b.containing(service, literals) if literals else b.for_service(service)
        else:
            return ()
        if metric is None:
            search = pattern(regex).search  # the common case, kept to one call per signal
            idx = [i for i in cand if search(msgs[i]) is not None]
        else:
            test = condition(observe)
            metrics, values = b.metrics, b.values
            idx = [i for i in cand if test(msgs[i], metrics[i], values[i])]
        ts, ids, failure, source = b.ts, b.ids, b.failure, b.source
        return tuple((ts[i], ids[i], failure[i], source) for i in idx)


def iso(ts: float) -> str:
    """RFC 3339 UTC for reasons people read."""
    dt = datetime.fromtimestamp(ts, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if dt.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def span(seconds: float) -> str:
    """6h, 90m, 5s: durations in reasons."""
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
