"""CI: the offline eval over every recorded incident meets evals/thresholds.yaml.

One run through the Python API (not 33 processes): each incident replayed on a fresh store through triage,
analysis (case and store path), the gate, a dry-run fix against its fixtures, simulated verification and a
repeat of its failure.
"""

from __future__ import annotations


import pytest

from agent.config import Config
from agent.evals.runner import DEFAULT_INCIDENTS, EvalReport, run_eval
from agent.evals.scoring import CHECKS

FOLDERS = sorted(p for p in DEFAULT_INCIDENTS.iterdir() if (p / "expected.yaml").is_file())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> EvalReport:
    cfg = Config(home=tmp_path_factory.mktemp("home"))
    return run_eval(None, cfg, mode="offline")


def _diff(report: EvalReport) -> str:
    lines = list(report.violations)
    for c in report.cases:
        if c.error:
            lines.append(f"{c.name}: {c.error}")
        for name in c.failed:
            ch = c.checks[name]
            lines.append(f"{c.name} {name}: {ch.detail} (expected {ch.expected!r}, got {ch.got!r})")
    return "\n".join(lines)


@pytest.mark.timeout(300)
def test_every_incident_is_scored_and_the_thresholds_are_met(report: EvalReport):
    assert report.passed, _diff(report)
    assert len(report.cases) == len(FOLDERS) >= 25
    assert {c.name for c in report.cases} == {f.name for f in FOLDERS}
    assert all(c.status == "passed" for c in report.cases), _diff(report)
    summary = report.summary
    assert summary["failed"] == summary["errors"] == summary["skipped"] == 0
    assert summary["repeat_issues"] == 0
    for name in CHECKS:
        assert summary["scores"][name] == 1.0, name
    assert report.thresholds is not None and report.thresholds.endswith("thresholds.yaml")


def test_each_check_applies_where_it_should(report: EvalReport):
    counts = report.summary["counts"]
    kinds = {c.name: c.kind for c in report.cases}
    n = len(report.cases)
    escalating = sum(1 for k in kinds.values() if k == "missing-evidence")
    recurrences = sum(1 for k in kinds.values() if k == "recurrence")
    for name in ("triage", "issues", "escalation", "gate", "fix", "store"):
        assert counts[name]["applicable"] == n, name
    assert counts["root_cause"]["applicable"] == n - escalating
    assert counts["recurrence"]["applicable"] == recurrences >= 3
    # every fix that only edits files was applied to the fixture copy and verified; command fixes were planned
    commands = [c for c in report.cases if c.plan and c.plan.get("commands")]
    assert counts["verify"]["applicable"] == n - escalating - len(commands)
    assert all(c.verification["status"] == "not simulated" for c in commands)
    assert counts["repeat"]["applicable"] == counts["verify"]["passed"]
    assert report.summary["resolved"] == counts["verify"]["passed"]
    assert report.summary["mttr_minutes"] > 0


def test_the_cases_carry_what_happened(report: EvalReport):
    by_name = {c.name: c for c in report.cases}
    oom = by_name["oom-unbounded-cache-catalog"]
    assert oom.mode == "unbounded-cache-oom" and oom.fix == "set_config" and oom.category == "config"
    assert "image_cache_max_items = 500" in oom.plan["diff"]
    assert oom.verification["first"] == "pending" and oom.verification["status"] == "verified"
    assert oom.repeat["recurrence"] is True and oom.repeat["archived"] == "did-not-hold"
    assert oom.mttr_s is not None and oom.mttr_s > 300  # at least the watch window
    missing = by_name["missing-evidence-503"]
    assert missing.plan is None and missing.verification is None and missing.checks["escalation"].got is True
    template = by_name["recurrence-cache-template"]
    assert template.checks["recurrence"].got["repeats"] == []
    assert template.checks["recurrence"].got["archive_check_escalated"] is True
