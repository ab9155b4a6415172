"""Metric deviations: a number per round, judged against its own robust baseline.

Sources: a command printing a number, a Prometheus text endpoint (parsed with
prometheus_client's parser; metric name plus label matchers), or the host
(cpu, memory, swap, disk and inode use in percent, load). Each metric keeps a
baseline in sensor_state: the last `window` values (median and MAD, robust to
the outliers they are meant to catch) and an EWMA of the level. A value
outside median +- band_k x 1.4826 x MAD (after `min_samples` of warm-up), or
beyond a static `max`/`min`, is a deviation: an ERROR signal naming the
metric, the value and the baseline. Otherwise INFO. `attrs.metric` is the
metric's name and `value` the number, so chain observes like
`{"metric": "worker_rss_mb", "op": ">=", "value": 1900}` match these signals.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from statistics import median
from typing import Any

from agent.clock import Clock
from agent.errors import SelfhealError
from agent.models import Signal
from agent.sensors.base import MeasuredSensor, SensorContext
from agent.sensors.config import MetricConfig, PrometheusSource
from agent.store import Store
from agent.store.state import get_state, set_state

MAD_SCALE = 1.4826  # makes the MAD estimate the standard deviation for normally distributed values


@dataclass
class Judgement:
    reason: str | None  # None (normal), "band", "max" or "min"
    median: float | None
    mad: float | None
    low: float | None
    high: float | None
    samples: int  # samples in the baseline before this one
    warmup: bool


def judge(window: list[float], value: float, conf: MetricConfig) -> Judgement:
    """Compare a value with the baseline of the values before it (pure)."""
    n = len(window)
    med = mad = low = high = None
    if n:
        med = median(window)
        mad = median(abs(x - med) for x in window)
        half = conf.band_k * MAD_SCALE * mad
        floor = conf.min_band if conf.min_band is not None else 0.05 * abs(med)
        half = max(half, floor)
        low, high = med - half, med + half
    warmup = n < conf.min_samples
    reason = None
    if conf.max_value is not None and value > conf.max_value:
        reason = "max"
    elif conf.min_value is not None and value < conf.min_value:
        reason = "min"
    elif not warmup and low is not None and high is not None:
        if value > high and conf.direction in ("both", "up"):
            reason = "band"
        elif value < low and conf.direction in ("both", "down"):
            reason = "band"
    return Judgement(reason, med, mad, low, high, n, warmup)


def update(baseline: dict[str, Any] | None, value: float, conf: MetricConfig) -> dict[str, Any]:
    window = list((baseline or {}).get("window", []))
    window.append(value)
    del window[: max(0, len(window) - conf.window)]
    prev = (baseline or {}).get("ewma")
    ewma = value if prev is None else conf.alpha * value + (1 - conf.alpha) * prev
    return {"window": window, "ewma": ewma, "count": int((baseline or {}).get("count", 0)) + 1}


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.6g}"


def describe(name: str, value: float, j: Judgement, conf: MetricConfig) -> str:
    if j.reason == "max":
        base = f", baseline {_fmt(j.median)}" if j.median is not None else ""
        return f"metric {name} = {_fmt(value)} is above its threshold {_fmt(conf.max_value)}{base}"
    if j.reason == "min":
        base = f", baseline {_fmt(j.median)}" if j.median is not None else ""
        return f"metric {name} = {_fmt(value)} is below its threshold {_fmt(conf.min_value)}{base}"
    if j.reason == "band":
        side = "above" if j.high is not None and value > j.high else "below"
        return (f"metric {name} = {_fmt(value)} deviates {side} its baseline {_fmt(j.median)} "
                f"(normal band {_fmt(j.low)}..{_fmt(j.high)} over {j.samples} samples)")
    if j.warmup:
        return f"metric {name} = {_fmt(value)} (warming up: {j.samples}/{conf.min_samples} samples)"
    return f"metric {name} = {_fmt(value)} (baseline {_fmt(j.median)}, normal band {_fmt(j.low)}..{_fmt(j.high)})"


# ---------------------------------------------------------------------------- sources

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)", re.I)


def parse_number(text: str) -> float | None:
    """The first number on the last non-empty line of a command's output."""
    for line in reversed(text.splitlines()):
        if line.strip():
            m = _NUMBER.search(line)
            return float(m.group(0)) if m else None
    return None


def read_command(conf: MetricConfig, cwd: Any) -> float:
    from agent.sensors import proc

    res = proc.run(conf.command or [], timeout_s=conf.timeout_s, cwd=cwd, tail_lines=5, kill_grace_s=1.0)
    if not res.ok:
        last = res.last_line()
        raise SelfhealError(f"command {' '.join(res.argv)}: {res.describe()}" + (f": {last}" if last else ""))
    value = parse_number("\n".join(res.stdout_tail))
    if value is None:
        shown = res.stdout_tail[-1] if res.stdout_tail else ""
        raise SelfhealError(f"command {' '.join(res.argv)} printed no number (last line: {shown[:80]!r})")
    return value


def select_samples(text: str, src: PrometheusSource) -> list[float]:
    """Values of the samples named `src.metric` whose labels include every `src.labels` pair (pure)."""
    from prometheus_client.parser import text_string_to_metric_families

    values = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name != src.metric:
                    continue
                if all(sample.labels.get(k) == v for k, v in src.labels.items()):
                    values.append(float(sample.value))
    except ValueError as exc:
        raise SelfhealError(f"cannot parse Prometheus text: {str(exc).splitlines()[0][:200]}") from None
    return values


def aggregate(values: list[float], how: str) -> float:
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    if how == "avg":
        return sum(values) / len(values)
    return sum(values)


def read_prometheus(src: PrometheusSource, timeout_s: float) -> float:
    import httpx

    from agent.sensors.health import network_reason

    try:
        with httpx.Client(timeout=timeout_s, trust_env=False) as client:
            resp = client.get(src.url, headers={"Accept": "text/plain;version=0.0.4"})
    except (httpx.HTTPError, OSError) as exc:
        host = httpx.URL(src.url).host if src.url.startswith("http") else src.url
        raise SelfhealError(f"{src.url}: {network_reason(exc, host, timeout_s)[1]}") from None
    if resp.status_code != 200:
        raise SelfhealError(f"{src.url}: HTTP {resp.status_code}")
    values = select_samples(resp.text, src)
    if not values:
        matchers = ",".join(f'{k}="{v}"' for k, v in src.labels.items())
        raise SelfhealError(f"{src.url}: no sample {src.metric}{{{matchers}}}")
    return aggregate(values, src.aggregate)


class HostReader:
    """Host metrics; CPU use is the busy share of CPU time since the previous reading."""

    def __init__(self) -> None:
        self._cpu_prev: Any = None

    def read(self, what: str, path: str) -> float:
        import psutil

        if what == "cpu_pct":
            times = psutil.cpu_times()
            prev, self._cpu_prev = self._cpu_prev, times
            if prev is None:
                return float(psutil.cpu_percent(interval=0.2))
            total = sum(times) - sum(prev)
            idle = (times.idle + getattr(times, "iowait", 0.0)) - (prev.idle + getattr(prev, "iowait", 0.0))
            return 0.0 if total <= 0 else round(100.0 * (1.0 - idle / total), 2)
        if what == "memory_pct":
            return float(psutil.virtual_memory().percent)
        if what == "swap_pct":
            return float(psutil.swap_memory().percent)
        if what == "disk_pct":
            return float(psutil.disk_usage(path).percent)
        if what == "inodes_pct":
            st = os.statvfs(path)
            if st.f_files == 0:
                raise SelfhealError(f"{path}: the filesystem does not report inode counts")
            return round(100.0 * (st.f_files - st.f_ffree) / st.f_files, 2)
        if what == "load1":
            return float(os.getloadavg()[0])
        raise SelfhealError(f"unknown host metric {what!r}")


class MetricSensor(MeasuredSensor):
    kind = "metric"

    def __init__(self, conf: MetricConfig, ctx: SensorContext):
        super().__init__(conf, ctx)
        self.conf: MetricConfig = conf
        self.host_reader = HostReader()
        self.path = str(ctx.path(conf.path))

    def target(self) -> str:
        c = self.conf
        if c.command is not None:
            return " ".join(c.command)
        if c.prometheus is not None:
            labels = ",".join(f'{k}="{v}"' for k, v in c.prometheus.labels.items())
            return f"{c.prometheus.url} {c.prometheus.metric}" + (f"{{{labels}}}" if labels else "")
        return f"host {c.host}" + (f" {c.path}" if c.host in ("disk_pct", "inodes_pct") else "")

    def measure(self, clock: Clock) -> tuple[Any, float]:
        at = clock.now()
        c = self.conf
        if c.command is not None:
            value = read_command(c, self.ctx.base_dir)
        elif c.prometheus is not None:
            value = read_prometheus(c.prometheus, c.timeout_s)
        else:
            value = self.host_reader.read(c.host or "", self.path)
        if not math.isfinite(value):
            raise SelfhealError(f"{self.target()}: the reading is {value} (not a finite number)")
        return at, value

    def record(self, store: Store, measurement: tuple[Any, float], clock: Clock) -> list[Signal]:
        at, value = measurement
        baseline = get_state(store, self.id, "baseline")
        j = judge(list((baseline or {}).get("window", [])), value, self.conf)
        new = update(baseline, value, self.conf)
        set_state(store, self.id, "baseline", new, at=at)
        level = "ERROR" if j.reason else "INFO"
        attrs: dict[str, Any] = {
            "metric": self.name,
            "baseline": _round(j.median),
            "band_low": _round(j.low),
            "band_high": _round(j.high),
            "ewma": _round(new["ewma"]),
            "samples": j.samples,
            "source_kind": self.conf.kind,
        }
        if j.warmup:
            attrs["warmup"] = True
        if j.reason:
            attrs["deviation"] = j.reason
            attrs["threshold"] = self.conf.max_value if j.reason == "max" else self.conf.min_value if j.reason == "min" else None
        return [self.signal(at, level, describe(self.name, value, j, self.conf), value, **attrs)]


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
