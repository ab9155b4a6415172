"""`selfheal issues`, `show`, `resolve`, `rules`: stable JSON shapes, tables, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import EXAMPLES

STREAM = EXAMPLES / "triage-stream"
DATA = Path(__file__).parent / "data" / "triage"
ISSUE_KEYS = ["id", "kind", "status", "title", "fingerprint", "source", "service", "host", "first_signal", "opened_at",
              "last_change", "resolved_at", "occurrences", "last_seen"]


def _one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith("selfheal: error: ") and "Traceback" not in line
    for f in fragments:
        assert f in line


def test_issues_show_resolve(cli):
    assert json.loads(cli("issues", "--json").stdout) == []  # no store yet: nothing, not an error
    judged = [json.loads(x) for x in cli("triage", str(STREAM / "day1.jsonl"), "--json").stdout.splitlines()]
    opened = [j for j in judged if j["verdict"] == "new"]

    issues = json.loads(cli("issues", "--json").stdout)
    assert [i["id"] for i in issues] == [j["issue"] for j in opened]
    assert all(list(i) == ISSUE_KEYS for i in issues)
    first = issues[0]
    assert first["status"] == "open" and first["kind"] == "failure" and first["first_signal"] == opened[0]["signal_id"]
    assert first["occurrences"] == sum(1 for j in judged if j["issue"] == first["id"])
    assert first["opened_at"].endswith("Z") and first["resolved_at"] is None

    shown = json.loads(cli("show", first["id"], "--json").stdout)
    assert list(shown) == ["issue", "timeline", "chains", "gate_results", "fixes", "verifications", "archive"]
    assert shown["issue"] == first
    occurrences = [t["signal_id"] for t in shown["timeline"] if t["kind"] == "occurrence"]
    assert occurrences == [j["signal_id"] for j in judged if j["issue"] == first["id"]]
    assert [t["event"] for t in shown["timeline"] if t["kind"] == "state"] == ["opened"]

    text = cli("show", first["id"])
    assert text.returncode == 0 and first["id"] in text.stdout and "opened" in text.stdout

    resolved = json.loads(cli("resolve", first["id"], issues[1]["id"], "--reason", "rotated the key", "--json").stdout)
    assert resolved == {"resolved": [first["id"], issues[1]["id"]], "already_resolved": []}
    again = json.loads(cli("resolve", first["id"], "--json").stdout)
    assert again == {"resolved": [], "already_resolved": [first["id"]]}
    now_resolved = json.loads(cli("issues", "--status", "resolved", "--json").stdout)
    assert [i["id"] for i in now_resolved] == [first["id"], issues[1]["id"]]
    # resolved no earlier than the issue's last occurrence (recorded signals may carry future times)
    assert now_resolved[0]["resolved_at"] >= max(t["ts"] for t in shown["timeline"])
    active = json.loads(cli("issues", "--status", "active", "--json").stdout)
    assert len(active) == len(issues) - 2
    state = [t for t in json.loads(cli("show", first["id"], "--json").stdout)["timeline"] if t["kind"] == "state"]
    assert state[-1]["event"] == "resolved" and state[-1]["reason"] == "rotated the key"

    table = cli("issues")
    assert table.returncode == 0 and issues[2]["id"] in table.stdout


def test_one_line_errors(cli):
    cli("triage", str(DATA / "benign.jsonl"))
    _one_line_error(cli("show", "ISS-0999"), "ISS-0999: no such issue")
    _one_line_error(cli("resolve", "ISS-0001", "ISS-0999"), "ISS-0999: no such issue")
    # nothing was resolved: all or nothing
    assert json.loads(cli("issues", "--status", "resolved", "--json").stdout) == []
    _one_line_error(cli("resolve"), "give the issue ids to resolve, or --all")
    _one_line_error(cli("resolve", "ISS-0001", "--all"), "not both")
    _one_line_error(cli("issues", "--status", "closed"), "--status", "'closed'")
    _one_line_error(cli("triage", str(DATA / "nope.jsonl")), "nope.jsonl: no such file")


def test_rules_lists_shipped_and_learned_rules_with_their_origin(cli, home):
    out = cli("rules", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert list(data) == ["files", "settings", "tune", "origins", "rules", "patterns", "learned"]
    assert data["origins"]["settings.check_sources"].endswith("rules/triage.yaml")
    assert [Path(f).name for f in data["files"]] == ["triage.yaml", "noise.yaml"]
    by_id = {r["id"]: r for r in data["rules"]}
    assert by_id["check-not-persisted"]["when"] == {"failure": True, "check": True, "consecutive": {"lt": "$threshold"}}
    assert by_id["check-not-persisted"]["origin"].endswith("rules/triage.yaml")
    assert by_id["early-warning-new"]["subject"] == "warning"
    assert {p["id"] for p in data["patterns"]} >= {"client-disconnect", "scanner-404"}
    assert all(p["origin"].endswith("rules/noise.yaml") for p in data["patterns"])
    assert data["learned"] == []

    from agent.store import Store
    from agent.store import learned as learned_store

    with Store.open(home / "store.duckdb") as store:
        learned_store.add_rule(store, rule_id="ew-1", kind="early-warning", chain_id="C-0001", issue_id="ISS-0001",
                               definition={"observe": {"source": "log", "match": "pool exhausted"}, "title": "t"},
                               explanation="learned from ISS-0001 (chain C-0001): pool exhaustion preceded the 503s")
    learned = json.loads(cli("rules", "--learned", "--json").stdout)["learned"]
    assert [(r["id"], r["kind"], r["status"], r["chain_id"], r["issue_id"], r["origin"]) for r in learned] == [
        ("ew-1", "early-warning", "active", "C-0001", "ISS-0001", "learned")]
    assert learned[0]["explanation"].startswith("learned from ISS-0001")
    text = cli("rules")
    assert text.returncode == 0 and "check-not-persisted" in text.stdout and "ew-1" in text.stdout
