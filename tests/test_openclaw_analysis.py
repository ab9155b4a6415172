"""A disabled OpenClaw scheduler, taken from the sensors through triage, live analysis (real probes of a real
openclaw.json) and the gate to a dry-run fix of its config root."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agent.analysis import analyze_issue
from agent.clock import FakeClock
from agent.config import Config
from agent.remedy import plan_fix
from agent.sensors.runner import sense_once
from agent.store import Store
from agent.store.issues import get_issue, list_issues
from agent.store.signals import query_signals
from agent.triage import triage_pending
from test_openclaw_fixtures import OpenClawFixture

NIGHT = datetime(2026, 6, 1, 2, 0, tzinfo=timezone.utc)
SEVEN = datetime(2026, 6, 1, 7, 0, tzinfo=timezone.utc)


def watched(tmp_path, layout: str):
    oc = OpenClawFixture(tmp_path, layout)
    oc.add_job("0f3a9c1e", "morning-brief", {"kind": "cron", "expr": "0 7 * * *", "tz": "UTC"},
               created=NIGHT - timedelta(days=20), next_run=SEVEN)
    cfg = Config(openclaw=oc.section(), probes={"roots": [str(oc.state_dir)]},
                 remedy={"roots": [str(oc.state_dir)]})
    cfg.home = tmp_path / "home"
    cfg.home.mkdir()
    return oc, cfg, Store.open(cfg.store_path)


def heartbeats(oc, start: datetime, end: datetime) -> None:
    t = start
    while t < end:
        oc.log(t, "gateway/heartbeat", "INFO", "heartbeat skipped", {"reason": "quiet-hours"})
        t += timedelta(minutes=30)


def missed_issue(store, cfg, clock) -> str:
    triage_pending(store, cfg, clock)
    found = [i for i in list_issues(store) if i["service"] == "morning-brief"]
    assert len(found) == 1
    return found[0]["id"]


@pytest.mark.parametrize("layout", ["files", "sqlite"])
def test_cron_enabled_false_is_diagnosed_to_openclaw_json_with_a_dry_run_fix(tmp_path, layout):
    oc, cfg, store = watched(tmp_path, layout)
    clock = FakeClock(NIGHT)
    sense_once(store, cfg, clock)
    # someone turns the scheduler off; the gateway hot-reloads the cron keys and restarts its cron service
    oc.config["cron"]["enabled"] = False
    oc.write_config()
    edit = NIGHT + timedelta(hours=1, minutes=10)
    oc.log(edit, "gateway/reload", "INFO", "config change detected; evaluating reload (cron.enabled, meta.lastTouchedAt)")
    oc.log(edit + timedelta(milliseconds=38), "cron", "INFO", "cron: disabled", {"enabled": False})
    oc.log(edit + timedelta(milliseconds=41), "gateway/reload", "INFO", "config hot reload applied (cron.enabled)")
    heartbeats(oc, NIGHT + timedelta(minutes=15), SEVEN)
    clock.set(SEVEN + timedelta(minutes=6))
    sense_once(store, cfg, clock)
    issue = missed_issue(store, cfg, clock)
    before = oc.config_path.read_text()

    result = analyze_issue(store, cfg, issue, clock)
    assert not result.escalated, result.reason
    assert result.mode == "openclaw-scheduler-disabled" and result.gate.passed
    root = result.chain.root_node
    assert root.statement == "openclaw.json sets cron.enabled to false" and root.category == "config"
    # the root is what the live probe read from the real file
    probes = [s.message for s in query_signals(store, source="probe")]
    assert "openclaw.json: cron.enabled = false" in probes
    statements = [n.statement for n in result.chain.nodes]
    assert "the gateway started its cron service with cron disabled and armed no timer" in statements
    fix = result.chain.fix
    assert (fix.action, fix.params, fix.effect) == ("set_config", {"file": "openclaw.json", "key": "cron.enabled",
                                                                    "value": True}, "eliminate")
    assert get_issue(store, issue)["status"] == "fixing"

    plan = plan_fix(store, cfg, issue, clock)  # dry run: the change is planned, nothing is written
    assert plan.status == "planned" and plan.action == "set_config"
    assert '-    "enabled": false' in plan.text and '+    "enabled": true' in plan.text
    assert oc.config_path.read_text() == before


def test_openclaw_skip_cron_in_the_gateways_env_is_the_root_when_config_says_enabled(tmp_path):
    oc, cfg, store = watched(tmp_path, "sqlite")
    (oc.state_dir / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-test\nOPENCLAW_SKIP_CRON=1\n")
    clock = FakeClock(NIGHT)
    sense_once(store, cfg, clock)
    start = NIGHT + timedelta(hours=2)
    oc.log(start, "gateway", "INFO", "listening on ws://127.0.0.1:18789 (PID 50233)")
    oc.log(start + timedelta(milliseconds=90), "cron", "INFO", "cron: disabled", {"enabled": False})
    oc.log(start + timedelta(hours=1), "cron", "WARN", "cron: scheduler disabled; jobs will not run automatically",
           {"enabled": False, "action": "update", "storePath": str(oc.jobs_path)})
    heartbeats(oc, NIGHT + timedelta(minutes=15), SEVEN)
    clock.set(SEVEN + timedelta(minutes=6))
    sense_once(store, cfg, clock)
    issue = missed_issue(store, cfg, clock)
    result = analyze_issue(store, cfg, issue, clock)
    assert not result.escalated, result.reason
    root = result.chain.root_node
    assert root.category == "environment"
    assert root.statement == ".env sets OPENCLAW_SKIP_CRON to 1 in the gateway's environment"
    assert result.chain.fix.params == {"file": ".env", "key": "OPENCLAW_SKIP_CRON", "value": "0"}
    plan = plan_fix(store, cfg, issue, clock)
    assert "-OPENCLAW_SKIP_CRON=1" in plan.text and "+OPENCLAW_SKIP_CRON=0" in plan.text
    # the warning the gateway logged on the next cron action is an issue of its own, explained the same way
    warned = next(i for i in list_issues(store) if i["service"] == "openclaw")
    second = analyze_issue(store, cfg, warned["id"], clock)
    assert not second.escalated and second.chain.root_node.statement == root.statement


def test_without_the_config_fact_the_analysis_escalates(tmp_path):
    oc, cfg, store = watched(tmp_path, "files")
    clock = FakeClock(NIGHT)
    sense_once(store, cfg, clock)
    # the gateway is simply down: no log of a disabled scheduler, cron.enabled is true
    clock.set(SEVEN + timedelta(minutes=6))
    sense_once(store, cfg, clock)
    issue = missed_issue(store, cfg, clock)
    result = analyze_issue(store, cfg, issue, clock)
    assert result.escalated and "missing evidence" in result.reason
    assert get_issue(store, issue)["status"] == "needs-human"
