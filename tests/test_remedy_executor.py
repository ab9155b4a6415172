"""plan_fix / apply_fix / rollback_fix / run_mitigation against a real DuckDB store and real files."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.config import ServiceConfig
from agent.remedy import apply_fix, plan_fix, rollback_fix, run_mitigation
from agent.remedy.base import ApplyError, RefusedError
from agent.store import Store
from agent.store import fixes as fix_store
from agent.store import issues as issue_store
from test_remedy_support import DATA, RECORDER, T0, recorded_argv, seed_issue, write_config


@pytest.fixture
def world(tmp_path):
    cfg = write_config(tmp_path, {
        "mitigations": {"restart-now": RECORDER + [str(tmp_path / "mitigations.jsonl"), "restart"],
                        "broken": [sys.executable, "-c", "import sys; sys.exit(4)"]},
    })
    shutil.copy(DATA / "checkout.ini", tmp_path / "etc" / "checkout.ini")
    store = Store.open(cfg.store_path)
    yield cfg, store, tmp_path, FakeClock(T0 + timedelta(minutes=5))
    store.close()


def statuses(store, fix_id):
    return [e["status"] for e in fix_store.fix_events(store, fix_id)]


def test_dry_run_records_the_plan_shows_the_diff_and_changes_nothing(world):
    cfg, store, tmp, clock = world
    target = tmp / "etc" / "checkout.ini"
    original = target.read_bytes()
    issue_id, chain_id = seed_issue(store)
    plan = plan_fix(store, cfg, issue_id, clock)
    assert plan.fix_id == "FIX-0001" and plan.chain_id == chain_id and plan.kind == "eliminate"
    assert "-image_cache_max_items = 0\n+image_cache_max_items = 500\n" in plan.text
    assert plan.postcondition.match == r"image_cache_max_items\s*=\s*500\b"
    assert target.read_bytes() == original
    row = fix_store.get_fix(store, plan.fix_id)
    assert row["status"] == "planned" and row["plan"] == plan.text and row["issue_id"] == issue_id
    again = plan_fix(store, cfg, issue_id, clock)
    assert again.fix_id == plan.fix_id and again.reused
    assert len(fix_store.fixes(store)) == 1
    assert not (tmp / "home" / "backups").exists()


def test_apply_backs_up_first_changes_the_file_and_moves_the_issue_to_verifying(world):
    cfg, store, tmp, clock = world
    target = tmp / "etc" / "checkout.ini"
    original = target.read_bytes()
    issue_id, chain_id = seed_issue(store)
    plan = plan_fix(store, cfg, issue_id, clock)
    result = apply_fix(store, cfg, plan.fix_id, clock)
    assert result.status == "applied"
    assert "image_cache_max_items = 500" in target.read_text().splitlines()
    assert statuses(store, plan.fix_id) == ["planned", "applying", "applied"]
    backup = fix_store.latest_backup(store, plan.fix_id)
    (entry,) = backup["files"]
    assert entry["path"] == str(target) and entry["sha256"] == hashlib.sha256(original).hexdigest()
    saved = Path(entry["saved"])
    assert saved.parent == tmp / "home" / "backups" / plan.fix_id and saved.read_bytes() == original
    manifest = json.loads((saved.parent / "manifest.json").read_text())
    assert manifest["files"][0]["sha256"] == entry["sha256"]
    issue = issue_store.get_issue(store, issue_id)
    assert issue["status"] == "verifying"
    last = issue_store.events(store, issue_id)[-1]
    assert (last["event"], last["fix_id"], last["chain_id"]) == ("fixed", plan.fix_id, chain_id)
    assert apply_fix(store, cfg, plan.fix_id, clock).already
    assert statuses(store, plan.fix_id) == ["planned", "applying", "applied"]
    assert plan_fix(store, cfg, issue_id, clock).fix_id == plan.fix_id


def test_rollback_restores_byte_for_byte_and_reopens_the_issue(world):
    cfg, store, tmp, clock = world
    target = tmp / "etc" / "checkout.ini"
    target.write_bytes(target.read_bytes().replace(b"\n", b"\r\n").rstrip(b"\r\n"))  # CRLF, no final newline
    original = target.read_bytes()
    issue_id, _ = seed_issue(store)
    fix_id = plan_fix(store, cfg, issue_id, clock).fix_id
    apply_fix(store, cfg, fix_id, clock)
    assert b"image_cache_max_items = 500\r\n" in target.read_bytes()
    done = rollback_fix(store, cfg, fix_id, clock)
    assert target.read_bytes() == original
    assert done.notes == [f"restored checkout.ini ({len(original)} bytes, sha256 "
                          f"{hashlib.sha256(original).hexdigest()[:12]})"]
    assert fix_store.get_fix(store, fix_id)["status"] == "rolled-back"
    assert issue_store.get_issue(store, issue_id)["status"] == "open"
    with pytest.raises(RefusedError, match="already rolled back"):
        rollback_fix(store, cfg, fix_id, clock)


def test_rollback_of_a_created_file_removes_it(world):
    cfg, store, tmp, clock = world
    fix = {"action": "add_logrotate", "params": {"name": "checkout", "paths": [f"{tmp}/etc/logs/*.log"]},
           "postcondition": {"source": "probe", "match": "logs/\\*\\.log"}}
    issue_id, _ = seed_issue(store, fix)
    fix_id = plan_fix(store, cfg, issue_id, clock).fix_id
    apply_fix(store, cfg, fix_id, clock)
    rule = tmp / "etc" / "logrotate.d" / "checkout"
    assert rule.exists()
    rollback_fix(store, cfg, fix_id, clock)
    assert not rule.exists() and not rule.parent.exists()


def test_plan_refuses_without_a_gate_passed_chain(world):
    cfg, store, tmp, clock = world
    issue_id, _ = seed_issue(store, passed=False)
    with pytest.raises(RefusedError, match="no chain that passed the gate"):
        plan_fix(store, cfg, issue_id, clock)
    assert fix_store.fixes(store) == []


def test_mitigations_are_never_applied_as_a_resolution(world):
    cfg, store, tmp, clock = world
    issue_id, _ = seed_issue(store, {"action": "restart_service", "effect": "mitigate",
                                     "params": {"service": "checkout-api"}})
    with pytest.raises(RefusedError, match="mitigations are never applied"):
        plan_fix(store, cfg, issue_id, clock)
    assert fix_store.fixes(store) == []
    issue = issue_store.get_issue(store, issue_id)
    assert issue["status"] == "needs-human" and issue_store.events(store, issue_id)[-1]["event"] == "fix-refused"


@pytest.mark.parametrize("fix,message", [
    ({"action": "exec_shell", "params": {"cmd": "rm -rf /"}}, "unknown action 'exec_shell'"),
    ({"action": "set_config", "params": {"file": "/etc/passwd", "key": "root", "value": "x"}},
     "outside the remedy roots"),
    ({"action": "set_config", "params": {"file": "../selfheal.yaml", "key": "mode", "value": "auto"}},
     "'..' is not allowed"),
    ({"action": "set_config", "params": {"file": "checkout.ini"}}, "missing required param 'key'"),
])
def test_unsafe_or_invalid_fixes_are_refused_and_need_a_human(world, fix, message):
    cfg, store, tmp, clock = world
    issue_id, _ = seed_issue(store, {**fix, "postcondition": {"source": "probe", "match": "x"}})
    with pytest.raises(RefusedError, match=message):
        plan_fix(store, cfg, issue_id, clock)
    assert fix_store.fixes(store) == []
    assert issue_store.get_issue(store, issue_id)["status"] == "needs-human"


def test_apply_refuses_when_the_target_changed_since_the_plan(world):
    cfg, store, tmp, clock = world
    issue_id, _ = seed_issue(store)
    fix_id = plan_fix(store, cfg, issue_id, clock).fix_id
    target = tmp / "etc" / "checkout.ini"
    target.write_text(target.read_text().replace("image_cache_ttl_s = 3600", "image_cache_ttl_s = 10"))
    # The edit sits inside the diff's context, so the change shown is no longer the change that would be made.
    edited = target.read_bytes()
    with pytest.raises(RefusedError, match="no longer what was planned"):
        apply_fix(store, cfg, fix_id, clock)
    assert target.read_bytes() == edited
    assert fix_store.get_fix(store, fix_id)["status"] == "superseded"
    fresh = plan_fix(store, cfg, issue_id, clock)
    assert fresh.fix_id != fix_id and "image_cache_ttl_s = 10" in fresh.text
    apply_fix(store, cfg, fresh.fix_id, clock)
    assert "image_cache_max_items = 500" in target.read_text()


def test_a_failed_apply_restores_the_file_and_needs_a_human(world):
    cfg, store, tmp, clock = world
    cfg.remedy.services = {"checkout-api": ServiceConfig(restart=[sys.executable, "-c", "import sys; sys.exit(5)"],
                                                         config_files=["etc/checkout.ini"])}
    target = tmp / "etc" / "checkout.ini"
    original = target.read_bytes()
    issue_id, _ = seed_issue(store)
    fix_id = plan_fix(store, cfg, issue_id, clock).fix_id
    with pytest.raises(ApplyError, match="exit 5.*restored"):
        apply_fix(store, cfg, fix_id, clock)
    assert target.read_bytes() == original
    assert statuses(store, fix_id) == ["planned", "applying", "failed"]
    assert issue_store.get_issue(store, issue_id)["status"] == "needs-human"


def test_an_apply_interrupted_after_the_backup_is_finished_exactly_once(world, monkeypatch):
    cfg, store, tmp, clock = world
    target = tmp / "etc" / "checkout.ini"
    original = target.read_bytes()
    issue_id, _ = seed_issue(store)
    fix_id = plan_fix(store, cfg, issue_id, clock).fix_id
    real = fix_store.add_fix_event

    def crash_before_applied(store_, fid, status, **kw):
        if status == "applied":
            raise KeyboardInterrupt  # the process dies between changing the file and recording it
        return real(store_, fid, status, **kw)

    monkeypatch.setattr(fix_store, "add_fix_event", crash_before_applied)
    with pytest.raises(KeyboardInterrupt):
        apply_fix(store, cfg, fix_id, clock)
    monkeypatch.setattr(fix_store, "add_fix_event", real)
    assert fix_store.get_fix(store, fix_id)["status"] == "applying"
    assert b"= 500" in target.read_bytes()
    apply_fix(store, cfg, fix_id, clock)
    assert statuses(store, fix_id) == ["planned", "applying", "applying", "applied"]
    assert fix_store.latest_backup(store, fix_id)["files"][0]["sha256"] == hashlib.sha256(original).hexdigest()
    rollback_fix(store, cfg, fix_id, clock)
    assert target.read_bytes() == original


def test_run_mitigation_runs_the_configured_argv_and_the_issue_stays_open(world):
    cfg, store, tmp, clock = world
    issue_id, _ = seed_issue(store)
    before = issue_store.get_issue(store, issue_id)["status"]
    done = run_mitigation(store, cfg, issue_id, "restart-now", clock)
    assert done.status == "applied"
    assert recorded_argv(tmp / "mitigations.jsonl") == [["restart"]]
    row = fix_store.get_fix(store, done.fix_id)
    assert row["kind"] == "mitigation" and row["params"]["name"] == "restart-now"
    assert issue_store.get_issue(store, issue_id)["status"] == before
    assert issue_store.events(store, issue_id)[-1]["event"] == "mitigated"
    with pytest.raises(RefusedError, match="mitigation"):
        rollback_fix(store, cfg, done.fix_id, clock)
    with pytest.raises(RefusedError, match="no mitigation 'reboot' is configured.*broken, restart-now"):
        run_mitigation(store, cfg, issue_id, "reboot", clock)
    failed = run_mitigation(store, cfg, issue_id, "broken", clock)
    assert failed.status == "failed" and "exit 4" in failed.detail
    plan = plan_fix(store, cfg, issue_id, clock)
    assert plan.kind == "eliminate" and plan.fix_id not in (done.fix_id, failed.fix_id)
