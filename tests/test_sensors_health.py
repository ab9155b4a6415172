"""Health checks against a real HTTP server and TCP listener on 127.0.0.1, and real commands."""

from __future__ import annotations

import socket
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.config import Config
from agent.sensors.base import SensorContext
from agent.sensors.config import HealthConfig
from agent.sensors.health import HealthSensor
from agent.sensors.runner import sense_once
from agent.store import Store
from agent.store.signals import query_signals

NOW = datetime(2026, 11, 30, 3, 12, tzinfo=timezone.utc)


class Service:
    """A tiny HTTP service whose behaviour the test changes while it runs."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"ok\n"
        self.delay = 0.0
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with service.lock:
                    service.inflight += 1
                    service.max_inflight = max(service.max_inflight, service.inflight)
                time.sleep(service.delay)
                with service.lock:
                    service.inflight -= 1
                self.send_response(service.status)
                self.send_header("Content-Length", str(len(service.body)))
                self.end_headers()
                self.wfile.write(service.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def service():
    svc = Service()
    yield svc
    svc.stop()


def check(**conf) -> tuple[str, str, float | None, dict]:
    conf.setdefault("name", "web")
    sensor = HealthSensor(HealthConfig(**conf), SensorContext(Path(__file__).parent, "web-1"))
    with Store.open(None) as store:
        [sig] = sensor.poll(store, FakeClock(NOW))
    assert sig.source == "health" and sig.attrs["check"] == conf["name"] and sig.ts == NOW
    return sig.level, sig.message, sig.value, sig.attrs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_up_is_info_with_latency(service):
    level, message, value, attrs = check(url=service.url, body_match=r"^ok$", service="checkout-api")
    assert level == "INFO" and attrs["status"] == 200 and attrs["url"] == service.url
    assert 0 <= value < 2 and "-> 200 in" in message


def test_http_wrong_status_is_error_naming_the_status(service):
    service.status = 503
    level, message, _, attrs = check(url=service.url)
    assert level == "ERROR" and "-> 503" in message and "expected 2xx/3xx" in message and attrs["error"] == "status"
    level, _, _, _ = check(url=service.url, expect_status=["5xx"])
    assert level == "INFO"


def test_http_body_mismatch(service):
    service.body = b"degraded: db down\n"
    level, message, _, attrs = check(url=service.url, body_match=r"^ok")
    assert level == "ERROR" and "body does not match /^ok/" in message and attrs["error"] == "body"


def test_http_slow_and_timeout(service):
    service.delay = 0.4
    level, message, value, attrs = check(url=service.url, max_latency_s=0.1, timeout_s=3)
    assert level == "ERROR" and "slower than 0.1s" in message and attrs["error"] == "slow" and value >= 0.4
    level, message, value, attrs = check(url=service.url, timeout_s=0.15)
    assert level == "ERROR" and "timed out after 0.15s" in message and attrs["error"] == "timeout"
    assert 0.1 <= value < 2


def test_http_down_is_connection_refused(service):
    url = service.url
    service.stop()
    level, message, _, attrs = check(url=url)
    assert level == "ERROR" and "refused" in message and attrs["error"] == "refused"


def test_dns_failure_is_an_error_signal_with_a_clear_message():
    level, message, _, attrs = check(url="http://nonexistent.invalid/health", timeout_s=3)
    assert level == "ERROR" and "DNS lookup of nonexistent.invalid failed" in message and attrs["error"] == "dns"
    level, message, _, attrs = check(name="db", tcp="nonexistent.invalid:5432", timeout_s=3)
    assert level == "ERROR" and "DNS lookup of nonexistent.invalid failed" in message


def test_tcp_listener_up_and_down():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        level, message, value, attrs = check(name="db", tcp=f"127.0.0.1:{port}")
        assert level == "INFO" and "connected in" in message and value >= 0 and attrs["kind"] == "tcp"
    finally:
        listener.close()
    level, message, _, attrs = check(name="db", tcp=f"127.0.0.1:{port}")
    assert level == "ERROR" and "refused" in message


def test_command_check_exit_code_and_hung_command():
    level, message, _, attrs = check(name="ok", command=[sys.executable, "-c", "print('all good')"])
    assert level == "INFO" and message.endswith("all good") and attrs["exit_code"] == 0
    level, message, _, attrs = check(name="bad", command=[sys.executable, "-c", "import sys; print('disk ro', file=sys.stderr); sys.exit(2)"])
    assert level == "ERROR" and "exit code 2 (expected 0): disk ro" in message and attrs["exit_code"] == 2
    started = time.monotonic()
    level, message, value, attrs = check(name="hung", command=[sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=0.3)
    assert level == "ERROR" and "timed out after 0.3s" in message and attrs["timed_out"] is True
    assert time.monotonic() - started < 10
    level, message, _, _ = check(name="gone", command=["no-such-check-xyz"])
    assert level == "ERROR" and "command not found: no-such-check-xyz" in message


def test_checks_run_in_parallel_through_the_runner(tmp_path, service):
    service.delay = 0.5
    cfg = Config(sensors={"health": [{"name": f"c{i}", "url": service.url, "timeout_s": 5} for i in range(4)]})
    cfg.home, cfg.source = tmp_path, tmp_path / "selfheal.yaml"
    with Store.open(None) as store:
        report = sense_once(store, cfg, FakeClock(NOW))
        stored = query_signals(store, source="health")
    assert service.max_inflight >= 2  # the checks were in flight at the same time, not one after another
    assert [r.sensor for r in report.sensors] == ["health:c0", "health:c1", "health:c2", "health:c3"]
    assert len(stored) == 4 and all(s.level == "INFO" for s in stored)
