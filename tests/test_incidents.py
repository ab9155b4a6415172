"""Every recorded incident in evals/incidents/ runs through the offline analyst and matches its expected.yaml.

An incident folder converts to an analysis case (contracts section 9) as
{"issue": {"id": "ISS-0001", "symptom_signal": expected.symptom_signal},
 "signals": signals.jsonl, "archive": archive.json or []}; the analysis block
of expected.yaml says what the analyst must conclude: escalate or not, the
mode, a regex for the root node statement, its category, the fix action and
the gate's verdict.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from agent.analysis import analyze_case
from agent.analysis.knowledge import load_modes
from agent.gate import judge, observe_matches
from agent.models import FAILURE_LEVELS, AnalysisCase, ArchiveEntry, Signal

INCIDENTS = Path(__file__).resolve().parents[1] / "evals" / "incidents"
FOLDERS = sorted(p for p in INCIDENTS.iterdir() if p.is_dir()) if INCIDENTS.is_dir() else []
KINDS = ("mode", "decoy", "missing-evidence", "recurrence")
SELFHEAL = str(Path(sys.executable).parent / "selfheal")


def expected_of(folder: Path) -> dict:
    return yaml.safe_load((folder / "expected.yaml").read_text(encoding="utf-8"))


def signals_of(folder: Path) -> list[dict]:
    lines = (folder / "signals.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def case_of(folder: Path) -> dict:
    """The incident as an analysis case (contracts section 9)."""
    archive_file = folder / "archive.json"
    archive = json.loads(archive_file.read_text(encoding="utf-8")) if archive_file.exists() else []
    return {"issue": {"id": "ISS-0001", "symptom_signal": expected_of(folder)["symptom_signal"]},
            "signals": signals_of(folder), "archive": archive}


def test_the_incident_set_covers_every_kind_and_mode():
    exp = {f.name: expected_of(f) for f in FOLDERS}
    kinds = Counter(e["kind"] for e in exp.values())
    assert len(exp) >= 26
    assert kinds["decoy"] >= 5 and kinds["missing-evidence"] >= 3 and kinds["recurrence"] >= 2
    assert set(kinds) <= set(KINDS)
    modes = {m.id for m in load_modes()}
    covered = {e["mode"] for e in exp.values() if e["kind"] == "mode"}
    assert len(covered) >= 16
    assert covered <= modes
    # Every knowledge-base mode has an incident of its own.
    assert modes <= covered


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_incident_files_follow_the_format(folder: Path):
    exp = expected_of(folder)
    for key in ("description", "kind", "mode", "symptom_signal", "triage", "issues", "analysis"):
        assert key in exp, f"expected.yaml lacks {key}"
    assert exp["kind"] in KINDS
    assert (exp["mode"] is None) == (exp["kind"] == "missing-evidence")
    raw = signals_of(folder)
    ids = [s["id"] for s in raw]
    assert len(ids) == len(set(ids)), "signal ids repeat"
    signals = [Signal.model_validate(s) for s in raw]
    by_id = {s.id: s for s in signals}
    symptom = by_id[exp["symptom_signal"]]
    assert symptom.level in FAILURE_LEVELS and symptom.source != "probe"
    # The sensors' order: events in time order; probes are read after the failure.
    events = [s for s in signals if s.source != "probe"]
    assert [s.ts for s in events] == sorted(s.ts for s in events)
    assert all(p.ts >= symptom.ts for p in signals if p.source == "probe")
    assert any(s.source == "probe" for s in signals)
    for sid in exp["triage"].get("verdicts", {}):
        assert sid in by_id
    if (folder / "archive.json").exists():
        entries = [ArchiveEntry.model_validate(e) for e in json.loads((folder / "archive.json").read_text())]
        assert entries and all(e.resolved_at is not None and e.resolved_at < symptom.ts for e in entries)
    assert (exp["kind"] == "recurrence") == (folder / "archive.json").exists()


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_offline_analyst_matches_expected(folder: Path):
    exp = expected_of(folder)
    want = exp["analysis"]
    case = AnalysisCase.model_validate(case_of(folder))
    result = analyze_case(case)
    gate_passed = result.gate is not None and result.gate.passed
    assert result.escalated is want["escalate"], result.reason
    assert gate_passed is (want["gate"] == "pass"), result.reason
    if want["escalate"]:
        assert result.mode is None or not gate_passed
        assert "missing evidence" in result.reason or "no knowledge-base mode" in result.reason
        return
    assert result.mode == exp["mode"], result.reason
    chain = result.chain
    root = chain.root_node
    assert re.search(want["root_statement"], root.statement, re.IGNORECASE), root.statement
    assert root.category == want["root_category"]
    assert chain.fix is not None and chain.fix.action == want["fix_action"]
    assert chain.fix.target == root.id and chain.fix.effect == "eliminate"
    # Nothing invented: every node shows in the incident's own signals, the symptom node in the symptom signal.
    for node in chain.nodes:
        assert any(observe_matches(node.observe, s) for s in case.signals), node.id
    symptom = next(s for s in case.signals if s.id == case.issue.symptom_signal)
    assert observe_matches(chain.symptom_node.observe, symptom)
    # The verdict reported is the gate's own on the emitted chain.
    assert judge(chain, case.signals, case.archive).passed


@pytest.mark.parametrize("name", ["disk-full-unrotated-logs", "missing-evidence-heartbeat", "recurrence-config-template"])
def test_analyze_case_cli_judges_an_incident(tmp_path: Path, name: str):
    folder = INCIDENTS / name
    case_file = tmp_path / "case.json"
    case_file.write_text(json.dumps(case_of(folder)), encoding="utf-8")
    proc = subprocess.run([SELFHEAL, "--home", str(tmp_path / "home"), "analyze", "--case", str(case_file), "--json"],
                          capture_output=True, text=True, timeout=60)
    want = expected_of(folder)["analysis"]
    assert proc.returncode == (1 if want["escalate"] else 0), proc.stderr
    out = json.loads(proc.stdout)
    assert out["escalated"] is want["escalate"]
    assert {"escalated", "chain", "gate", "reason"} <= set(out)
    if not want["escalate"]:
        root = next(n for n in out["chain"]["nodes"] if n["id"] == out["chain"]["root"])
        assert re.search(want["root_statement"], root["statement"], re.IGNORECASE)
        assert out["gate"]["passed"] is True


PHRASINGS = Path(__file__).parent / "data" / "incidents" / "phrasings.yaml"


def _phrasings() -> list[tuple[str, str, str]]:
    data = yaml.safe_load(PHRASINGS.read_text(encoding="utf-8"))
    out = []
    for mode, items in data.items():
        for item in items:
            if isinstance(item, str):
                out.append((mode, "log", item))
            else:
                out.append((mode, item["source"], item["message"]))
    return out


@pytest.mark.parametrize("mode,source,message", _phrasings(), ids=lambda v: v[:48] if isinstance(v, str) else v)
def test_knowledge_base_recognises_real_world_phrasing(mode: str, source: str, message: str):
    from agent.analysis.offline import candidates

    signal = Signal(ts="2026-01-01T00:00:00Z", source=source, service="svc", level="ERROR", message=message)
    recognised = {m.id for m, _entry, _groups in candidates(load_modes(), signal)}
    assert mode in recognised, f"{mode} does not recognise: {message}"
