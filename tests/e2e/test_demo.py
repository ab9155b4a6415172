"""The demo end to end, as a user runs it: real processes, real sensors, the real loop (two scenarios, to
keep the suite short; `selfheal demo` runs all six plus the recurrence)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_demo_closes_the_loop_and_the_report_reads_it_from_the_store(tmp_path):
    home = tmp_path / "home"
    res = run_cli("demo", "--only", "job-env,certificate", "--json", home=home, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "every loop closed" in res.stdout
    report = json.loads(run_cli("--home", str(home / "demo"), "report", "--json", home=home).stdout)
    assert report["issues_with_formal_rca"] >= 2
    assert report["active_issues"] == 0
    assert report["repeat_issues"] == 0
    assert report["noise_signals"] >= 1          # the payments blip was discarded as noise
    issues = json.loads(run_cli("--home", str(home / "demo"), "issues", "--json", home=home).stdout)
    modes = {i.get("mode") for i in issues} | {i.get("title") for i in issues}
    assert any("nightly-report" in (t or "") for t in modes)
    assert (home / "demo" / "reports" / "report.html").exists()
    assert not (home / "demo" / "sandbox").exists()   # the sandbox goes unless --keep; the store stays


def test_demo_rejects_an_unknown_scenario(tmp_path):
    res = run_cli("demo", "--only", "nope", home=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("selfheal: error: --only: unknown scenario(s) nope")
