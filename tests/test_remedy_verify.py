"""Verification: postcondition probe, the symptom's own check, the watch window; resolve or roll back."""

from __future__ import annotations

import shutil
import threading
import urllib.error
import urllib.request
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.models import Signal
from agent.remedy import apply_fix, plan_fix, verify_fix
from agent.remedy.base import RefusedError
from agent.remedy.editors import ini
from agent.store import Store
from agent.store import chains as chain_store
from agent.store import fixes as fix_store
from agent.store import issues as issue_store
from agent.store.signals import insert_signals, query_signals
from test_remedy_support import DATA, SET_CACHE, T0, seed_issue, write_config

WINDOW = 300


@pytest.fixture
def world(tmp_path):
    cfg = write_config(tmp_path, {"watch_window_s": WINDOW})
    shutil.copy(DATA / "checkout.ini", tmp_path / "etc" / "checkout.ini")
    store = Store.open(cfg.store_path)
    clock = FakeClock(T0 + timedelta(minutes=5))
    yield cfg, store, tmp_path, clock
    store.close()


def applied(world, fix=None):
    cfg, store, tmp, clock = world
    issue_id, chain_id = seed_issue(store, fix)
    fix_id = plan_fix(store, cfg, issue_id, clock).fix_id
    apply_fix(store, cfg, fix_id, clock)
    return issue_id, chain_id, fix_id


def steps(store, fix_id):
    return [(v["step"], v["passed"]) for v in fix_store.verifications(store, fix_id=fix_id)]


def test_a_fix_that_holds_resolves_the_issue_and_archives_the_chain(world):
    cfg, store, tmp, clock = world
    issue_id, chain_id, fix_id = applied(world)
    clock.sleep(60)
    pending = verify_fix(store, cfg, fix_id, clock)
    assert pending.status == "pending" and not pending.passed
    assert [s.passed for s in pending.steps] == [True, True, None]
    assert issue_store.get_issue(store, issue_id)["status"] == "verifying"
    assert fix_store.get_fix(store, fix_id)["status"] == "applied"
    assert steps(store, fix_id) == [("postcondition", True), ("symptom", True)]
    verify_fix(store, cfg, fix_id, clock)
    assert steps(store, fix_id) == [("postcondition", True), ("symptom", True)], "a pending re-check records nothing new"

    clock.sleep(WINDOW)
    result = verify_fix(store, cfg, fix_id, clock)
    assert result.status == "verified" and result.passed and result.resolved_at == clock.now()
    assert steps(store, fix_id) == [("postcondition", True), ("symptom", True), ("watch", True)]
    issue = issue_store.get_issue(store, issue_id)
    assert issue["status"] == "resolved" and issue["resolved_at"] == clock.now()
    last = issue_store.events(store, issue_id)[-1]
    assert (last["event"], last["fix_id"], last["chain_id"]) == ("verified", fix_id, chain_id)
    (archived,) = chain_store.archive_rows(store, issue_id)
    assert archived["chain_id"] == chain_id and archived["outcome"] == "resolved"
    assert archived["resolved_at"] == clock.now()
    assert fix_store.get_fix(store, fix_id)["status"] == "verified"
    probes = query_signals(store, source="probe")
    assert probes and all(p.message == "checkout.ini: image_cache_max_items = 500" for p in probes)
    assert probes[0].service == "checkout-api" and probes[0].attrs["fix"] == fix_id
    again = verify_fix(store, cfg, fix_id, clock)
    assert again.status == "verified" and len(chain_store.archive_rows(store, issue_id)) == 1
    assert "image_cache_max_items = 500" in (tmp / "etc" / "checkout.ini").read_text()


def test_a_postcondition_that_does_not_hold_rolls_back_and_reopens(world):
    cfg, store, tmp, clock = world
    original = (tmp / "etc" / "checkout.ini").read_bytes()
    # The chain claims the fix makes the value 5000, but its action sets 500: the postcondition cannot hold.
    fix = {**SET_CACHE, "postcondition": {"source": "probe", "match": r"image_cache_max_items\s*=\s*5000\b"}}
    issue_id, chain_id, fix_id = applied(world, fix)
    result = verify_fix(store, cfg, fix_id, clock)
    assert result.status == "failed" and result.rolled_back
    assert result.steps[0].passed is False and "image_cache_max_items = 500" in result.steps[0].detail
    assert (tmp / "etc" / "checkout.ini").read_bytes() == original
    assert [e["status"] for e in fix_store.fix_events(store, fix_id)][-2:] == ["rolled-back", "failed"]
    (archived,) = chain_store.archive_rows(store, issue_id)
    assert (archived["chain_id"], archived["outcome"], archived["resolved_at"]) == (chain_id, "did-not-hold", None)
    issue = issue_store.get_issue(store, issue_id)
    assert issue["status"] == "open" and issue["resolved_at"] is None
    last = issue_store.events(store, issue_id)[-1]
    assert last["event"] == "fix-did-not-hold" and last["fix_id"] == fix_id
    assert last["attrs"]["failed_steps"][0]["step"] == "postcondition"
    assert last["attrs"]["probe"][0] == "checkout.ini: image_cache_max_items = 500"
    assert ("postcondition", False) in steps(store, fix_id)
    with pytest.raises(RefusedError, match="did not hold"):
        plan_fix(store, cfg, issue_id, clock)


def test_a_file_reverted_behind_the_fix_is_caught_by_the_probe(world):
    cfg, store, tmp, clock = world
    issue_id, _, fix_id = applied(world)
    target = tmp / "etc" / "checkout.ini"
    target.write_text(ini.set_value(target.read_text(), "image_cache_max_items", "0"))
    clock.sleep(WINDOW)
    result = verify_fix(store, cfg, fix_id, clock)
    assert result.status == "failed"
    assert "image_cache_max_items = 0" in result.steps[0].detail
    assert issue_store.get_issue(store, issue_id)["status"] == "open"


def test_the_symptom_recurring_in_the_watch_window_fails_at_once(world):
    cfg, store, tmp, clock = world
    original = (tmp / "etc" / "checkout.ini").read_bytes()
    issue_id, chain_id, fix_id = applied(world)
    again = Signal(id="s-again", ts=clock.now() + timedelta(seconds=30), source="health", service="checkout-api",
                   level="ERROR", message="GET http://127.0.0.1:8080/health -> 503")
    insert_signals(store, [again])
    issue_store.add_occurrence(store, issue_id, again.id, again.ts, "ongoing")
    clock.sleep(45)
    result = verify_fix(store, cfg, fix_id, clock)
    assert result.status == "failed"
    assert [s.step for s in result.steps if s.passed is False] == ["symptom", "watch"]
    assert result.evidence["recurrences"][0]["signal"] == "s-again"
    assert (tmp / "etc" / "checkout.ini").read_bytes() == original
    assert chain_store.archive_rows(store, issue_id)[0]["outcome"] == "did-not-hold"
    last = issue_store.events(store, issue_id)[-1]
    assert last["event"] == "fix-did-not-hold" and last["attrs"]["recurrences"][0]["message"].endswith("503")


def test_a_successful_check_of_the_same_kind_is_not_a_recurrence(world):
    cfg, store, tmp, clock = world
    issue_id, _, fix_id = applied(world)
    insert_signals(store, [Signal(id="s-ok", ts=clock.now() + timedelta(seconds=10), source="health",
                                  service="checkout-api", level="INFO", message="GET /health -> 200")])
    clock.sleep(WINDOW)
    assert verify_fix(store, cfg, fix_id, clock).status == "verified"


def test_symptom_check_results_and_the_issue_it_is_given(world):
    cfg, store, tmp, clock = world
    issue_id, _, fix_id = applied(world)
    seen = []

    def still_failing(issue):
        seen.append(issue["id"])
        return [Signal(ts=clock.now(), source="health", service="checkout-api", level="ERROR",
                       message="GET http://127.0.0.1:8080/health -> 503")]

    result = verify_fix(store, cfg, fix_id, clock, symptom_check=still_failing, watch=False)
    assert seen == [issue_id]
    assert result.status == "failed" and "still fails" in result.steps[1].detail
    assert issue_store.get_issue(store, issue_id)["status"] == "open"


def test_watch_false_with_a_passing_check_verifies_at_once(world):
    cfg, store, tmp, clock = world
    issue_id, _, fix_id = applied(world)
    result = verify_fix(store, cfg, fix_id, clock, symptom_check=lambda issue: (True, "health is 200 again"),
                        watch=False)
    assert result.status == "verified"
    assert [(s.step, s.passed, s.detail) for s in result.steps][1:] == [
        ("symptom", True, "health is 200 again"), ("watch", True, "watch window skipped")]


def test_an_injected_probe_runner_reads_the_state(world):
    cfg, store, tmp, clock = world
    issue_id, _, fix_id = applied(world)
    specs = []

    class Runner:
        def run(self, spec):
            specs.append(spec)
            return [Signal(ts=clock.now(), source="probe", message="checkout.ini: image_cache_max_items = 0")]

    result = verify_fix(store, cfg, fix_id, clock, probe_runner=Runner(), watch=False)
    assert specs[0]["action"] == "set_config" and specs[0]["observe"]["source"] == "probe"
    assert result.status == "failed"


def test_only_applied_fixes_are_verified(world):
    cfg, store, tmp, clock = world
    issue_id, _ = seed_issue(store)
    fix_id = plan_fix(store, cfg, issue_id, clock).fix_id
    with pytest.raises(RefusedError, match="only an applied fix"):
        verify_fix(store, cfg, fix_id, clock)


class _Health(BaseHTTPRequestHandler):
    config: Path

    def do_GET(self):  # noqa: N802 (http.server's naming)
        _, value = ini.get_value(self.config.read_text(), "image_cache_max_items")
        code = 503 if value == "0" else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"unavailable")

    def log_message(self, *args):
        return None


def test_end_to_end_a_real_health_check_passes_after_the_fix(world):
    cfg, store, tmp, clock = world
    handler = type("Health", (_Health,), {"config": tmp / "etc" / "checkout.ini"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/health"

    def health_check(issue):
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                code = resp.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        return [Signal(ts=clock.now(), source="health", service=issue["service"],
                       level="INFO" if code == 200 else "ERROR", message=f"GET {url} -> {code}")]

    try:
        issue_id, chain_id = seed_issue(store)
        assert health_check({"service": "checkout-api"})[0].level == "ERROR"
        fix_id = plan_fix(store, cfg, issue_id, clock).fix_id
        apply_fix(store, cfg, fix_id, clock)
        assert verify_fix(store, cfg, fix_id, clock, symptom_check=health_check).status == "pending"
        clock.sleep(WINDOW)
        result = verify_fix(store, cfg, fix_id, clock, symptom_check=health_check)
        assert result.status == "verified", result.detail
        assert "-> 200" in result.steps[1].detail
        assert issue_store.get_issue(store, issue_id)["status"] == "resolved"
    finally:
        server.shutdown()
        server.server_close()


RENEW = {"action": "run_command", "params": {"name": "renew", "args": ["shop.pem"]},
         "postcondition": {"source": "probe", "match": r"shop\.pem: certificate .*expires in \d+ days?"}}


@pytest.fixture
def command_world(tmp_path):
    from test_remedy_support import RECORDER

    cfg = write_config(tmp_path, {"watch_window_s": WINDOW, "commands": {"renew": RECORDER + [str(tmp_path / "r")]}})
    store = Store.open(cfg.store_path)
    yield cfg, store, tmp_path, FakeClock(T0 + timedelta(minutes=5))
    store.close()


def test_a_command_fix_waits_for_a_probe_reading_of_its_postcondition(command_world):
    cfg, store, tmp, clock = command_world
    issue_id, _, fix_id = applied(command_world, RENEW)
    assert (tmp / "r").read_text().strip() == '["shop.pem"]'
    clock.sleep(30)
    result = verify_fix(store, cfg, fix_id, clock)
    assert result.status == "pending" and result.steps[0].passed is None
    insert_signals(store, [Signal(ts=clock.now(), source="probe", service="checkout-api",
                                  message="shop.pem: certificate CN=shop notAfter=2027-02-28T00:00:00Z, expires in 90 days")])
    clock.sleep(WINDOW)
    result = verify_fix(store, cfg, fix_id, clock)
    assert result.status == "verified", result.detail
    assert issue_store.get_issue(store, issue_id)["status"] == "resolved"


def test_a_command_fix_without_a_reading_fails_when_the_window_ends(command_world):
    cfg, store, tmp, clock = command_world
    issue_id, _, fix_id = applied(command_world, RENEW)
    clock.sleep(WINDOW + 1)
    result = verify_fix(store, cfg, fix_id, clock)
    assert result.status == "failed" and "no probe reading matches" in result.steps[0].detail
    assert result.evidence["rollback"] == ["not reversible: " + " ".join(
        fix_store.latest_backup(store, fix_id)["commands"][0]["argv"]) + " ran"]
    assert issue_store.get_issue(store, issue_id)["status"] == "open"
