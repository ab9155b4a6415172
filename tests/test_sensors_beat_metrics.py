"""Heartbeats (beats and file mtimes, gaps on a FakeClock) and metric baselines (command, Prometheus, host)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.sensors.base import SensorContext
from agent.sensors.config import HeartbeatConfig, MetricConfig, parse_sensors
from agent.sensors.heartbeat import HeartbeatSensor, beat_signal, beat_state
from agent.sensors.metrics import MetricSensor, judge, select_samples
from agent.store import Store
from agent.store.signals import insert_signals, query_signals
from agent.store.state import get_state, set_state

T0 = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent


def ctx(tmp_path: Path) -> SensorContext:
    return SensorContext(tmp_path, "web-1")


# ---------------------------------------------------------------------------- heartbeats


def record_beat(store: Store, name: str, at: datetime) -> None:
    sig = beat_signal(name, at, host="web-1")
    insert_signals(store, [sig])
    set_state(store, *beat_state(sig))


def test_beat_on_time_then_gap_with_gap_seconds_as_value(tmp_path):
    clock = FakeClock(T0)
    hb = HeartbeatSensor(HeartbeatConfig(name="worker", every_s=60, grace_s=30), ctx(tmp_path))
    with Store.open(None) as store:
        record_beat(store, "worker", T0)
        clock.sleep(45)
        [ok] = hb.poll(store, clock)
        assert ok.level == "INFO" and ok.value == 45 and ok.attrs["check"] == "worker" and ok.source == "heartbeat"
        clock.sleep(55)  # 100 s since the beat > 60 + 30
        [gap] = hb.poll(store, clock)
        assert gap.level == "ERROR" and gap.value == 100 and gap.attrs["check"] == "worker"
        assert "no beat for 100s" in gap.message and gap.attrs["last_beat"] == "2026-11-30T03:00:00Z"
        record_beat(store, "worker", clock.now())
        [back] = hb.poll(store, clock)
        assert back.level == "INFO" and back.value == 0


def test_never_beaten_counts_from_when_watching_started(tmp_path):
    clock = FakeClock(T0)
    hb = HeartbeatSensor(HeartbeatConfig(name="backup", every_s=3600, grace_s=600), ctx(tmp_path))
    with Store.open(None) as store:
        [first] = hb.poll(store, clock)
        assert first.level == "INFO" and "waiting for the first beat" in first.message
        clock.sleep(4300)
        [gap] = hb.poll(store, clock)
        assert gap.level == "ERROR" and gap.value == 4300 and "no beat received" in gap.message


def test_file_mtime_heartbeat(tmp_path):
    beat_file = tmp_path / "worker.heartbeat"
    beat_file.touch()
    now = datetime.now(timezone.utc)
    os.utime(beat_file, (now.timestamp() - 20, now.timestamp() - 20))
    hb = HeartbeatSensor(HeartbeatConfig(name="worker", every_s=60, grace_s=10, file="worker.heartbeat"), ctx(tmp_path))
    with Store.open(None) as store:
        [ok] = hb.poll(store, FakeClock(now))
        assert ok.level == "INFO" and 19 <= ok.value <= 21
        [gap] = hb.poll(store, FakeClock(now + timedelta(seconds=100)))
        assert gap.level == "ERROR" and 119 <= gap.value <= 121
        beat_file.unlink()
        [missing] = hb.poll(store, FakeClock(now))
        assert missing.level == "ERROR" and "no such file" in missing.message


def test_selfheal_beat_command_records_a_beat(tmp_path):
    (tmp_path / "selfheal.yaml").write_text("sensors:\n  heartbeats:\n    - {name: worker, every_s: 60, service: queue}\n")
    env = dict(os.environ, SELFHEAL_HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "agent", "beat", "worker", "-m", "batch 7 done"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    with Store.open(tmp_path / "store.duckdb", readonly=True) as store:
        [sig] = query_signals(store, source="heartbeat")
        assert sig.service == "queue" and sig.attrs == {"check": "worker", "beat": True}
        assert sig.message == "heartbeat 'worker' beat: batch 7 done"
        assert get_state(store, "heartbeat:worker", "last_beat") is not None
    r = subprocess.run([sys.executable, "-m", "agent", "beat", "bad name"], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("selfheal: error: 'bad name'")


# ---------------------------------------------------------------------------- metrics


def metric(tmp_path: Path, **conf) -> MetricSensor:
    conf.setdefault("name", "queue_depth")
    return MetricSensor(MetricConfig(**conf), ctx(tmp_path))


def test_warmup_baseline_and_deviation_from_a_command(tmp_path):
    value_file = tmp_path / "depth"
    m = metric(tmp_path, command=["cat", "depth"], min_samples=5, band_k=4)
    clock = FakeClock(T0)
    seen = []
    with Store.open(None) as store:
        for v in (10, 12, 9, 11, 10, 10, 11, 250, 10):
            value_file.write_text(f"{v}\n")
            [sig] = m.poll(store, clock)
            seen.append(sig)
            clock.sleep(60)
        baseline = get_state(store, "metric:queue_depth", "baseline")
    levels = [s.level for s in seen]
    assert levels == ["INFO"] * 7 + ["ERROR", "INFO"]
    assert all(s.attrs.get("warmup") for s in seen[:5]) and not seen[5].attrs.get("warmup")
    dev = seen[7]
    assert dev.value == 250 and dev.attrs["metric"] == "queue_depth" and dev.attrs["deviation"] == "band"
    assert dev.attrs["baseline"] == 10 and "deviates above its baseline 10" in dev.message and "250" in dev.message
    assert baseline["count"] == 9 and len(baseline["window"]) == 9


def test_no_band_deviation_during_warmup_but_static_thresholds_apply(tmp_path):
    value_file = tmp_path / "v"
    m = metric(tmp_path, name="disk_pct", command=["cat", "v"], min_samples=10, max=90)
    with Store.open(None) as store:
        for v, expect in ((40, "INFO"), (41, "INFO"), (400 / 5, "INFO"), (95, "ERROR")):
            value_file.write_text(str(v))
            [sig] = m.poll(store, FakeClock(T0))
            assert sig.level == expect, (v, sig.message)
        assert sig.attrs["deviation"] == "max" and "above its threshold 90" in sig.message


def test_judge_directions_and_flat_baselines():
    conf = MetricConfig(name="x", host="load1", min_samples=3, direction="up")
    assert judge([5, 5, 5, 5], 1, conf).reason is None  # only rises count
    assert judge([5, 5, 5, 5], 9, conf).reason == "band"
    flat = MetricConfig(name="x", host="load1", min_samples=3)
    assert judge([100, 100, 100], 104, flat).reason is None  # within the 5% floor of a flat series
    assert judge([100, 100, 100], 106, flat).reason == "band"
    assert judge([0, 0, 0], 0, flat).reason is None


class Metrics:
    def __init__(self, text: str):
        self.text = text
        owner = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                body = owner.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"


PROM = """# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",handler="/cart"} 1200
http_requests_total{code="500",handler="/cart"} 7
http_requests_total{code="500",handler="/pay"} 3
# HELP worker_rss_mb Resident memory.
# TYPE worker_rss_mb gauge
worker_rss_mb{worker="1"} 812.5
worker_rss_mb{worker="2"} 1930
"""


def test_prometheus_endpoint_with_label_matchers(tmp_path):
    srv = Metrics(PROM)
    try:
        errors = metric(tmp_path, name="errors", prometheus={"url": srv.url, "metric": "http_requests_total",
                                                               "labels": {"code": "500"}})
        rss = metric(tmp_path, name="worker_rss_mb", prometheus={"url": srv.url, "metric": "worker_rss_mb",
                                                                 "aggregate": "max"}, max=1900)
        missing = metric(tmp_path, name="nope", prometheus={"url": srv.url, "metric": "nope_total"})
        with Store.open(None) as store:
            [e] = errors.poll(store, FakeClock(T0))
            [r] = rss.poll(store, FakeClock(T0))
            with pytest.raises(Exception, match=r"no sample nope_total\{\}"):
                missing.poll(store, FakeClock(T0))
    finally:
        srv.server.shutdown()
    assert e.value == 10 and e.level == "INFO" and e.attrs["metric"] == "errors"
    assert r.value == 1930 and r.level == "ERROR" and r.attrs["deviation"] == "max"


def test_select_samples_rejects_garbage():
    from agent.errors import SelfhealError
    from agent.sensors.config import PrometheusSource

    with pytest.raises(SelfhealError, match="cannot parse Prometheus text"):
        select_samples("this is { not prometheus\n", PrometheusSource(url="http://x", metric="a"))


def test_host_metrics_are_percentages(tmp_path):
    with Store.open(None) as store:
        for kind in ("cpu_pct", "memory_pct", "disk_pct", "inodes_pct", "swap_pct", "load1"):
            m = metric(tmp_path, name=kind, host=kind, path="/")
            [a] = m.poll(store, FakeClock(T0))
            [b] = m.poll(store, FakeClock(T0))
            assert a.attrs["metric"] == kind and a.source == "metric"
            assert 0 <= b.value <= (100 if kind != "load1" else 1000), (kind, b.value)


def test_metric_command_failures_are_clear(tmp_path):
    from agent.errors import SelfhealError

    with Store.open(None) as store:
        with pytest.raises(SelfhealError, match="printed no number"):
            metric(tmp_path, command=[sys.executable, "-c", "print('n/a')"]).poll(store, FakeClock(T0))
        with pytest.raises(SelfhealError, match="timed out after 0.3s"):
            metric(tmp_path, command=[sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.3).poll(
                store, FakeClock(T0))


def test_config_mistakes_are_one_line():
    from agent.errors import InputError

    for raw, expect in (
        ({"metrics": [{"name": "m"}]}, "sensors.metrics[0]: a metric needs exactly one of command, prometheus or host"),
        ({"metrics": [{"name": "m", "host": "gpu"}]}, "sensors.metrics[0].host"),
        ({"heartbeats": [{"name": "h"}]}, "sensors.heartbeats[0].every_s: required key is missing"),
        ({"health": [{"name": "h", "url": "localhost:80"}]}, "expected an http:// or https:// URL"),
        ({"logs": [{"name": "a", "paths": ["x"]}, {"name": "a", "paths": ["y"]}]}, "two logs entries are named 'a'"),
        ({"logs": [{"name": "a", "paths": ["x"], "service_pattern": "(x)"}]}, "named group (?P<service>"),
    ):
        with pytest.raises(InputError) as err:
            parse_sensors(raw, "selfheal.yaml")
        assert expect in str(err.value) and "\n" not in str(err.value)
