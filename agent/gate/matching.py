"""Does a signal show a node's condition? One definition, shared by the checks, the analyst and verification.

An `observe` (contract section 2) matches a signal when the sources are equal,
the services are equal if the observe names one, and either its `match` regex
is found in the message or, in the metric form, the signal's `attrs.metric`
is the observe's `metric` and its `value` satisfies `op value`. An observe
with both forms needs both; one with neither states no condition and matches
nothing.

Observes and signals may be the pydantic models or plain mappings of the same
fields (learned rules keep observes as JSON).
"""

from __future__ import annotations

import operator
import re
from functools import lru_cache
from typing import Any, Callable, Mapping

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@lru_cache(maxsize=4096)
def pattern(regex: str) -> re.Pattern[str]:
    """Compiled once per process: the same observes are matched against thousands of signals."""
    return re.compile(regex)


_MISSING = object()


def _get(obj: Any, name: str) -> Any:
    if type(obj) is dict:  # JSON, without the slow abstract isinstance below
        return obj.get(name)
    value = getattr(obj, name, _MISSING)
    if value is not _MISSING:
        return value
    return obj.get(name) if isinstance(obj, Mapping) else None


def has_condition(observe: Any) -> bool:
    """True when the observe states something to look for (a regex or a complete metric comparison)."""
    return _get(observe, "match") is not None or _metric_form(observe) is not None


def _metric_form(observe: Any) -> tuple[str, Callable[[float, float], bool], float] | None:
    metric, op, value = _get(observe, "metric"), _get(observe, "op"), _get(observe, "value")
    if metric is None or op is None or value is None or op not in OPS:
        return None
    return str(metric), OPS[op], float(value)


def observe_matches(observe: Any, signal: Any) -> bool:
    """True when `signal` shows the condition `observe` describes (see the module docstring)."""
    if _get(observe, "source") != _get(signal, "source"):
        return False
    service = _get(observe, "service")
    if service is not None and service != _get(signal, "service"):
        return False
    return condition(observe)(_get(signal, "message") or "", _metric_of(signal), _get(signal, "value"))


def _metric_of(signal: Any) -> Any:
    attrs = _get(signal, "attrs")
    return attrs.get("metric") if isinstance(attrs, Mapping) else None


def condition(observe: Any) -> Callable[[str, Any, Any], bool]:
    """The observe's test on (message, attrs.metric, value), with source and service already equal."""
    regex = _get(observe, "match")
    metric = _metric_form(observe)
    search = pattern(regex).search if regex is not None else None
    if search is None and metric is None:
        return _never
    if metric is None:
        return lambda message, _m, _v: search(message) is not None
    name, op, bound = metric

    def test(message: str, sig_metric: Any, value: Any) -> bool:
        if sig_metric != name or value is None or isinstance(value, bool):
            return False
        try:
            ok = op(float(value), bound)
        except (TypeError, ValueError):
            return False
        return ok and (search is None or search(message) is not None)

    return test


def _never(_message: str, _metric: Any, _value: Any) -> bool:
    return False


def observe_key(observe: Any) -> tuple:
    """Identity of an observe (the same condition looked for the same way), for comparing roots across chains."""
    if observe is None:
        return ()
    value = _get(observe, "value")
    try:
        value = None if value is None else float(value)
    except (TypeError, ValueError):
        pass
    return (
        _get(observe, "source") or "",
        _get(observe, "service") or "",
        _get(observe, "match") or "",
        _get(observe, "metric") or "",
        _get(observe, "op") or "",
        value,
    )


def describe(observe: Any) -> str:
    """A short human form: `log[checkout-api] /Out of memory/` or `metric worker_rss_mb >= 1900`."""
    if observe is None:
        return "no observe"
    where = str(_get(observe, "source"))
    if _get(observe, "service"):
        where += f"[{_get(observe, 'service')}]"
    parts = [where]
    if _get(observe, "match") is not None:
        parts.append(f"/{_get(observe, 'match')}/")
    if _get(observe, "metric") is not None:
        value = _get(observe, "value")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        parts.append(f"{_get(observe, 'metric')} {_get(observe, 'op') or '?'} {value}")
    return " ".join(parts)
