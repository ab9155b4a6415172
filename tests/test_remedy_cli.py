"""`selfheal fix`, `selfheal rollback`, `selfheal fixes` as real processes on a real store and real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.store import Store
from conftest import run_cli
from test_remedy_support import DATA, RECORDER, seed_issue, write_config


@pytest.fixture
def setup(tmp_path):
    cfg = write_config(tmp_path, {"mitigations": {"restart-now": RECORDER + [str(tmp_path / "m.jsonl"), "go"]}})
    shutil.copy(DATA / "checkout.ini", tmp_path / "etc" / "checkout.ini")
    with Store.open(cfg.store_path) as store:
        issue_id, _ = seed_issue(store)
        bad_issue, _ = seed_issue(store, {"action": "format_disk", "params": {}}, service="billing")

    def cli(*args: str):
        return run_cli("--home", str(tmp_path / "home"), "--config", str(tmp_path / "selfheal.yaml"), *args)

    return cli, tmp_path, issue_id, bad_issue


def test_dry_run_prints_the_diff_and_changes_nothing(setup):
    cli, tmp, issue_id, _ = setup
    target = tmp / "etc" / "checkout.ini"
    original = target.read_bytes()
    proc = cli("fix", issue_id)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert "-image_cache_max_items = 0" in out and "+image_cache_max_items = 500" in out
    assert any(line.startswith("dry run: nothing was changed") for line in out)
    assert target.read_bytes() == original
    data = json.loads(cli("fix", issue_id, "--json").stdout)
    assert data["fix"] == "FIX-0001" and data["applied"] is False and data["status"] == "planned"
    assert data["plan"]["changes"][0]["file"] == "checkout.ini"
    assert "+image_cache_max_items = 500\n" in data["diff"]
    assert target.read_bytes() == original


def test_apply_then_fixes_then_rollback(setup):
    cli, tmp, issue_id, _ = setup
    target = tmp / "etc" / "checkout.ini"
    original = target.read_bytes()
    proc = cli("fix", issue_id, "--apply", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["applied"] is True and data["status"] == "applied"
    saved = Path(data["backup"]["files"][0]["saved"])
    assert saved.read_bytes() == original and saved.is_relative_to(tmp / "home" / "backups" / data["fix"])
    assert "image_cache_max_items = 500" in target.read_text()

    listed = json.loads(cli("fixes", "--json").stdout)
    assert [(f["id"], f["issue"], f["status"], f["kind"]) for f in listed] == [("FIX-0001", issue_id, "applied",
                                                                                "eliminate")]
    assert [e["status"] for e in listed[0]["events"]] == ["planned", "applying", "applied"]
    assert listed[0]["backup"]["files"][0]["sha256"] == data["backup"]["files"][0]["sha256"]
    assert json.loads(cli("fixes", "--issue", "ISS-0002", "--json").stdout) == []
    table = cli("fixes")
    assert table.returncode == 0 and "FIX-0001" in table.stdout and "1 file(s)" in table.stdout

    proc = cli("rollback", "FIX-0001", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "rolled-back"
    assert target.read_bytes() == original
    again = cli("rollback", "FIX-0001")
    assert again.returncode == 2
    assert again.stderr.strip() == "selfheal: error: FIX-0001 was already rolled back"


def test_errors_are_one_line_and_nothing_changes(setup):
    cli, tmp, issue_id, bad_issue = setup
    proc = cli("fix", "ISS-9999", "--apply")
    assert proc.returncode == 2 and proc.stderr.strip() == "selfheal: error: no issue 'ISS-9999' in the store"
    proc = cli("fix", bad_issue, "--apply")
    assert proc.returncode == 2
    assert proc.stderr.startswith("selfheal: error: unknown action 'format_disk'") and len(proc.stderr.splitlines()) == 1
    proc = cli("rollback", "FIX-0042")
    assert proc.returncode == 2 and "no fix 'FIX-0042'" in proc.stderr
    assert json.loads(cli("fixes", "--json").stdout) == []


def test_mitigate_runs_the_configured_mitigation(setup):
    cli, tmp, issue_id, _ = setup
    proc = cli("fix", issue_id, "--mitigate", "restart-now", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["kind"] == "mitigation" and data["status"] == "applied"
    assert (tmp / "m.jsonl").read_text().strip() == '["go"]'
    proc = cli("fix", issue_id, "--mitigate", "nope")
    assert proc.returncode == 2 and "no mitigation 'nope' is configured" in proc.stderr
