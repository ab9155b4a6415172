"""Labelled streams give exactly their expected verdicts: the contract's two-day stream through the CLI, and
our own recorded streams (tests/data/triage/<name>.jsonl with <name>.expected.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from agent.config import load_config
from agent.models import load_signals_file
from agent.store import Store
from agent.triage import Triage
from tests.conftest import EXAMPLES

STREAM = EXAMPLES / "triage-stream"
DATA = Path(__file__).parent / "data" / "triage"
CONTRACT_KEYS = ["signal_id", "fingerprint", "template", "verdict", "issue", "rule", "reason"]


def _expected(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_two_day_stream_through_the_cli_gives_exactly_the_expected_verdicts(cli, home):
    day1 = cli("triage", str(STREAM / "day1.jsonl"), "--json")
    assert day1.returncode == 0, day1.stderr
    resolved = cli("resolve", "--all", "--json")
    assert resolved.returncode == 0, resolved.stderr
    day2 = cli("triage", str(STREAM / "day2.jsonl"), "--json")
    assert day2.returncode == 0, day2.stderr

    got = _jsonl(day1.stdout) + _jsonl(day2.stdout)
    expected = _expected(STREAM / "expected.jsonl")
    assert [(g["signal_id"], g["verdict"]) for g in got] == [(e["signal_id"], e["verdict"]) for e in expected]

    # every line has the contract's keys, names the rule that decided and says why
    for g in got:
        assert list(g) == CONTRACT_KEYS
        assert g["fingerprint"].startswith("f1:") and g["template"] and g["rule"] and g["reason"]
        assert (g["issue"] is not None) == (g["verdict"] in ("new", "ongoing", "recurrence"))
    # --all resolved every issue day 1 opened
    day1_issues = sorted({g["issue"] for g in _jsonl(day1.stdout) if g["issue"]})
    assert sorted(json.loads(resolved.stdout)["resolved"]) == day1_issues

    by_id = {g["signal_id"]: g for g in got}
    # a recurrence reopens the same issue the failure mode had on day 1, later ones attach to it
    assert by_id["in0112"]["issue"] == by_id["in0008"]["issue"]
    assert by_id["in0113"]["issue"] == by_id["in0008"]["issue"]
    assert by_id["in0112"]["rule"] == "recurrence-after-resolve"
    # noise names the benign pattern or the check rule that made it noise
    assert by_id["in0016"]["rule"] == "noise:scanner-404"
    assert by_id["in0035"]["rule"] == "noise:client-disconnect"
    assert by_id["in0015"]["rule"] == "check-not-persisted"

    # what the CLI printed is what the store holds (a real DuckDB file)
    con = duckdb.connect(str(home / "store.duckdb"), read_only=True)
    try:
        stored = dict(con.execute("SELECT signal_id, verdict FROM triage_results").fetchall())
        statuses = dict(con.execute(
            "SELECT issue_id, arg_max(status, seq) FROM issue_events GROUP BY issue_id").fetchall())
        fps = dict(con.execute("SELECT id, fingerprint FROM signals").fetchall())
        ingestion_order = [r[0] for r in con.execute("SELECT id FROM signals ORDER BY seq").fetchall()]
    finally:
        con.close()
    assert stored == {g["signal_id"]: g["verdict"] for g in got}
    assert statuses[by_id["in0112"]["issue"]] == "open"
    assert all(fps[g["signal_id"]] == g["fingerprint"] for g in got)
    assert ingestion_order == [g["signal_id"] for g in got]  # stored in file order


def test_triage_is_idempotent_and_fresh_leaves_the_store_alone(cli, home):
    first = cli("triage", str(STREAM / "day1.jsonl"), "--json")
    again = cli("triage", str(STREAM / "day1.jsonl"), "--json")
    assert first.returncode == again.returncode == 0
    assert _jsonl(again.stdout) == _jsonl(first.stdout)  # judged once, the stored verdicts come back
    issues = json.loads(cli("issues", "--json").stdout)
    assert len(issues) == len({g["issue"] for g in _jsonl(first.stdout) if g["issue"]})

    # --fresh judges day 2 against an empty history: no recurrence, and the store is not written
    fresh = cli("triage", str(STREAM / "day2.jsonl"), "--fresh", "--json")
    assert fresh.returncode == 0, fresh.stderr
    verdicts = {g["signal_id"]: g["verdict"] for g in _jsonl(fresh.stdout)}
    assert verdicts["in0112"] == "new" and "recurrence" not in verdicts.values()
    assert json.loads(cli("issues", "--json").stdout) == issues


def test_bad_signal_file_is_one_line_and_stores_nothing(cli, home, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = (STREAM / "day1.jsonl").read_text().splitlines()[:3]
    bad.write_text("\n".join(lines + ['{"ts": "2026-12-05T00:00:00Z", "source": "log"}']) + "\n")
    proc = cli("triage", str(bad), "--json")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "bad.jsonl:4" in proc.stderr and "message" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert json.loads(cli("issues", "--json").stdout) == []


@pytest.mark.parametrize("name", ["flapping-health", "variable-messages", "benign", "maintenance"])
def test_recorded_stream(name, tmp_path):
    config = DATA / f"{name}.yaml"
    cfg = load_config(tmp_path / "home", config if config.exists() else None)
    with Store.open(tmp_path / "store.duckdb") as store:
        results = Triage(store, cfg).judge(load_signals_file(DATA / f"{name}.jsonl"))
    expected = _expected(DATA / f"{name}.expected.jsonl")
    assert [(r.signal_id, r.verdict) for r in results] == [(e["signal_id"], e["verdict"]) for e in expected]


def test_flapping_check_is_noise_until_the_third_consecutive_failure(tmp_path):
    cfg = load_config(tmp_path / "home")
    with Store.open(tmp_path / "store.duckdb") as store:
        r = {x.signal_id: x for x in Triage(store, cfg).judge(load_signals_file(DATA / "flapping-health.jsonl"))}
    assert r["fh02"].reason.startswith("health check https://shop.example.com/healthz failed 1 time(s) in a row")
    assert "an issue needs 3" in r["fh03"].reason
    assert r["fh08"].verdict == "new" and r["fh08"].rule == "first-error-of-fingerprint"
    assert r["fh09"].issue == r["fh13"].issue == r["fh08"].issue


def test_messages_differing_only_in_variable_parts_share_a_fingerprint(tmp_path):
    cfg = load_config(tmp_path / "home")
    with Store.open(tmp_path / "store.duckdb") as store:
        r = {x.signal_id: x for x in Triage(store, cfg).judge(load_signals_file(DATA / "variable-messages.jsonl"))}
    # numbers, uuids, IPs with ports, durations in s and ms: one failure mode, one issue
    assert r["vm01"].fingerprint == r["vm02"].fingerprint == r["vm03"].fingerprint == r["vm09"].fingerprint
    assert r["vm02"].issue == r["vm03"].issue == r["vm01"].issue
    # different words, or another service: another failure mode
    assert r["vm04"].fingerprint != r["vm01"].fingerprint
    assert r["vm05"].fingerprint != r["vm01"].fingerprint
    assert len({r[i].issue for i in ("vm01", "vm04", "vm05", "vm06")}) == 4
    # hex transaction ids and pids
    assert r["vm06"].fingerprint == r["vm07"].fingerprint


def test_resolve_then_the_same_failure_is_a_recurrence_then_ongoing(cli, home):
    first = _jsonl(cli("triage", str(DATA / "variable-messages.jsonl"), "--json").stdout)
    issue = first[0]["issue"]
    resolved = cli("resolve", issue)
    assert resolved.returncode == 0 and issue in resolved.stdout
    # the same failure mode again, with other numbers and ids, after the resolution (stamped now)
    lines = [json.loads(line) for line in (DATA / "variable-messages.jsonl").read_text().splitlines()[:3]]
    for n, rec in enumerate(lines):
        rec["id"] = f"again{n}"
        rec["ts"] = f"2099-10-09T08:0{n}:00Z"
    again = home / "again.jsonl"
    again.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    got = _jsonl(cli("triage", str(again), "--json").stdout)
    assert [g["verdict"] for g in got] == ["recurrence", "ongoing", "ongoing"]
    assert {g["issue"] for g in got} == {issue}
    shown = json.loads(cli("show", issue, "--json").stdout)
    events = [t["event"] for t in shown["timeline"] if t["kind"] == "state"]
    assert events == ["opened", "resolved", "recurrence"]
    assert shown["issue"]["status"] == "open"


def test_fast_reading_of_signal_files_agrees_with_the_contract_reader(tmp_path):
    from agent.errors import InputError
    from agent.triage import load_signals

    assert load_signals(str(STREAM / "day1.jsonl")) == load_signals_file(STREAM / "day1.jsonl")
    lines = (STREAM / "day1.jsonl").read_text().splitlines()
    two = tmp_path / "two-per-line.jsonl"
    two.write_text(lines[0] + "\n\n" + lines[1] + "," + lines[2] + "\n")
    with pytest.raises(InputError, match=r"two-per-line.jsonl:3: invalid JSON"):
        load_signals(str(two))
    bad = tmp_path / "bad-level.jsonl"
    bad.write_text(lines[0] + "\n\n\n" + lines[1].replace('"INFO"', '"LOUD"') + "\n")
    with pytest.raises(InputError, match=r"bad-level.jsonl:4: field 'level'"):
        load_signals(str(bad))
