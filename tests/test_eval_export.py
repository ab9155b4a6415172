"""`selfheal export ISSUE`: an incident folder recorded from a live store, which `selfheal eval` runs.

The live store is made the way the loop makes one: a real DuckDB file, triage of the sensors' signals, the
analysis with real probes reading a real config file (named by its absolute path), a fix applied to that
file and verified; then the same failure again after the config was put back (a recurrence).
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from agent.clock import FakeClock
from agent.config import Config, load_config
from agent.errors import InputError
from agent.evals.incident import load_incident
from agent.evals.runner import run_eval
from agent.models import load_signals_file
from tests.conftest import run_cli

CHECKOUT = Path(__file__).parent / "data" / "eval" / "incidents" / "checkout-image-cache"


def live_store(tmp: Path) -> tuple[Config, Path]:
    """A store in which ISS-0002 (checkout-api answers 503) was analysed, fixed and verified."""
    from agent.analysis import analyze_issue
    from agent.remedy import apply_fix, plan_fix, verify_fix
    from agent.store import Store
    from agent.triage import Triage

    etc = tmp / "etc"
    (etc / "checkout").mkdir(parents=True)
    ini = etc / "checkout" / "checkout.ini"
    shutil.copy(CHECKOUT / "fixtures" / "checkout.ini", ini)
    conf = tmp / "selfheal.yaml"
    conf.write_text(yaml.safe_dump({"probes": {"roots": [str(etc)]}, "remedy": {
        "roots": [str(etc)], "services": {"checkout-api": {"config_files": [str(ini)]}}}}))
    cfg = load_config(tmp / "home", conf)
    signals = [s for s in load_signals_file(CHECKOUT / "signals.jsonl") if s.source != "probe"]
    clock = FakeClock(signals[-1].ts + timedelta(minutes=5))
    store = Store.open(cfg.store_path)
    try:
        Triage(store, cfg, clock).judge(signals)
        result = analyze_issue(store, cfg, "ISS-0002", clock)
        assert not result.escalated, result.reason
        plan = plan_fix(store, cfg, "ISS-0002", clock)
        apply_fix(store, cfg, plan.fix_id, clock)
        clock.sleep(cfg.remedy.watch_window_s + 1)
        assert verify_fix(store, cfg, plan.fix_id, clock).status == "verified"
    finally:
        store.close()
    assert "image_cache_max_items = 500" in ini.read_text()
    return cfg, ini


def recur(cfg: Config, ini: Path) -> None:
    """A deploy puts image_cache_max_items = 0 back; a day later the same failure happens and is analysed."""
    from agent.analysis import analyze_issue
    from agent.store import Store
    from agent.triage import Triage

    ini.write_text(ini.read_text().replace("= 500", "= 0"))
    signals = [s.model_copy(update={"id": f"{s.id}-b", "ts": s.ts + timedelta(days=1)})
               for s in load_signals_file(CHECKOUT / "signals.jsonl") if s.source != "probe"]
    clock = FakeClock(signals[-1].ts + timedelta(minutes=5))
    store = Store.open(cfg.store_path)
    try:
        verdicts = {r.signal_id: r.verdict for r in Triage(store, cfg, clock).judge(signals)}
        assert verdicts["e11-b"] == "recurrence"
        assert analyze_issue(store, cfg, "ISS-0002", clock).escalated  # the same root again: the archive check says no
    finally:
        store.close()


def test_export_writes_an_incident_that_eval_passes(tmp_path: Path):
    cfg, ini = live_store(tmp_path)
    out = tmp_path / "incident"
    proc = run_cli("--home", str(cfg.home), "--config", str(cfg.source), "export", "ISS-0002", "--out", str(out),
                   "--json")
    assert proc.returncode == 0, proc.stderr
    written = json.loads(proc.stdout)
    assert written["path"] == str(out) and written["fixtures"] == ["checkout/checkout.ini"]
    assert written["probes"] >= 3 and written["archive"] == 0 and not (out / "archive.json").exists()

    signals = load_signals_file(out / "signals.jsonl")
    events = [s for s in signals if s.source != "probe"]
    probes = [s for s in signals if s.source == "probe"]
    assert signals == events + probes and [s.ts for s in events] == sorted(s.ts for s in events)
    assert {s.id for s in events} == {f"e{i}" for i in range(1, 13)}
    assert f"{ini}: image_cache_max_items = 0" in {s.message for s in probes}  # the reading before the fix
    # the fixture is the file as it was before the fix (from its backup), not as it is now
    assert "image_cache_max_items = 0" in (out / "fixtures" / "checkout" / "checkout.ini").read_text()

    exp = yaml.safe_load((out / "expected.yaml").read_text())
    assert exp["kind"] == "mode" and exp["mode"] == "unbounded-cache-oom" and exp["symptom_signal"] == "e11"
    assert exp["triage"] == {"counts": {"info": 6 + len(probes), "new": 2, "noise": 3, "ongoing": 1},
                             "verdicts": {"e11": "new"}}
    assert exp["issues"] == 2 and exp["recorded_from"] == {"issue": "ISS-0002", "chain": "C-0001"}
    assert exp["analysis"] == {"escalate": False, "root_statement": exp["analysis"]["root_statement"],
                               "root_category": "config", "fix_action": "set_config", "gate": "pass"}
    root = exp["analysis"]["root_statement"]
    assert re.fullmatch(root, f"config image_cache_max_items in {ini} is 0, which disables eviction of the cache")
    assert " in " in root  # spaces stay readable
    load_incident(out)  # a valid incident folder

    report = run_eval(out, Config(home=tmp_path / "eval-home"))
    assert report.passed, report.violations
    case = report.cases[0]
    # the fix names the live file by its absolute path; the eval planned it against the fixture copy
    assert case.plan["mapped"] == {"file": {"given": str(ini), "sandbox": "checkout/checkout.ini"}}
    assert case.verification["status"] == "verified" and case.checks["store"].passed


def test_export_of_a_recurrence_carries_the_archive_and_leaves_the_first_episode_out(tmp_path: Path):
    from agent.evals.export import export_issue
    from agent.store import Store

    cfg, ini = live_store(tmp_path)
    recur(cfg, ini)
    store = Store.open(cfg.store_path, readonly=True)
    try:
        written = export_issue(store, cfg, "ISS-0002", tmp_path / "again")
    finally:
        store.close()
    out = Path(written["path"])
    exp = yaml.safe_load((out / "expected.yaml").read_text())
    assert exp["kind"] == "recurrence" and exp["symptom_signal"] == "e11-b" and exp["mode"] is None
    assert exp["analysis"]["escalate"] is True and exp["analysis"]["gate"] == "fail"
    assert any("set `mode`" in n for n in written["notes"])
    archive = json.loads((out / "archive.json").read_text())
    assert len(archive) == 1 and archive[0]["chain"]["id"] == "C-0001" and archive[0]["resolved_at"]
    ids = {json.loads(line)["id"] for line in (out / "signals.jsonl").read_text().splitlines()}
    assert {"e11-b", "e12-b"} <= ids and not {"e11", "e12"} & ids  # the first episode's failures stay out
    report = run_eval(out, Config(home=tmp_path / "eval-home"))
    assert report.passed, report.violations
    assert report.cases[0].checks["escalation"].passed is True


def test_export_errors_are_one_line(tmp_path: Path):
    cfg, _ini = live_store(tmp_path)
    base = ("--home", str(cfg.home), "--config", str(cfg.source), "export")
    missing = run_cli(*base, "ISS-0099", "--out", str(tmp_path / "x"))
    assert missing.returncode == 2 and missing.stderr.strip() == \
        "selfheal: error: no issue 'ISS-0099' in the store (see `selfheal issues`)"
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    refused = run_cli(*base, "ISS-0002", "--out", str(busy))
    assert refused.returncode == 2 and "already exists and is not empty" in refused.stderr
    assert (busy / "keep.txt").read_text() == "x" and len(list(busy.iterdir())) == 1


def test_export_default_folder_is_named_after_the_issue(tmp_path: Path):
    from agent.evals.export import export_issue
    from agent.store import Store

    cfg, _ini = live_store(tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    proc = run_cli("--home", str(cfg.home), "--config", str(cfg.source), "export", "ISS-0002", cwd=work)
    assert proc.returncode == 0, proc.stderr
    made = [p.name for p in work.iterdir()]
    assert len(made) == 1 and made[0].startswith("iss-0002-checkout-api")
    assert "check it: selfheal eval" in proc.stdout
    store = Store.open(cfg.store_path, readonly=True)
    try:
        with pytest.raises(InputError, match="already exists"):
            export_issue(store, cfg, "ISS-0002", work / made[0])
    finally:
        store.close()
