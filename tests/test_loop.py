"""The loop on real files: a recorded incident is triaged, diagnosed through the gate, fixed (file changed,
backup kept), verified and resolved; learning then raises an early warning at the precursor when the
incident is replayed; and a pass killed with SIGKILL is finished by the next one without repeating work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from agent.clock import FakeClock
from agent.config import load_config
from agent.loop import run_pass
from agent.models import Signal
from agent.store import Store
from agent.store import fixes as fix_store
from agent.store import issues as issue_store
from agent.store import learned as learned_store
from agent.store.signals import count_signals, insert_signals
from tests.conftest import REPO

T0 = datetime(2026, 11, 30, 2, 40, tzinfo=timezone.utc)
INI = "# checkout settings\n[checkout]\nworkers = 4\n; 0 disables eviction\nimage_cache_max_items = 0\n"


def incident(day: int = 0, tag: str = "") -> list[Signal]:
    """The contract's checkout incident: memory grows, the OOM killer fires, the health check fails."""
    d = timedelta(days=day)

    def sig(sid: str, at: timedelta, **kw) -> Signal:
        return Signal(id=f"{sid}{tag}", ts=T0 + d + at, service="checkout-api", **kw)

    return [
        sig("m1", timedelta(0), source="metric", message="worker_rss_mb=1950", value=1950,
            attrs={"metric": "worker_rss_mb"}),
        sig("k1", timedelta(minutes=32, seconds=9), source="log", level="ERROR",
            message="Out of memory: Killed process 4121 (gunicorn)"),
        *[sig(f"h{i}", timedelta(minutes=32, seconds=15 + 30 * i), source="health", level="ERROR",
              message="GET http://127.0.0.1:8080/health -> 503", value=0.004, attrs={"check": "checkout-health"})
          for i in range(3)],
    ]


@pytest.fixture
def setup(tmp_path: Path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "checkout.ini").write_text(INI)
    config = {
        "mode": "auto",
        "analysis": {"group_wait_s": 0},
        "probes": {"roots": [str(app)]},
        "remedy": {"roots": [str(app)], "watch_window_s": 60,
                   "services": {"checkout-api": {"config_files": [str(app / "checkout.ini")]}}},
    }
    home = tmp_path / "home"
    home.mkdir()
    (home / "selfheal.yaml").write_text(yaml.safe_dump(config))
    cfg = load_config(home, home / "selfheal.yaml")
    return cfg, app


def passes(store: Store, cfg, clock: FakeClock, n: int = 1):
    reports = []
    for _ in range(n):
        reports.append(run_pass(store, cfg, clock, sense=False, symptom_checks={}))
    return reports


def test_a_config_root_is_diagnosed_fixed_verified_resolved_and_learned(setup):
    cfg, app = setup
    clock = FakeClock(T0 + timedelta(minutes=40))
    with Store.open(cfg.store_path) as store:
        insert_signals(store, incident())
        first = passes(store, cfg, clock)[0]
        assert first.analysed and not first.escalated, first.errors
        assert first.applied, first.errors
        # fixed on disk, the rest of the file and its comments kept, the original backed up
        text = (app / "checkout.ini").read_text()
        assert "image_cache_max_items = 500" in text and "# checkout settings" in text and "workers = 4" in text
        fix = fix_store.fixes(store)[0]
        backup = fix_store.latest_backup(store, fix["id"])
        assert backup, "apply records its backup"
        # inside the watch window nothing is decided yet
        assert passes(store, cfg, clock)[0].pending
        clock.sleep(61)
        done = passes(store, cfg, clock)[0]
        assert done.resolved and done.learned, done.errors
        failures = issue_store.list_issues(store, kind="failure")
        assert failures and all(i["status"] == "resolved" for i in failures)
        rules = learned_store.rules(store, kind="early-warning")
        metric_rule = next(r for r in rules if r["definition"]["observe"].get("metric") == "worker_rss_mb")
        # detection moves earlier: the warning fires below the level that preceded the failure
        assert metric_rule["definition"]["observe"]["value"] == pytest.approx(0.8 * 1950)  # observed 1950 before the OOM
        assert metric_rule["issue_id"] in {i["id"] for i in failures}

        # The same incident a day later: the learned rule raises a warning at the precursor, before
        # the symptom, and the failure comes back to its own issue instead of opening another.
        count = len(failures)
        insert_signals(store, incident(day=1, tag="-again")[:1])
        clock.set(T0 + timedelta(days=1, minutes=1))
        passes(store, cfg, clock)
        warnings = issue_store.list_issues(store, kind="warning")
        assert len(warnings) == 1 and warnings[0]["opened_at"] == T0 + timedelta(days=1)
        insert_signals(store, incident(day=1, tag="-again")[1:])
        clock.set(T0 + timedelta(days=1, minutes=40))
        passes(store, cfg, clock)
        assert len(issue_store.list_issues(store, kind="failure")) == count
        verdicts = {r["signal_id"]: r["verdict"] for r in issue_store.triage_results(store)}
        assert verdicts["k1-again"] == "recurrence"


def test_rollback_restores_the_file_byte_for_byte(setup):
    from agent.remedy import rollback_fix

    cfg, app = setup
    before = (app / "checkout.ini").read_bytes()
    clock = FakeClock(T0 + timedelta(minutes=40))
    with Store.open(cfg.store_path) as store:
        insert_signals(store, incident())
        passes(store, cfg, clock)
        assert (app / "checkout.ini").read_bytes() != before
        rollback_fix(store, cfg, fix_store.fixes(store)[0]["id"])
        assert (app / "checkout.ini").read_bytes() == before


_KILLABLE_PASS = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from datetime import datetime, timezone
    import agent.remedy as remedy
    from agent.clock import FakeClock
    from agent.config import load_config
    from agent.loop import run_pass
    from agent.store import Store

    home, marker, stamp = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    apply = remedy.apply_fix

    def apply_then_hang(*a, **kw):
        out = apply(*a, **kw)
        marker.write_text("applied")
        time.sleep(60)          # killed here, between the fix step and the verify step
        return out

    remedy.apply_fix = apply_then_hang if sys.argv[4] == "hang" else apply
    cfg = load_config(home, home / "selfheal.yaml")
    with Store.open(cfg.store_path) as store:
        run_pass(store, cfg, FakeClock(datetime.fromisoformat(stamp)), sense=False, symptom_checks={})
""")


def test_a_pass_killed_with_sigkill_is_finished_by_the_next_without_repeating(setup, tmp_path):
    cfg, app = setup
    with Store.open(cfg.store_path) as store:
        insert_signals(store, incident())
        stored = count_signals(store)
    marker = tmp_path / "applied"
    script = tmp_path / "one_pass.py"
    script.write_text(_KILLABLE_PASS)
    now = (T0 + timedelta(minutes=40)).isoformat()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script), str(cfg.home), str(marker), now, "hang"], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the pass ended before applying a fix"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    applied_text = (app / "checkout.ini").read_text()

    later = (T0 + timedelta(minutes=42)).isoformat()
    for _ in range(2):  # resume, then verify after the watch window
        subprocess.run([sys.executable, str(script), str(cfg.home), str(marker), later, "plain"], env=env,
                       check=True, timeout=120)
    with Store.open(cfg.store_path) as store:
        fixes = fix_store.fixes(store)
        assert len(fixes) == 1, [f["id"] for f in fixes]                       # no second fix
        statuses = [e["status"] for e in fix_store.fix_events(store, fixes[0]["id"])]
        assert statuses.count("applied") == 1, statuses                          # applied once
        assert count_signals(store) - stored == len({s for s in _probe_ids(store)})  # only probe readings added
        assert issue_store.list_issues(store, status="resolved", kind="failure")
    assert (app / "checkout.ini").read_text() == applied_text


def _probe_ids(store: Store) -> list[str]:
    from agent.store.signals import query_signals

    return [s.id for s in query_signals(store, source="probe")]
