"""The offline analyst on recorded cases (contracts section 9) and `selfheal analyze --case` as a real process."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.analysis import Gatekeeper, analyze_case, make_context
from agent.analysis.knowledge import load_modes
from agent.analysis.offline import analyse, candidates
from agent.gate import judge, observe_matches
from agent.models import AnalysisCase, Chain, Signal

DATA = Path(__file__).parent / "data" / "analysis"
SELFHEAL = str(Path(sys.executable).parent / "selfheal")
CASES = sorted(p for p in DATA.glob("*.json") if "expected" in json.loads(p.read_text()))


def load(name: str) -> tuple[AnalysisCase, dict]:
    data = json.loads((DATA / name).read_text())
    expected = data.pop("expected", {})
    return AnalysisCase.model_validate(data), expected


def selfheal(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SELFHEAL, "--home", str(home), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_recorded_cases(path):
    case, expected = load(path.name)
    result = analyze_case(case)
    assert result.escalated is expected["escalate"], result.reason
    if expected["escalate"]:
        assert result.gate is None or not result.gate.passed
        assert "missing evidence" in result.reason or "no knowledge-base mode" in result.reason
        assert result.mode is None
        return
    assert result.mode == expected["mode"]
    assert result.gate.passed, result.gate.failed_reasons()
    chain = result.chain
    assert chain.root_node.category == expected["root_category"]
    # Never invented: every node's observe matches a signal of the case.
    for node in chain.nodes:
        assert any(observe_matches(node.observe, s) for s in case.signals), node.id
    # The symptom node matches the symptom signal itself.
    symptom = next(s for s in case.signals if s.id == case.issue.symptom_signal)
    assert observe_matches(chain.symptom_node.observe, symptom)
    assert 3 <= len(chain.links) <= 7
    # The result's gate verdict is the gate's own on the emitted chain.
    assert judge(chain, case.signals, case.archive).passed


def test_contract_example_root_is_the_cache_setting():
    case, _ = load("contract-analysis-case.json")
    result = analyze_case(case)
    assert not result.escalated
    root = result.chain.root_node
    assert re.search(r"image_cache_max_items.*0", root.statement)
    assert root.category == "config"
    fix = result.chain.fix
    assert fix.action == "set_config" and fix.target == root.id and fix.effect == "eliminate"
    assert fix.params == {"file": "checkout.ini", "key": "image_cache_max_items", "value": "500"}
    assert observe_matches(fix.postcondition, Signal(ts="2026-12-01T00:00:00Z", source="probe",
                                                     message="checkout.ini: image_cache_max_items = 500"))


def test_decoy_picks_the_mode_the_evidence_supports():
    case, _ = load("decoy-tls-behind-503.json")
    symptom = next(s for s in case.signals if s.id == case.issue.symptom_signal)
    recognised = {m.id for m, _e, _g in candidates(load_modes(), symptom)}
    assert {"unbounded-cache-oom", "expired-tls-certificate"} <= recognised  # same symptom, two modes
    result = analyze_case(case)
    assert result.mode == "expired-tls-certificate"
    assert "payments.internal:8443" in result.chain.root_node.statement


def test_recurrence_goes_deeper_than_the_archived_root():
    case, _ = load("recurrence-template.json")
    result = analyze_case(case)
    assert not result.escalated
    archive = result.gate.checks.archive
    assert archive.passed and getattr(archive, "escalated") is True
    old = case.archive[0].chain
    statements = [n.statement for n in result.chain.nodes]
    assert result.chain.root_node.statement != old.root_node.statement
    assert any("image_cache_max_items" in s and "checkout.ini is 0" in s for s in statements[:-1])
    assert result.chain.fix.params["file"] == "templates/checkout.ini.j2"
    assert result.chain.fix.params != old.fix.params
    notes = " ".join(getattr(result, "notes", []))
    assert "holds again after its fix" in notes and "checkout.ini: image_cache_max_items = 0" in notes


def test_recurrence_without_new_evidence_escalates():
    """The archived fix's root reappears, but nothing shows why: repeating the old chain must not pass."""
    case, _ = load("contract-analysis-case.json")
    prev = json.loads((DATA / "recurrence-template.json").read_text())["archive"]
    case = AnalysisCase.model_validate({**case.model_dump(mode="json", by_alias=True), "archive": prev})
    result = analyze_case(case)
    assert result.escalated
    assert result.chain is not None and not result.gate.checks.archive.passed
    assert "archive" in result.reason


def test_missing_evidence_names_what_was_missing():
    case, _ = load("missing-oom-evidence.json")
    result = analyze_case(case)
    assert result.escalated
    assert "memory_growth" in result.reason
    assert result.chain is not None and result.candidate_mode == "unbounded-cache-oom"
    # The best rejected draft still only cites real signals.
    for node in result.chain.nodes:
        assert any(observe_matches(node.observe, s) for s in case.signals)


def test_unrecognised_symptom_escalates_with_no_chain():
    case = AnalysisCase.model_validate({
        "issue": {"id": "ISS-0009", "symptom_signal": "x1"},
        "signals": [{"id": "x1", "ts": "2026-11-30T01:00:00Z", "source": "log", "level": "ERROR",
                     "service": "ledger", "message": "ledger balance mismatch on account 991"}],
    })
    result = analyze_case(case)
    assert result.escalated and result.chain is None
    assert "no knowledge-base mode recognises" in result.reason


def test_evidence_after_the_symptom_is_not_a_cause():
    """Events must precede their effects: an OOM kill logged after the 503 does not explain it."""
    case, _ = load("contract-analysis-case.json")
    data = case.model_dump(mode="json", by_alias=True)
    for s in data["signals"]:
        if s["id"] == "s3":
            s["ts"] = "2026-11-30T04:00:00Z"
    result = analyze_case(AnalysisCase.model_validate(data))
    assert result.escalated


def test_analysis_is_deterministic_and_order_independent():
    case, _ = load("decoy-tls-behind-503.json")
    first = analyze_case(case).chain.to_json()
    data = case.model_dump(mode="json", by_alias=True)
    data["signals"] = list(reversed(data["signals"]))
    second = analyze_case(AnalysisCase.model_validate(data)).chain.to_json()
    assert first == second


def test_first_rejected_draft_then_next_variant():
    """When the deepest draft is rejected, the analyst gates the next variant rather than giving up."""
    case, _ = load("tls-nginx-no-renewal.json")
    symptom = next(s for s in case.signals if s.id == case.issue.symptom_signal)
    signals = list(case.signals)
    gate = Gatekeeper(signals, case.archive)
    seen: list[Chain] = []

    def picky(chain: Chain):
        seen.append(chain)
        result = gate(chain)
        if chain.root_node.category == "schedule":  # pretend the deeper root is rejected
            result = result.model_copy(update={"passed": False})
        return result

    ctx = make_context(symptom, signals, case.archive, None, gate.settings)
    outcome = analyse(ctx, load_modes(), picky)
    assert seen[0].root_node.category == "schedule"
    assert outcome.passed is not None and outcome.passed.chain.root_node.category == "process"
    assert len(outcome.passed.chain.links) == 3


# --------------------------------------------------------------------------- the CLI


def test_cli_case_json_passes_with_exit_0(tmp_path):
    proc = selfheal(tmp_path, "analyze", "--case", str(DATA / "contract-analysis-case.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["escalated"] is False and out["gate"]["passed"] is True
    assert set(out) >= {"escalated", "chain", "gate", "reason"}
    chain = Chain.model_validate(out["chain"])
    assert re.search(r"image_cache_max_items.*0", chain.root_node.statement)
    assert set(out["gate"]["checks"]) == {"reproduce", "archive", "completeness", "counterfactual"}
    assert not (tmp_path / "store.duckdb").exists()  # --case reads nothing but the file


def test_cli_shared_contract_example(tmp_path):
    shared = Path(__file__).resolve().parents[2] / "shared" / "contracts" / "examples" / "analysis-case.json"
    if not shared.exists():
        pytest.skip("shared contracts not present")
    proc = selfheal(tmp_path, "analyze", "--case", str(shared), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chain"]["fix"]["params"]["key"] == "image_cache_max_items"


def test_cli_escalation_exit_1_with_reason(tmp_path):
    proc = selfheal(tmp_path, "analyze", "--case", str(DATA / "missing-oom-evidence.json"), "--json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["escalated"] is True and "missing evidence" in out["reason"]


def test_cli_tree_rendering(tmp_path):
    proc = selfheal(tmp_path, "analyze", "--case", str(DATA / "cron-missing-env.json"))
    assert proc.returncode == 0, proc.stderr
    for text in ("PASSED", "symptom n0", "root n3", "DATABASE_URL", "because:", "set_env", "reproduce",
                 "counterfactual", "pass"):
        assert text in proc.stdout


@pytest.mark.parametrize("content,words", [
    ("{not json", "invalid JSON"),
    ('{"issue": {"id": "ISS-1"}, "signals": []}', "issue.symptom_signal"),
    ('{"issue": {"id": "ISS-1", "symptom_signal": "nope"}, "signals": []}', "no signal with id 'nope'"),
    ('[1, 2]', "expected a JSON object"),
])
def test_cli_unreadable_input_exit_2(tmp_path, content, words):
    f = tmp_path / "case.json"
    f.write_text(content)
    proc = selfheal(tmp_path, "analyze", "--case", str(f), "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.strip()
    assert err.startswith("selfheal: error:") and "\n" not in err and words in err


def test_cli_check_kb(tmp_path):
    proc = selfheal(tmp_path, "analyze", "--check-kb", "--json")
    assert proc.returncode == 0, proc.stderr
    ids = [m["id"] for m in json.loads(proc.stdout)["modes"]]
    assert "cron-missing-env" in ids


def test_case_file_signals_are_not_mutated():
    case, _ = load("contract-analysis-case.json")
    before = copy.deepcopy(case.model_dump(mode="json"))
    analyze_case(case)
    assert case.model_dump(mode="json") == before


def test_recurrence_under_another_symptom_does_not_repeat_the_old_fix():
    """The archived chain started from the OOM log line, the new issue from the health check: the gate does not
    see them as similar, but the archived root is true again after its fix, so proposing it again is refused."""
    data = json.loads((DATA / "recurrence-template.json").read_text())
    data.pop("expected")
    data["signals"] = [s for s in data["signals"] if s["id"] not in ("r1", "r8")]  # no deploy, no template fact
    old = data["archive"][0]["chain"]
    old["nodes"] = old["nodes"][1:]
    old["symptom"] = old["nodes"][0]["id"]
    old["links"] = old["links"][1:]
    old["nodes"].insert(0, {"id": "n9", "statement": "checkout-api workers are killed by the OOM killer",
                            "observe": {"source": "log", "service": "checkout-api", "match": "Out of memory"}})
    old["links"].insert(0, {"cause": old["nodes"][1]["id"], "effect": "n9",
                            "mechanism": "the kernel kills the largest worker when memory runs out"})
    old["symptom"] = "n9"
    result = analyze_case(AnalysisCase.model_validate(data))
    assert result.escalated
    assert "repeats the root or fix of archived chain(s) C-0001" in result.reason
    assert "holds again after its fix" in result.reason


@pytest.mark.parametrize("path", [p for p in CASES if not json.loads(p.read_text())["expected"]["escalate"]],
                         ids=lambda p: p.stem)
def test_fix_params_are_what_the_remedy_catalog_accepts(path):
    """The fixes the knowledge base drafts are executable: the remedy's allow-listed action validates its params."""
    from agent.remedy.catalog import get_action

    case, _ = load(path.name)
    fix = analyze_case(case).chain.fix
    get_action(fix.action).validate(fix.params)
