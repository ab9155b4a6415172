"""`selfheal sense / sensors / init` end to end, and failure isolation: a broken sensor never stops the others."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from agent.clock import FakeClock
from agent.config import Config, load_config
from agent.sensors.base import Sensor
from agent.sensors.config import parse_sensors
from agent.sensors.runner import SensorRunner, sense_once
from agent.store import Store
from agent.store.signals import query_signals
from agent.store.state import get_state

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "selfheal.yaml"
NOW = datetime(2026, 11, 30, 3, 12, tzinfo=timezone.utc)


def selfheal(home: Path, *args: str, prefix: tuple[str, ...] = (), timeout: float = 90) -> subprocess.CompletedProcess:
    env = dict(os.environ, SELFHEAL_HOME=str(home), COLUMNS="200")
    return subprocess.run([*prefix, sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the demo server does
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture()
def demo_server():
    if not port_free(18765):
        pytest.skip("port 18765 (examples/selfheal.yaml) is in use")
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "sensors-demo" / "server.py")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("listening on 127.0.0.1:18765")
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


def test_sense_with_the_example_config(tmp_path, demo_server):
    r = selfheal(tmp_path, "beat", "worker", "--config", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    r = selfheal(tmp_path, "sense", "--config", str(EXAMPLE), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    by = {s["sensor"]: s for s in out["sensors"]}
    assert set(by) == {"log:checkout-log", "cron:nightly-report", "health:checkout-http", "health:checkout-tcp",
                       "health:checkout-log-readable", "heartbeat:worker", "metric:queue_depth",
                       "metric:checkout_errors_total", "metric:disk_root_pct"}
    assert out["warnings"] == [] and not any(s["failed"] for s in out["sensors"])
    assert by["log:checkout-log"]["signals"] == 5 and by["log:checkout-log"]["levels"] == {"INFO": 3, "WARNING": 1, "ERROR": 1}
    for name in ("health:checkout-http", "health:checkout-tcp", "health:checkout-log-readable", "heartbeat:worker"):
        assert by[name]["levels"] == {"INFO": 1}, by[name]
    assert by["metric:queue_depth"]["last"]["value"] == 7
    assert by["metric:checkout_errors_total"]["last"]["value"] == 3
    assert by["health:checkout-http"]["last"]["host"] == "example-host"

    # The table, and a second round: the log lines are not stored again.
    r = selfheal(tmp_path, "sense", "--config", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert "log:checkout-log" in r.stdout and "health:checkout-http" in r.stdout and "-> 200 in" in r.stdout
    with Store.open(tmp_path / "store.duckdb", readonly=True) as store:
        logs = query_signals(store, source="log")
    assert len(logs) == 5
    trace = [s for s in logs if s.level == "ERROR"][0]
    assert trace.message.splitlines()[-1] == "TimeoutError: database did not answer in 5s"

    r = selfheal(tmp_path, "sensors", "--config", str(EXAMPLE), "--json")
    rows = {row["sensor"]: row for row in json.loads(r.stdout)}
    assert rows["health:checkout-http"]["health"] == "ok" and rows["metric:queue_depth"]["last_value"] == 7
    assert rows["log:checkout-log"]["interval_s"] == 10 and rows["cron:nightly-report"]["last_run"]


def test_sense_with_nothing_running_reports_and_goes_on(tmp_path):
    if not port_free(18765):
        pytest.skip("port 18765 is in use")
    r = selfheal(tmp_path, "sense", "--config", str(EXAMPLE), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    by = {s["sensor"]: s for s in out["sensors"]}
    assert by["health:checkout-http"]["levels"] == {"ERROR": 1}
    assert "refused" in by["health:checkout-http"]["last"]["message"]
    assert by["metric:checkout_errors_total"]["failed"]
    assert any("metric:checkout_errors_total: http://127.0.0.1:18765/metrics: connection to 127.0.0.1 refused" == w
               for w in out["warnings"])
    assert by["log:checkout-log"]["signals"] == 5 and by["metric:queue_depth"]["signals"] == 1
    r = selfheal(tmp_path, "sensors", "--config", str(EXAMPLE))
    assert "broken" in r.stdout and "failing" in r.stdout


class Exploding(Sensor):
    kind = "log"

    def poll(self, store, clock):
        from agent.store.state import set_state

        set_state(store, self.id, "cursor", 99)  # rolled back with the failed round
        raise RuntimeError("disk on fire\nsecond line")


def test_broken_sensors_never_stop_the_others(tmp_path):
    (tmp_path / "good.log").write_text("2026-11-30T03:00:00Z ERROR real failure\n")
    cfg = Config(sensors={
        "logs": [
            {"name": "missing", "paths": ["nope/*.log"], "start_at": "beginning"},
            {"name": "good", "paths": ["good.log"], "start_at": "beginning"},
        ],
        "health": [{"name": "dns", "url": "http://nonexistent.invalid/", "timeout_s": 3}],
        "metrics": [
            {"name": "hung", "command": [sys.executable, "-c", "import time; time.sleep(30)"], "timeout_s": 0.5},
            {"name": "words", "command": [sys.executable, "-c", "print('ok')"]},
        ],
    })
    cfg.home, cfg.source = tmp_path / "home", tmp_path / "selfheal.yaml"
    runner = SensorRunner(cfg)
    from agent.sensors.base import SensorContext
    from agent.sensors.config import LogSensorConfig

    runner.sensors.insert(0, Exploding(LogSensorConfig(name="exploding", paths=["x"]), SensorContext(tmp_path, "h")))
    started = time.monotonic()
    with Store.open(None) as store:
        report = runner.sense(store, FakeClock(NOW))
        stored = query_signals(store)
        assert get_state(store, "log:exploding", "cursor") is None
        assert get_state(store, "log:exploding", "status")["failed"] is True
    assert time.monotonic() - started < 15
    by = {r.sensor: r for r in report.sensors}
    assert by["log:exploding"].failed and by["log:exploding"].warnings == ["log:exploding: RuntimeError: disk on fire"]
    assert by["log:missing"].warnings == [f"log:missing: {tmp_path / 'nope/*.log'}: no file matches"]
    assert by["metric:hung"].failed and "timed out after 0.5s" in by["metric:hung"].warnings[0]
    assert by["metric:words"].failed and "printed no number" in by["metric:words"].warnings[0]
    assert by["log:good"].stored == 1 and by["health:dns"].levels == {"ERROR": 1}
    assert sorted(s.source for s in stored) == ["health", "log"]
    assert all("\n" not in w for w in report.all_warnings())


def test_permission_denied_is_a_warning_for_a_real_unprivileged_reader():
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        # Root reads anything: drop the capabilities that bypass file permissions, so the kernel really refuses.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        caps = "-dac_override,-dac_read_search"
        prefix = (setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}")
    work = Path(tempfile.mkdtemp(prefix="selfheal-perm-"))
    try:
        (work / "secret.log").write_text("ERROR you cannot see me\n")
        os.chmod(work / "secret.log", 0o000)
        (work / "open.log").write_text("ERROR visible failure\n")
        os.chmod(work / "open.log", 0o644)
        (work / "selfheal.yaml").write_text(
            "sensors:\n  logs:\n"
            "    - {name: secret, paths: [secret.log], start_at: beginning}\n"
            "    - {name: open, paths: [open.log], start_at: beginning}\n")
        r = selfheal(work / "home", "--config", str(work / "selfheal.yaml"), "sense", "--json", prefix=prefix)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        by = {s["sensor"]: s for s in out["sensors"]}
        assert by["log:secret"]["warnings"] == [f"log:secret: {work / 'secret.log'}: permission denied"]
        assert by["log:open"]["stored"] == 1 and by["log:open"]["last"]["message"] == "ERROR visible failure"
        r = selfheal(work / "home", "--config", str(work / "selfheal.yaml"), "sense", prefix=prefix)
        assert f"selfheal: warning: log:secret: {work / 'secret.log'}: permission denied" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_init_writes_a_valid_starter_and_refuses_to_overwrite(tmp_path):
    r = selfheal(tmp_path, "init")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "selfheal.yaml"
    text = path.read_text()
    cfg = load_config(tmp_path)
    sc = parse_sensors(cfg.sensors)
    assert sc.metrics and sc.logs
    for kind in ("logs:", "metrics:", "health:", "heartbeats:", "cron:", "openclaw:"):
        assert kind in text
    for example in ("url:", "tcp:", "command:", "every_s:", "schedule:", "prometheus:"):
        assert example in text  # one example of each kind, commented where it would need something running
    import glob

    # Log files it found on this machine, or (none found) one commented-up example to edit.
    assert all(glob.glob(p) for entry in sc.logs for p in entry.paths) or [e.name for e in sc.logs] == ["app"]
    r = selfheal(tmp_path, "init")
    assert r.returncode == 2 and "already exists (use --force" in r.stderr
    r = selfheal(tmp_path, "init", "--force")
    assert r.returncode == 0
    r = selfheal(tmp_path, "sensors", "--json")
    rows = json.loads(r.stdout)
    assert {row["kind"] for row in rows} >= {"metric"} and all(row["health"] == "never-run" for row in rows)
    r = selfheal(tmp_path, "sense")
    assert r.returncode == 0, r.stderr


def test_init_includes_what_openclaw_detection_finds(monkeypatch, tmp_path):
    from agent.sensors import starter

    fake = types.ModuleType("agent.sensors.openclaw")
    fake.detect = lambda: {"home": "/opt/openclaw", "gateway": "http://127.0.0.1:18789"}
    monkeypatch.setitem(sys.modules, "agent.sensors.openclaw", fake)
    text = starter.render(log_files=[], openclaw=starter.openclaw_block())
    data = yaml.safe_load(text)
    assert data["openclaw"] == {"home": "/opt/openclaw", "gateway": "http://127.0.0.1:18789"}
    assert parse_sensors(data["sensors"]).logs[0].name == "app"


def test_sense_only_and_unknown_names(tmp_path):
    r = selfheal(tmp_path, "sense", "--config", str(EXAMPLE), "--only", "queue_depth", "--json")
    assert r.returncode == 0, r.stderr
    assert [s["sensor"] for s in json.loads(r.stdout)["sensors"]] == ["metric:queue_depth"]
    r = selfheal(tmp_path, "sense", "--config", str(EXAMPLE), "--only", "nope")
    assert r.returncode == 2 and "no configured sensor named 'nope'" in r.stderr


def test_bad_sensors_config_is_one_line(tmp_path):
    (tmp_path / "selfheal.yaml").write_text("sensors:\n  logs:\n    - name: app\n      paths: [a.log]\n      start_at: middle\n")
    r = selfheal(tmp_path, "sense")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "sensors.logs[0].start_at" in r.stderr


def test_spooled_beats_are_taken_in_by_the_next_round(tmp_path):
    from agent.sensors import spool
    from agent.sensors.heartbeat import beat_signal, beat_state

    cfg = Config(sensors={"heartbeats": [{"name": "worker", "every_s": 60}]})
    cfg.home, cfg.source = tmp_path, tmp_path / "selfheal.yaml"
    sig = beat_signal("worker", NOW)
    spool.write(cfg, [sig], [beat_state(sig)])
    (tmp_path / "spool" / "0-corrupt.json").write_text("{not json")
    with Store.open(None) as store:
        report = sense_once(store, cfg, FakeClock(NOW))
        assert report.spooled == 1 and len(report.warnings) == 1 and "kept as 0-corrupt.bad" in report.warnings[0]
        assert report.sensors[0].last.level == "INFO" and "on time" in report.sensors[0].last.message
    assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == ["0-corrupt.bad"]
