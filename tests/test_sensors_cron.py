"""Cron: `selfheal cron` runs real jobs (exit codes pass through, timeouts kill), and missed runs are signals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path


from agent.clock import FakeClock
from agent.config import Config
from agent.models import parse_ts
from agent.sensors.cron import CronSensor, job_signal
from agent.sensors.base import SensorContext
from agent.sensors.config import CronJobConfig
from agent.sensors.proc import ProcResult
from agent.store import Store
from agent.store.signals import insert_signals, query_signals
from agent.store.state import get_state

SELFHEAL = [sys.executable, "-m", "agent"]
ROOT = Path(__file__).resolve().parent.parent


def run_cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, SELFHEAL_HOME=str(home))
    return subprocess.run([*SELFHEAL, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a parent that does not reap)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def cron_signals(home: Path) -> list:
    with Store.open(home / "store.duckdb", readonly=True) as store:
        return query_signals(store, source="cron")


def test_success_is_info_and_output_passes_through(tmp_path):
    r = run_cli(tmp_path, "cron", "--name", "report", "--", sys.executable, "-c",
                "import sys; print('rows: 120'); print('done', file=sys.stderr)")
    assert r.returncode == 0, r.stderr
    assert "rows: 120" in r.stdout and "done" in r.stderr  # the job's output is passed through
    [sig] = cron_signals(tmp_path)
    assert sig.level == "INFO" and sig.service == "report" and sig.attrs["check"] == "report"
    assert sig.attrs["exit_code"] == 0 and sig.value == sig.attrs["duration_s"] >= 0
    assert sig.attrs["stdout_tail"] == ["rows: 120"] and sig.attrs["stderr_tail"] == ["done"]
    assert parse_ts(sig.attrs["started_at"]) <= sig.ts


def test_failure_exit_code_is_passed_through_with_the_output_tail(tmp_path):
    script = "import sys\nfor i in range(30): print(f'step {i}')\nprint('pg_dump: error: connection refused', file=sys.stderr)\nsys.exit(3)"
    r = run_cli(tmp_path, "cron", "--name", "backup", "--", sys.executable, "-c", script)
    assert r.returncode == 3
    assert "selfheal: warning: cron job 'backup': exit code 3" in r.stderr
    [sig] = cron_signals(tmp_path)
    assert sig.level == "ERROR" and sig.attrs["exit_code"] == 3
    assert sig.message.splitlines()[0].startswith("cron job 'backup' failed: exit code 3")
    assert sig.message.splitlines()[-1] == "pg_dump: error: connection refused"
    assert sig.attrs["stdout_tail"][-1] == "step 29" and len(sig.attrs["stdout_tail"]) == 10


def test_kill_by_signal_is_128_plus_n(tmp_path):
    r = run_cli(tmp_path, "cron", "--name", "selfkill", "--", sys.executable, "-c",
                "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert r.returncode == 128 + 15
    [sig] = cron_signals(tmp_path)
    assert sig.level == "ERROR" and sig.attrs["signal"] == "SIGTERM" and sig.attrs["exit_code"] == 143
    assert "killed by SIGTERM" in sig.message


def test_timeout_kills_the_whole_job(tmp_path):
    marker = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time\n"
              f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              f"open({str(marker)!r}, 'w').write(str(p.pid))\n"
              f"time.sleep(60)")
    started = time.monotonic()
    r = run_cli(tmp_path, "cron", "--name", "hung", "--timeout", "1", "--", sys.executable, "-c", script)
    assert r.returncode == 124
    assert time.monotonic() - started < 30
    [sig] = cron_signals(tmp_path)
    assert sig.level == "ERROR" and sig.attrs["timed_out"] is True and sig.attrs["timeout_s"] == 1
    assert "timed out after 1s" in sig.message
    child = int(marker.read_text())
    assert not alive(child)  # the grandchild went with it


def test_command_not_found_is_127_and_a_signal(tmp_path):
    r = run_cli(tmp_path, "cron", "--name", "typo", "--", "no-such-program-xyz", "--flag")
    assert r.returncode == 127
    [sig] = cron_signals(tmp_path)
    assert sig.level == "ERROR" and "command not found: no-such-program-xyz" in sig.message


def test_configured_timeout_and_service_apply_and_busy_store_spools(tmp_path):
    (tmp_path / "selfheal.yaml").write_text(
        "sensors:\n  cron:\n    - name: slow\n      service: reports\n      timeout_s: 0.5\n      kill_grace_s: 0.5\n")
    with Store.open(tmp_path / "store.duckdb") as busy:  # another writer (the daemon) holds the store
        r = run_cli(tmp_path, "cron", "--name", "slow", "--", sys.executable, "-c", "import time; time.sleep(30)")
        assert r.returncode == 124
        assert list((tmp_path / "spool").glob("*.json"))
        from agent.sensors import spool

        cfg = Config()
        cfg.home = tmp_path
        stored, warnings = spool.ingest(busy, cfg)
        assert stored == 1 and warnings == [] and not list((tmp_path / "spool").glob("*.json"))
        [sig] = query_signals(busy, source="cron")
        assert sig.service == "reports" and sig.attrs["timed_out"] is True
        assert get_state(busy, "cron:slow", "last_run")["exit_code"] == 124


def test_sensors_lists_the_last_run_of_a_configured_job(tmp_path):
    (tmp_path / "selfheal.yaml").write_text("sensors:\n  cron:\n    - {name: backup, schedule: '0 3 * * *'}\n")
    assert run_cli(tmp_path, "cron", "--name", "backup", "--", sys.executable, "-c", "raise SystemExit(3)").returncode == 3
    import json

    [row] = json.loads(run_cli(tmp_path, "sensors", "--json").stdout)
    assert row["sensor"] == "cron:backup" and row["health"] == "failing" and "exit code 3" in row["last_message"]


def test_broken_config_still_runs_the_job(tmp_path):
    (tmp_path / "selfheal.yaml").write_text("sensors: [not, a, mapping\n")
    r = run_cli(tmp_path, "cron", "--name", "j", "--", sys.executable, "-c", "raise SystemExit(5)")
    assert r.returncode == 5
    assert "invalid YAML" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------- missed runs

T0 = datetime(2026, 11, 30, 2, 58, tzinfo=timezone.utc)


def sensor(**kw) -> CronSensor:
    conf = CronJobConfig(name="nightly", schedule="*/5 * * * *", grace_s=60, timezone="UTC", **kw)
    return CronSensor(conf, SensorContext(Path("."), "web-1"))


def record_run(store: Store, started: datetime, code: int = 0) -> None:
    res = ProcResult(["backup"], code, 12.0)
    insert_signals(store, [job_signal("nightly", res, started, started + timedelta(seconds=12), host="web-1")])


def test_missed_slot_is_one_error_signal_once():
    clock = FakeClock(T0)
    s = sensor()
    with Store.open(None) as store:
        assert s.poll(store, clock) == []  # starts watching now
        record_run(store, datetime(2026, 11, 30, 3, 0, 3, tzinfo=timezone.utc))  # the 03:00 run happened
        clock.set(datetime(2026, 11, 30, 3, 10, 30, tzinfo=timezone.utc))  # 03:05 is past its grace, 03:10 is not
        missed = s.poll(store, clock)
        assert [m.attrs["scheduled_at"] for m in missed] == ["2026-11-30T03:05:00Z"]
        m = missed[0]
        assert m.level == "ERROR" and m.source == "cron" and m.attrs["check"] == "nightly" and m.attrs["missed"]
        assert m.ts == datetime(2026, 11, 30, 3, 6, tzinfo=timezone.utc)
        assert "did not run at its scheduled time 2026-11-30T03:05:00Z" in m.message
        assert s.poll(store, clock) == []  # once per slot
        record_run(store, datetime(2026, 11, 30, 3, 10, 20, tzinfo=timezone.utc))
        clock.set(datetime(2026, 11, 30, 3, 20, 30, tzinfo=timezone.utc))
        assert [m.attrs["scheduled_at"] for m in s.poll(store, clock)] == ["2026-11-30T03:15:00Z"]


def test_missed_run_ids_depend_only_on_job_and_slot():
    runs = []
    for _ in range(2):  # two independent stores, fresh sensor objects each round
        with Store.open(None) as store:
            sensor().poll(store, FakeClock(T0))
            runs.append(sensor().poll(store, FakeClock(datetime(2026, 11, 30, 3, 7, tzinfo=timezone.utc))))
    assert len(runs[0]) == 2 and [m.id for m in runs[0]] == [m.id for m in runs[1]]


def test_schedule_in_a_local_zone():
    s = CronSensor(CronJobConfig(name="berlin", schedule="0 3 * * *", timezone="Europe/Berlin"),
                   SensorContext(Path("."), "h"))
    slots = s.slots_between(datetime(2026, 11, 29, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert [t.hour for t in slots] == [2, 2]  # 03:00 in Berlin (UTC+1 in winter)


def test_long_outage_is_summed_up():
    clock = FakeClock(T0)
    s = CronSensor(CronJobConfig(name="every-minute", schedule="* * * * *", grace_s=0), SensorContext(Path("."), "h"))
    with Store.open(None) as store:
        s.poll(store, clock)
        clock.sleep(3 * 3600)
        out = s.poll(store, clock)
    assert len(out) == 101
    assert out[0].attrs["missed_count"] == 180 - 100 and "also missed 80 earlier" in out[0].message
