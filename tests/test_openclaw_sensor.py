"""The OpenClaw sensors on installations written the way OpenClaw writes them, in both storage layouts,
through the real runner, store and triage."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from agent.clock import FakeClock
from agent.config import Config, load_config
from agent.errors import InputError
from agent.sensors.base import SensorContext
from agent.sensors.openclaw import build_sensors, detect, parse_config
from agent.sensors.openclaw_files import loads_json5
from agent.sensors.openclaw_gateway import parse_gateway_line
from agent.sensors.runner import SensorRunner, sense_once
from agent.store import Store
from agent.store.issues import list_issues
from agent.store.signals import query_signals
from agent.triage import triage_pending
from test_openclaw_fixtures import OpenClawFixture, T0

LAYOUTS = ["files", "split", "sqlite"]
HOUR = timedelta(hours=1)
RATE_LIMIT = ("429 rate_limit_error: This request would exceed the rate limit for your organization "
              "(f8a1c2d3-4b5e-6f70-8192-a3b4c5d6e7f8) of 50,000 input tokens per minute")


@pytest.fixture
def env(tmp_path):
    """An OpenClaw installation plus a selfheal config and store watching it; call env(layout)."""
    made = []

    def make(layout: str = "files", **section):
        oc = OpenClawFixture(tmp_path / layout, layout)
        cfg = Config(openclaw=oc.section(**section))
        cfg.home = tmp_path / layout / "home"
        cfg.home.mkdir(parents=True)
        store = Store.open(cfg.store_path)
        made.append(store)
        return oc, cfg, store

    yield make
    for s in made:
        s.close()


def signals(store, **kw):
    return query_signals(store, **kw)


def by_sensor(report, name):
    return next(r for r in report.sensors if r.name == name)


# --------------------------------------------------------------------------- cron runs, both layouts


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_job_failing_three_runs_in_a_row_opens_one_issue(env, layout):
    oc, cfg, store = env(layout)
    oc.add_job("7f3c9a", "daily-digest", {"kind": "cron", "expr": "0 * * * *", "tz": "UTC"}, created=T0,
               next_run=T0 + HOUR)
    oc.add_job("b21e44", "inbox-sweep", {"kind": "every", "everyMs": 3_600_000}, created=T0, next_run=T0 + HOUR)
    clock = FakeClock(T0)
    sense_once(store, cfg, clock)  # starts watching: what is in the store now is history
    for i in range(3):
        start = T0 + (i + 1) * HOUR
        oc.finish_run("7f3c9a", started=start, duration_s=41.2, status="error", error=RATE_LIMIT,
                      error_reason="rate_limit", delivery_status="not-delivered",
                      delivery_error="run failed before output", next_run=start + HOUR)
        oc.finish_run("b21e44", started=start, duration_s=3.5, status="ok", summary="Inbox is empty.",
                      delivery_status="not-requested", next_run=start + HOUR)
        clock.set(start + timedelta(minutes=2))
        sense_once(store, cfg, clock)

    runs = signals(store, source="cron", service="daily-digest")
    failed = [s for s in runs if s.level == "ERROR"]
    assert len(failed) == 3
    first = failed[0]
    assert "failed: 429 rate_limit_error" in first.message and "delivery not-delivered: run failed" in first.message
    assert first.value == 41.2 and first.attrs["status"] == "error" and first.attrs["error_reason"] == "rate_limit"
    assert first.attrs["signature"] == "cron-provider-rate-limit"
    assert [s.attrs["consecutive_errors"] for s in failed] == [1, 2, 3]
    assert first.ts == T0 + HOUR + timedelta(seconds=41.2)  # when OpenClaw logged the finished run
    ok = signals(store, source="cron", service="inbox-sweep")
    assert [s.level for s in ok] == ["INFO"] * 3 and ok[0].value == 3.5
    # consecutiveErrors rising shows before anyone reads the runs
    streak = [s for s in runs if s.level == "WARNING"]
    assert [s.attrs["consecutive_errors"] for s in streak] == [2, 3]

    results = {r.signal_id: r for r in triage_pending(store, cfg, clock)}
    verdicts = [results[s.id].verdict for s in failed]
    assert verdicts == ["new", "ongoing", "ongoing"]
    issues = [i for i in list_issues(store) if i["service"] == "daily-digest"]
    assert len(issues) == 1 and issues[0]["id"] == results[failed[0].id].issue
    assert all(results[s.id].verdict == "info" for s in ok + streak)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_restart_and_pruning_neither_repeat_nor_lose_a_run(env, layout):
    oc, cfg, store = env(layout, start_at="beginning")
    oc.add_job("j1", "report", {"kind": "every", "everyMs": 600_000}, created=T0, next_run=T0)
    clock = FakeClock(T0)
    for i in range(4):
        oc.finish_run("j1", started=T0 + i * timedelta(minutes=10), duration_s=2, next_run=T0 + (i + 1) * timedelta(minutes=10))
    clock.set(T0 + timedelta(minutes=35))
    sense_once(store, cfg, clock)
    assert len(signals(store, source="cron", service="report")) == 4
    # a new process: new sensors, the same store
    oc.finish_run("j1", started=T0 + timedelta(minutes=40), duration_s=2, next_run=T0 + timedelta(minutes=50))
    if layout != "sqlite":
        oc.prune_run_log("j1", keep_lines=2)  # OpenClaw rewrites the file (new inode) when it grows too big
    oc.finish_run("j1", started=T0 + timedelta(minutes=50), duration_s=2, next_run=T0 + timedelta(minutes=60))
    clock.set(T0 + timedelta(minutes=55))
    report = SensorRunner(cfg).sense(store, clock)
    assert by_sensor(report, "openclaw-cron").signals == 2
    report = SensorRunner(cfg).sense(store, clock)
    assert by_sensor(report, "openclaw-cron").signals == 0
    runs = signals(store, source="cron", service="report")
    assert len(runs) == 6 and len({s.id for s in runs}) == 6


def test_a_run_keeps_its_id_when_the_migration_moves_it_into_sqlite(tmp_path):
    files = OpenClawFixture(tmp_path / "a", "files")
    db = OpenClawFixture(tmp_path / "b", "sqlite")
    for oc in (files, db):
        oc.add_job("j1", "report", {"kind": "every", "everyMs": 600_000}, created=T0, next_run=T0)
        oc.finish_run("j1", started=T0, duration_s=2, status="error", error="boom")
    ids = []
    for oc in (files, db):
        cfg = Config(openclaw=oc.section(start_at="beginning"))
        cfg.home = oc.root / "home"
        cfg.home.mkdir()
        store = Store.open(cfg.store_path)
        sense_once(store, cfg, FakeClock(T0 + timedelta(minutes=1)))
        ids.append([s.id for s in signals(store, source="cron", service="report")])
        store.close()
    assert ids[0] == ids[1] and len(ids[0]) == 1


def test_the_state_database_is_opened_read_only(env):
    oc, cfg, store = env("sqlite", start_at="beginning")
    oc.add_job("j1", "report", {"kind": "every", "everyMs": 600_000}, created=T0, next_run=T0)
    oc.finish_run("j1", started=T0, duration_s=1)
    before = hashlib.sha256(oc.db_path.read_bytes()).hexdigest()
    os.chmod(oc.db_path, 0o444)  # a writer would fail here; a reader does not care
    try:
        sense_once(store, cfg, FakeClock(T0 + timedelta(minutes=1)))
    finally:
        os.chmod(oc.db_path, 0o644)
    assert hashlib.sha256(oc.db_path.read_bytes()).hexdigest() == before
    assert len(signals(store, source="cron", service="report")) == 1
    assert sorted(p.name for p in oc.db_path.parent.iterdir()) == ["openclaw.sqlite"]


# --------------------------------------------------------------------------- missed runs


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_slot_that_passed_without_a_run_is_one_missed_run_per_slot(env, layout):
    oc, cfg, store = env(layout)
    oc.add_job("c0ffee", "morning-brief", {"kind": "cron", "expr": "0 7 * * *", "tz": "UTC"}, created=T0,
               next_run=datetime(2026, 6, 1, 7, 0, tzinfo=timezone.utc))
    oc.add_job("off", "paused-job", {"kind": "every", "everyMs": 60_000}, enabled=False, created=T0, next_run=T0)
    clock = FakeClock(datetime(2026, 6, 1, 7, 4, tzinfo=timezone.utc))
    sense_once(store, cfg, clock)
    assert not [s for s in signals(store, source="cron") if s.level == "ERROR"]  # still within the grace
    clock.set(datetime(2026, 6, 1, 7, 6, tzinfo=timezone.utc))
    sense_once(store, cfg, clock)
    sense_once(store, cfg, clock)
    missed = [s for s in signals(store, source="cron") if s.attrs.get("missed")]
    assert len(missed) == 1 and missed[0].service == "morning-brief" and missed[0].level == "ERROR"
    assert "did not run at its scheduled time 2026-06-01T07:00:00Z" in missed[0].message
    assert missed[0].ts == datetime(2026, 6, 1, 7, 5, tzinfo=timezone.utc)
    # the gateway stays down: the next day's slot is another missed run (the schedule's own next slot)
    clock.set(datetime(2026, 6, 2, 7, 30, tzinfo=timezone.utc))
    sense_once(store, cfg, clock)
    missed = [s for s in signals(store, source="cron") if s.attrs.get("missed")]
    assert [s.attrs["scheduled_at"] for s in missed] == ["2026-06-01T07:00:00Z", "2026-06-02T07:00:00Z"]
    # it runs late, then on time: no more missed runs
    oc.finish_run("c0ffee", started=datetime(2026, 6, 2, 7, 40, tzinfo=timezone.utc), duration_s=30,
                  next_run=datetime(2026, 6, 3, 7, 0, tzinfo=timezone.utc))
    clock.set(datetime(2026, 6, 3, 7, 1, tzinfo=timezone.utc))
    sense_once(store, cfg, clock)
    assert len([s for s in signals(store, source="cron") if s.attrs.get("missed")]) == 2
    results = {r.signal_id: r for r in triage_pending(store, cfg, clock)}
    assert [results[s.id].verdict for s in missed] == ["new", "ongoing"]


# --------------------------------------------------------------------------- the gateway log


def test_a_gateway_record_becomes_level_subsystem_and_message():
    line = ('{"0":"{\\"subsystem\\":\\"gateway/heartbeat\\"}","1":{"reason":"quiet-hours","agentId":"main"},'
            '"2":"heartbeat skipped","_meta":{"runtime":"node","name":"{\\"subsystem\\":\\"gateway/heartbeat\\"}",'
            '"date":"2026-06-01T03:12:09.123Z","logLevelId":3,"logLevelName":"INFO"},"time":"2026-06-01T03:12:09.123Z"}')
    rec = parse_gateway_line(line)
    assert rec.subsystem == "gateway/heartbeat" and rec.level == "INFO"
    assert rec.message == "heartbeat skipped reason=quiet-hours agentId=main"
    assert rec.time == datetime(2026, 6, 1, 3, 12, 9, 123000, tzinfo=timezone.utc)
    assert parse_gateway_line("plain text, not a record") is None


def test_quiet_hours_skips_stay_info_and_documented_failures_open_issues(env):
    oc, cfg, store = env("files", start_at="beginning")
    day = T0
    oc.log(day, "gateway", "INFO", "listening on ws://127.0.0.1:18789 (PID 48121)")
    for i in range(3):
        oc.log(day + timedelta(minutes=30 * i), "gateway/heartbeat", "INFO", "heartbeat skipped",
               {"reason": "quiet-hours"})
    oc.log(day + timedelta(minutes=91), "gateway/heartbeat", "WARN", "heartbeat skipped",
           {"reason": "requests-in-flight"})
    oc.log(day + timedelta(minutes=92), "cron", "WARN", "cron: scheduler disabled; jobs will not run automatically",
           {"enabled": False, "action": "add", "storePath": str(oc.jobs_path)})
    oc.log(day + timedelta(minutes=93), "cron", "ERROR", "cron: timer tick failed",
           {"err": "Error: SQLITE_BUSY: database is locked"})
    clock = FakeClock(day + timedelta(minutes=95))
    sense_once(store, cfg, clock)
    logs = signals(store, source="log")
    assert len(logs) == 7 and {s.service for s in logs} == {"openclaw"}
    skips = [s for s in logs if "heartbeat skipped" in s.message]
    assert [s.level for s in skips] == ["INFO"] * 4
    assert all(s.attrs["subsystem"] == "gateway/heartbeat" and s.attrs["signature"] == "heartbeat-benign-skip"
               for s in skips)
    disabled = next(s for s in logs if "scheduler disabled" in s.message)
    assert disabled.level == "ERROR" and disabled.attrs["signature"] == "cron-scheduler-disabled"
    results = {r.signal_id: r for r in triage_pending(store, cfg, clock)}
    assert {results[s.id].verdict for s in skips} == {"info"}
    assert results[disabled.id].verdict == "new"
    tick = next(s for s in logs if "timer tick failed" in s.message)
    assert results[tick.id].verdict == "new" and results[tick.id].issue != results[disabled.id].issue


def test_log_rotation_mid_read_loses_nothing_and_repeats_nothing(env):
    oc, cfg, store = env("files", start_at="beginning")
    t = T0
    active = oc.log_path("2026-06-01")
    written = []

    def log(i, **kw):
        written.append(f"record {i}")
        oc.log(t + timedelta(seconds=i), "gateway", "INFO", f"record {i}", **kw)

    for i in range(5):
        log(i)
    oc.log(t + timedelta(seconds=5), "gateway", "INFO", "record 5", newline=False)  # written half-way
    written.append("record 5")
    clock = FakeClock(t + timedelta(seconds=6))
    sense_once(store, cfg, clock)
    assert [s.message for s in signals(store, source="log")] == written[:5]
    with open(active, "a", encoding="utf-8") as fh:
        fh.write("\n")
    for i in range(6, 9):
        log(i)
    # size rotation: the active file becomes .1 (and .1 would become .2), a fresh active file is started
    os.replace(active, oc.log_dir / "openclaw-2026-06-01.1.log")
    for i in range(9, 12):
        log(i)
    sense_once(store, cfg, clock)
    # a new day: a new dated file; the process restarts (new sensors) before reading it
    for i in range(12, 14):
        written.append(f"record {i}")
        oc.log(t + timedelta(days=1, seconds=i), "gateway", "INFO", f"record {i}")
    SensorRunner(cfg).sense(store, clock)
    SensorRunner(cfg).sense(store, clock)
    got = [s.message for s in sorted(signals(store, source="log"), key=lambda s: s.ts)]
    assert got == written


# --------------------------------------------------------------------------- heartbeats


def test_a_stopped_heartbeat_is_a_gap_that_becomes_an_issue(env):
    oc, cfg, store = env("files", start_at="beginning")
    oc.config["agents"]["defaults"]["heartbeat"]["every"] = "10m"
    oc.write_config()
    clock = FakeClock(T0)
    for i in range(4):
        oc.log(T0 + timedelta(minutes=10 * i), "gateway/heartbeat", "INFO", "heartbeat sent",
               {"to": "telegram:-1001234567890", "durationMs": 5120})
        clock.set(T0 + timedelta(minutes=10 * i, seconds=30))
        sense_once(store, cfg, clock)
    beats = signals(store, source="heartbeat")
    assert [s.level for s in beats] == ["INFO"] * 4 and beats[-1].attrs["check"] == "openclaw-heartbeat"
    # the gateway stops heartbeating (the last record at T0+30m): 10m interval + 10m grace
    for minutes in (45, 51, 56, 61, 66):
        clock.set(T0 + timedelta(minutes=minutes))
        sense_once(store, cfg, clock)
    beats = signals(store, source="heartbeat")
    gaps = [s for s in beats if s.level == "ERROR"]
    assert len(gaps) == 4 and gaps[0].value == pytest.approx(21 * 60)
    assert "no heartbeat activity" in gaps[0].message and gaps[0].attrs["last_beat"] == "2026-06-01T06:30:00Z"
    results = [r for r in triage_pending(store, cfg, clock) if r.signal_id in {g.id for g in gaps}]
    assert [r.verdict for r in results] == ["noise", "noise", "new", "ongoing"]
    # it beats again: on time
    oc.log(T0 + timedelta(minutes=67), "gateway/heartbeat", "INFO", "heartbeat sent", {"to": "telegram:-100123"})
    clock.set(T0 + timedelta(minutes=68))
    sense_once(store, cfg, clock)
    assert signals(store, source="heartbeat")[-1].level == "INFO"


def test_heartbeats_disabled_in_openclaw_json_are_not_a_gap(env):
    oc, cfg, store = env("files")
    oc.config["agents"]["defaults"]["heartbeat"]["every"] = "0m"
    oc.write_config()
    sense_once(store, cfg, FakeClock(T0))
    sense_once(store, cfg, FakeClock(T0 + timedelta(days=1)))
    assert signals(store, source="heartbeat") == []


# --------------------------------------------------------------------------- the 2026.6 migration


def test_a_migration_that_left_jobs_behind_is_an_error_once(env):
    oc, cfg, store = env("sqlite")
    oc.add_job("a", "morning-brief", {"kind": "cron", "expr": "0 7 * * *"}, created=T0, next_run=T0 + 10 * HOUR)
    legacy = {"version": 1, "jobs": [
        {"id": "a", "name": "morning-brief", "enabled": True, "schedule": {"kind": "cron", "expr": "0 7 * * *"},
         "state": {}},
        {"id": "b", "name": "weekly-report", "enabled": True, "schedule": {"kind": "cron", "expr": "0 9 * * 1"},
         "state": {}},
        {"id": "c", "name": "backup-notes", "enabled": True, "schedule": {"kind": "every", "everyMs": 86400000},
         "state": {}}]}
    (oc.state_dir / "cron" / "jobs.json.migrated").write_text(json.dumps(legacy, indent=2))
    with sqlite3.connect(oc.db_path) as conn:
        conn.execute("INSERT INTO migration_runs VALUES ('run-1', ?, ?, 'completed', '{}')",
                     (int(T0.timestamp() * 1000), int(T0.timestamp() * 1000) + 900))
        conn.execute("INSERT INTO migration_sources VALUES ('cron-jobs', 'legacy-json', ?, 'cron_jobs', NULL, 2113,"
                     " 1, 'run-1', 'completed', ?, 1, '{}')",
                     (str(oc.jobs_path), int(T0.timestamp() * 1000) + 500))
    clock = FakeClock(T0 + HOUR)
    sense_once(store, cfg, clock)
    sense_once(store, cfg, clock)
    found = signals(store, source="cron")
    lost = [s for s in found if s.level == "ERROR"]
    assert len(lost) == 1
    assert lost[0].message == ("openclaw cron store: state/openclaw.sqlite holds 1 jobs but cron/jobs.json.migrated "
                               "lists 3; not in SQLite: 'weekly-report', 'backup-notes'")
    imported = [s for s in found if s.message.startswith("openclaw migration: imported")]
    assert imported[0].message == "openclaw migration: imported cron/jobs.json into cron_jobs: 1 records, status completed"
    assert imported[0].ts == T0 + timedelta(milliseconds=500)
    oc.add_job("b", "weekly-report", {"kind": "cron", "expr": "0 9 * * 1"}, created=T0, next_run=T0 + 60 * HOUR)
    oc.add_job("c", "backup-notes", {"kind": "every", "everyMs": 86400000}, created=T0, next_run=T0 + 30 * HOUR)
    sense_once(store, cfg, clock)
    assert signals(store, source="cron")[-1].message.startswith(
        "openclaw cron store: state/openclaw.sqlite holds every job")


# --------------------------------------------------------------------------- config, detection, init


def test_openclaw_config_mistakes_are_one_line():
    with pytest.raises(InputError, match=r"openclaw\.cron\.grace_s: Input should be greater than or equal to 0"):
        parse_config({"cron": {"grace_s": -1}}, "selfheal.yaml")
    with pytest.raises(InputError, match=r"selfheal.yaml: openclaw\.heartbeet: unknown key"):
        parse_config({"heartbeet": {}}, "selfheal.yaml")


def test_a_broken_section_is_a_runner_warning_not_a_crash(tmp_path):
    cfg = Config(openclaw={"cron": {"grace_s": "soon"}})
    cfg.home = tmp_path
    runner = SensorRunner(cfg)
    assert runner.sensors == [] and "openclaw.cron.grace_s" in runner.build_warnings[0]


def test_no_section_no_sensors_and_openclaw_json5_is_read(tmp_path):
    assert build_sensors(Config(), SensorContext(tmp_path, "h")) == []
    text = ("// OpenClaw config\n{\n  agents: { defaults: { heartbeat: { every: '15m', }, }, },\n"
            "  /* block */ logging: { file: \"/var/log/openclaw/gateway.log\" },\n}\n")
    data = loads_json5(text)
    assert data["agents"]["defaults"]["heartbeat"]["every"] == "15m"
    assert data["logging"]["file"] == "/var/log/openclaw/gateway.log"


def test_init_detects_an_installation_and_adds_the_section(tmp_path, monkeypatch):
    from agent.sensors.starter import write_starter

    oc = OpenClawFixture(tmp_path, "files")
    oc.config["logging"]["file"] = str(oc.log_dir / "gateway.log")
    oc.write_config()
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(oc.state_dir))
    found = detect()
    assert found["state_dir"] == str(oc.state_dir) and found["log"] == str(oc.log_dir / "gateway.log")
    target = tmp_path / "home" / "selfheal.yaml"
    write_starter(target)
    cfg = load_config(tmp_path / "home", target)
    assert yaml.safe_load(target.read_text())["openclaw"]["state_dir"] == str(oc.state_dir)
    names = [s.id for s in build_sensors(cfg, SensorContext.from_config(cfg, "h"))]
    assert names == ["cron:openclaw-cron", "log:openclaw-gateway", "heartbeat:openclaw-heartbeat"]
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(tmp_path / "nothing-here"))
    assert detect() is None


def test_a_gateway_down_long_before_watching_starts_is_one_missed_run_then_one_per_slot(env):
    oc, cfg, store = env("sqlite")
    oc.add_job("h1", "hourly-sync", {"kind": "every", "everyMs": 3_600_000}, created=T0, next_run=T0)
    clock = FakeClock(T0 + timedelta(days=30, minutes=20))
    sense_once(store, cfg, clock)
    missed = [s for s in signals(store, source="cron") if s.attrs.get("missed")]
    assert [s.attrs["scheduled_at"] for s in missed] == ["2026-07-01T06:00:00Z"]
    clock.set(T0 + timedelta(days=30, hours=1, minutes=20))
    sense_once(store, cfg, clock)
    missed = [s for s in signals(store, source="cron") if s.attrs.get("missed")]
    assert [s.attrs["scheduled_at"] for s in missed] == ["2026-07-01T06:00:00Z", "2026-07-01T07:00:00Z"]


def test_runs_in_flight_together_are_reported_once(env):
    oc, cfg, store = env("files")
    for jid in ("a", "b", "c"):
        oc.add_job(jid, f"job-{jid}", {"kind": "cron", "expr": "0 7 * * *", "tz": "UTC"}, created=T0,
                   next_run=T0 + HOUR)
    clock = FakeClock(T0)
    sense_once(store, cfg, clock)
    for i, jid in enumerate(("a", "b", "c")):
        oc.finish_run(jid, started=T0 + HOUR + timedelta(seconds=i), duration_s=30)
    clock.set(T0 + HOUR + timedelta(minutes=1))
    sense_once(store, cfg, clock)
    sense_once(store, cfg, clock)
    together = [s for s in signals(store, source="cron") if "in flight" in s.message]
    assert len(together) == 1 and together[0].value == 3.0
    assert together[0].message == ("openclaw cron: 3 runs in flight at once at 2026-06-01T07:00:02Z: "
                                   "'job-a', 'job-b', 'job-c'")
