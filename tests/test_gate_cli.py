"""`selfheal gate FILE [--json]` through the real console script."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.models import ArchiveEntry, Chain, Signal

DATA = Path(__file__).parent / "data" / "gate"
EXAMPLES = DATA / "contract-examples"
SELFHEAL = str(Path(sys.executable).parent / "selfheal")


def selfheal(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([SELFHEAL, "--home", str(home), *args], capture_output=True, text=True, input=stdin,
                          timeout=60)


@pytest.mark.parametrize("name,code", [
    ("gate-pass.json", 0), ("gate-fail-shallow.json", 1), ("gate-fail-not-necessary.json", 1),
    ("gate-fail-archive-repeat.json", 1),
])
def test_contract_examples_exit_codes_and_json(tmp_path, name, code):
    proc = selfheal(tmp_path, "gate", str(EXAMPLES / name), "--json")
    assert proc.returncode == code, proc.stderr
    out = json.loads(proc.stdout)
    assert out["passed"] is (code == 0)
    assert set(out["checks"]) == {"reproduce", "archive", "completeness", "counterfactual"}
    assert isinstance(out["elapsed_ms"], float)
    if name == "gate-fail-archive-repeat.json":
        assert out["checks"]["archive"]["escalated"] is True
        assert out["checks"]["archive"]["matched"] == "c-3"
    assert not (tmp_path / "store.duckdb").exists()  # a gate case never touches the store


def test_readable_rendering(tmp_path):
    proc = selfheal(tmp_path, "gate", str(EXAMPLES / "gate-fail-shallow.json"))
    assert proc.returncode == 1
    for text in ("chain c-8", "memory pressure on the host", "completeness", "FAIL", "somehow", "rejected"):
        assert text in proc.stdout


def test_stdin(tmp_path):
    proc = selfheal(tmp_path, "gate", "-", "--json", stdin=(EXAMPLES / "gate-pass.json").read_text())
    assert proc.returncode == 0 and json.loads(proc.stdout)["passed"] is True


def _bad(case: dict, how: str) -> dict:
    case = copy.deepcopy(case)
    chain = case["chain"]
    if how == "unknown-link-node":
        chain["links"][1]["cause"] = "n42"
    elif how == "duplicate-ids":
        chain["nodes"][2]["id"] = "n1"
    elif how == "missing-root":
        del chain["root"]
    elif how == "root-not-a-node":
        chain["root"] = "n99"
    elif how == "invalid-regex":
        chain["nodes"][1]["observe"]["match"] = "Killed process (\\d+"
    elif how == "missing-statement":
        del chain["nodes"][0]["statement"]
    elif how == "bad-signal":
        case["signals"][0]["ts"] = "yesterday"
    elif how == "bad-op":
        chain["nodes"][2]["observe"]["op"] = "=>"
    return case


@pytest.mark.parametrize("how,message", [
    ("unknown-link-node", "links[1].cause 'n42' is not a node id"),
    ("duplicate-ids", "duplicate node id 'n1'"),
    ("missing-root", "missing required field 'chain.root'"),
    ("root-not-a-node", "root 'n99' is not a node id"),
    ("invalid-regex", "invalid regular expression"),
    ("missing-statement", "missing required field 'chain.nodes.0.statement'"),
    ("bad-signal", "signals.0.ts"),
    ("bad-op", "chain.nodes.2.observe.op"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, how, message):
    case = json.loads((EXAMPLES / "gate-pass.json").read_text())
    path = tmp_path / "case.json"
    path.write_text(json.dumps(_bad(case, how)))
    proc = selfheal(tmp_path, "gate", str(path), "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("selfheal: error: ")
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("content,message", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"hello": 1}', "neither a gate case"),
    ('{"schema": "other/v2", "id": "c", "symptom": "a", "root": "a", "nodes": [{"id": "a", "statement": "x"}], "links": []}',
     "chain schema is 'other/v2'"),
])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    proc = selfheal(tmp_path, "gate", str(path))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_missing_file(tmp_path):
    proc = selfheal(tmp_path, "gate", str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_bare_chain_without_a_store_judges_against_nothing(tmp_path):
    chain = json.loads((EXAMPLES / "gate-pass.json").read_text())["chain"]
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(chain))
    proc = selfheal(tmp_path, "gate", str(path), "--json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert "no signal matches" in out["checks"]["completeness"]["reason"]
    assert not (tmp_path / "store.duckdb").exists()


def test_bare_chain_uses_the_stores_signals_and_archive(tmp_path):
    from agent.store import Store
    from agent.store.chains import archive_chain, save_chain
    from agent.store.signals import insert_signals

    case = json.loads((EXAMPLES / "gate-fail-archive-repeat.json").read_text())
    chain_path = tmp_path / "chain.json"
    chain_path.write_text(json.dumps(case["chain"]))

    home = tmp_path / "home"
    with Store.open(home / "store.duckdb") as store:
        insert_signals(store, [Signal.model_validate(s) for s in case["signals"]])
    proc = selfheal(home, "gate", str(chain_path), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["checks"]["archive"]["escalated"] is False

    archived = ArchiveEntry.model_validate(case["archive"][0])
    with Store.open(home / "store.duckdb") as store:
        cid = save_chain(store, archived.chain, issue_id=None, analyst="offline", passed=True)
        archive_chain(store, cid, outcome="did-not-hold", resolved_at=archived.resolved_at)
    proc = selfheal(home, "gate", str(chain_path), "--json")
    assert proc.returncode == 1
    archive = json.loads(proc.stdout)["checks"]["archive"]
    assert archive["passed"] is False and archive["escalated"] is True and archive["matched"] == cid
    assert Chain.model_validate(case["chain"])  # the file itself was valid all along
