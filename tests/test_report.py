"""The report's figures, computed from a store built from a recorded week (tests/data/report/), against
figures worked out by hand from that history; the read-only views and SQL guard; the CLI."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from agent.models import Chain, CheckResult, GateChecks, GateResult, Signal
from agent.report import compute_report, compute_status, headline
from agent.report_html import chain_layers, chain_svg, render_html
from agent.store import Store
from agent.store import chains as chains_store
from agent.store import issues as issues_store
from agent.store import report as q
from agent.store import state as state_store
from agent.store.signals import insert_signals

DATA = Path(__file__).parent / "data" / "report"


def _fixture():
    import importlib.util

    spec = importlib.util.spec_from_file_location("report_fixture", DATA / "fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def T(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def store():
    s = Store.open(None)
    _fixture().build(s)
    yield s
    s.close()


@pytest.fixture(scope="module")
def report(store):
    return compute_report(store)


@pytest.fixture(scope="module")
def home_with_store(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    s = Store.open(home / "store.duckdb")
    _fixture().build(s)
    s.close()
    return home


# --------------------------------------------------------------------------- the contract's figures, by hand


def test_headline_figures_equal_the_hand_computed_ones(report):
    # issues: ISS-0001..ISS-0006 (five failures, one early warning ISS-0004)
    assert report["issues_tracked"] == 6
    # a chain passed all four checks: ISS-0001 (C-0001, C-0006), ISS-0002 (C-0003), ISS-0006 (C-0007);
    # ISS-0003's only chain C-0004 failed counterfactual
    assert report["issues_with_formal_rca"] == 3
    assert report["issues_with_formal_rca_ids"] == ["ISS-0001", "ISS-0002", "ISS-0006"]
    # active: ISS-0001 verifying, ISS-0003 needs-human, ISS-0004 open (warning), ISS-0005 open (recurred)
    assert report["active_issues"] == 4
    # latest cycle daemon-0003 [2026-03-08T00:00, running]: ISS-0006 resolved 04:45 in it (cycle id),
    # opened 04:00 -> 0.75 h; ISS-0005 resolved by hand 05:00 without a cycle id, inside the window,
    # opened 03:00 -> 2 h; mean 1.375 h
    assert report["mttr_hours_latest_cycle"] == pytest.approx(1.375)
    # f1:oomkill: resolved through passed C-0001 at 03-02T04:00, occurred again (s25) 03-08T02:00.
    # f1:upstream-timeout recurred too, but its resolution was by hand (no validated chain): not a repeat.
    assert report["repeat_issues"] == 1
    # recurrences: ISS-0001 (re-analysed: C-0005 and C-0006 both escalated by the archive check) and
    # ISS-0005 (not re-analysed)
    assert report["recurrences_escalated"] == 1
    # verified resolutions that held: C-0003 (config / stale-client-credentials) and C-0007
    # (schedule / cert-renewal-disabled); C-0001 was archived did-not-hold. Lifetime: first signal
    # 03-02T00:00 to latest signal 03-08T08:00 = 6 d 8 h = 6.3333 d = 0.90476 weeks -> 2 / 0.90476
    assert report["learning_velocity_per_week"] == pytest.approx(2 / ((6 + 8 / 24) / 7), abs=1e-3)
    # verdicts in history.yaml: noise s4 s5 s7 s12 s21 s26 s34; genuine: new s3 s14 s18 s24 s29 s30,
    # ongoing s10 s19, recurrence s25 s33
    assert report["noise_signals"] == 7
    assert report["genuine_signals"] == 10
    assert list(headline(report)) == ["issues_tracked", "issues_with_formal_rca", "active_issues",
                                      "mttr_hours_latest_cycle", "repeat_issues", "recurrences_escalated",
                                      "learning_velocity_per_week", "noise_signals", "genuine_signals"]


def test_mttr_per_cycle_and_the_latest_cycle(report):
    per = {c["cycle"]: c for c in report["mttr_per_cycle"]}
    # ISS-0001: opened 03:12:09, resolved 04:00:00 -> 47 min 51 s
    assert per["daemon-0001"]["resolved"] == ["ISS-0001"]
    assert per["daemon-0001"]["mttr_hours"] == pytest.approx((47 * 60 + 51) / 3600, abs=1e-4)
    # ISS-0002: 02:00 -> 06:30
    assert per["daemon-0002"]["mttr_hours"] == pytest.approx(4.5)
    assert per["daemon-0003"]["resolved"] == ["ISS-0005", "ISS-0006"]
    assert report["latest_cycle"]["cycle"] == "daemon-0003"
    assert report["mttr_scope"] == "latest cycle"


def test_repeats_recurrences_and_eliminated_classes(report):
    (rep,) = report["repeat_failure_modes"]
    assert (rep["fingerprint"], rep["issue"], rep["resolution_chain"], rep["signal"]) == ("f1:oomkill", "ISS-0001", "C-0001", "s25")
    assert rep["recurred_at"] == T("2026-03-08T02:00:00Z")
    recs = {r["issue"]: r for r in report["recurrences"]}
    assert recs["ISS-0001"]["escalated"] and recs["ISS-0001"]["matched"] == "C-0001"
    assert recs["ISS-0001"]["chains"] == ["C-0005", "C-0006"]
    assert not recs["ISS-0005"]["escalated"] and not recs["ISS-0005"]["reanalysed"]
    classes = [(c["class"], c["chain"], c["eliminated_at"]) for c in report["failure_classes_eliminated"]]
    assert classes == [("config / stale-client-credentials", "C-0003", T("2026-03-05T06:30:00Z")),
                       ("schedule / cert-renewal-disabled", "C-0007", T("2026-03-08T04:45:00Z"))]


def test_noise_per_source_gate_rejections_and_stages(report):
    ns = report["noise_by_source"]
    # health: s4 s5 s26 noise, s6 s35 info; log: noise s7 s12 s21 s34, genuine s3 s10 s18 s19 s25 s29 s33
    assert ns["health"] == {"judged": 5, "info": 2, "noise": 3, "genuine": 0, "noise_ratio": 1.0}
    assert ns["log"]["noise"] == 4 and ns["log"]["genuine"] == 7
    assert ns["log"]["noise_ratio"] == pytest.approx(4 / 11, abs=1e-4)
    assert ns["probe"]["noise_ratio"] is None
    g = report["gate_rejections"]
    assert (g["judged"], g["passed"], g["rejected"], g["archive_escalations"]) == (7, 4, 3, 2)
    assert {k: v["failed"] for k, v in g["by_check"].items()} == {
        "reproduce": 0, "archive": 1, "completeness": 1, "counterfactual": 1}
    assert "vague mechanism" in g["by_check"]["completeness"]["reasons"][0]["reason"]
    st = report["stage_hours"]
    # verify: ISS-0001 03:45->04:00 (0.25) and 03-08 02:20->now 08:00 (5.6667); ISS-0002 02:10->06:30 (4.3333);
    # ISS-0006 04:10->04:45 (0.5833)
    assert st["verify"]["count"] == 4
    assert st["verify"]["total_hours"] == pytest.approx(0.25 + (5 + 40 / 60) + (4 + 20 / 60) + 35 / 60, abs=1e-3)
    # needs-human: ISS-0003 from 03-05T08:03 to now 03-08T08:00
    assert st["needs_human"]["total_hours"] == pytest.approx(72 - 3 / 60, abs=1e-3)
    # detect (status open): 7m51s + 10m (ISS-0001 twice), 5m, 2m, 6h30 (ISS-0004 to now), 2h + 1h (ISS-0005), 5m
    assert st["detect"]["count"] == 8
    assert st["detect"]["total_hours"] == pytest.approx((7 * 60 + 51) / 3600 + (10 + 5 + 2 + 5) / 60 + 6.5 + 3, abs=1e-3)


def test_detection_lead_time_of_learned_rules(report):
    lead = report["detection_lead_time"]
    rules = {r["rule"]: r for r in lead["rules"]}
    # ew-0001 fired on s24 (01:30), the OOM came back at 02:00 (s25): 30 min earlier than the symptom
    assert rules["ew-0001"]["warnings"] == 1 and rules["ew-0001"]["mean_lead_time_s"] == 1800.0
    assert rules["ew-0001"]["lead_time_s_in_lesson"] == 1929
    assert rules["ew-0002"]["warnings"] == 0
    assert lead["before_learning_s"] == 0.0 and lead["after_learning_mean_s"] == 1800.0


def test_time_series_cover_the_lifetime(report):
    ts = report["timeseries"]
    assert ts["unit"] == "day"
    days = [p["t"].date().isoformat() for p in ts["issues"]]
    assert days == [f"2026-03-0{d}" for d in range(2, 9)]
    by_day = {p["t"].day: p for p in ts["issues"]}
    assert by_day[8]["opened"] == 3 and by_day[8]["resolved"] == 2  # ISS-0004/5/6 opened; ISS-0005, ISS-0006
    assert by_day[8]["active"] == 4
    assert by_day[5]["active"] == 1  # ISS-0003 needs-human at the end of 03-05
    sig = {p["t"].day: p for p in ts["signals"]}
    assert (sig[2]["noise"], sig[2]["genuine"]) == (4, 2)  # s4 s5 s7 s12 / s3 s10
    assert sum(p["noise"] for p in ts["signals"]) == 7
    assert [p["eliminated"] for p in ts["classes_eliminated"]] == [0, 0, 0, 1, 1, 1, 2]


def test_issue_summaries_pick_the_passed_chain_and_its_fix(report):
    by_id = {i["id"]: i for i in report["issues"]}
    assert (by_id["ISS-0001"]["chain"], by_id["ISS-0001"]["fix"], by_id["ISS-0001"]["gate_passed"]) == ("C-0006", "FIX-0003", True)
    assert by_id["ISS-0001"]["recurrences"] == 1
    assert (by_id["ISS-0003"]["chain"], by_id["ISS-0003"]["gate_passed"], by_id["ISS-0003"]["fix"]) == ("C-0004", False, None)
    assert by_id["ISS-0004"]["chain"] is None


def test_explicit_now_moves_the_open_ends(store):
    later = compute_report(store, now=T("2026-03-09T08:00:00Z"))
    assert later["stage_hours"]["needs_human"]["total_hours"] == pytest.approx(96 - 3 / 60, abs=1e-3)
    assert later["mttr_hours_latest_cycle"] == pytest.approx(1.375)


def test_status_is_one_screen_of_what_matters(store):
    st = compute_status(store)
    assert [i["id"] for i in st["active_issues"]] == ["ISS-0003", "ISS-0004", "ISS-0005", "ISS-0001"]
    assert [i["id"] for i in st["needs_human"]] == ["ISS-0003"]
    assert st["last_cycle"]["id"] == "daemon-0003" and st["last_cycle"]["running"]
    assert st["last_cycle"]["resolved"] == ["ISS-0005", "ISS-0006"]
    # the last hour before 08:00: s33 (genuine, 07:00), s34 (noise, 07:30), s35 (info, 08:00)
    assert st["signals"]["last_hour"] == {"total": 3, "genuine": 1, "noise": 1, "info": 1, "untriaged": 0}
    assert st["signals"]["total"] == 35 and st["signals"]["untriaged"] == 0
    assert st["headline"]["repeat_issues"] == 1


# --------------------------------------------------------------------------- edge cases of the definitions


def test_empty_store_reports_zeros_and_nulls():
    s = Store.open(None)
    r = compute_report(s)
    assert headline(r) == {"issues_tracked": 0, "issues_with_formal_rca": 0, "active_issues": 0,
                           "mttr_hours_latest_cycle": None, "repeat_issues": 0, "recurrences_escalated": 0,
                           "learning_velocity_per_week": 0.0, "noise_signals": 0, "genuine_signals": 0}
    assert r["timeseries"]["issues"] == [] and r["issues"] == []
    assert "no data yet" in render_html(s, report=r)
    assert compute_status(s)["active_issues"] == []


def _gate(passed: bool, escalated: bool = False) -> GateResult:
    ok = CheckResult(passed=True, reason="ok")
    arch = CheckResult(passed=passed, reason="archive", escalated=escalated)
    return GateResult(passed=passed, elapsed_ms=1.0,
                      checks=GateChecks(reproduce=ok, archive=arch, completeness=ok, counterfactual=ok))


def _chain() -> Chain:
    return Chain.model_validate(json.loads((DATA / "chains" / "c7.json").read_text()))


def test_without_cycles_mttr_covers_the_lifetime_and_a_manual_resolution_is_not_validated():
    s = Store.open(None)
    insert_signals(s, [Signal(id="a", ts="2026-01-01T00:00:00Z", source="log", level="ERROR", message="boom")])
    iid = issues_store.open_issue(s, fingerprint="f1:x", title="boom", ts=T("2026-01-01T00:00:00Z"), signal_id="a")
    issues_store.resolve(s, iid, T("2026-01-01T03:00:00Z"))
    issues_store.add_event(s, iid, "open", "recurrence", T("2026-01-02T00:00:00Z"))
    issues_store.add_occurrence(s, iid, "a", T("2026-01-02T00:00:00Z"), "recurrence")
    r = compute_report(s)
    assert r["mttr_scope"].startswith("lifetime") and r["latest_cycle"] is None
    assert r["mttr_hours_latest_cycle"] == pytest.approx(3.0)
    assert r["repeat_issues"] == 0  # resolved by hand: nothing validated came back
    assert r["recurrences_escalated"] == 0 and len(r["recurrences"]) == 1
    # lifetime is 1 day minimum
    assert r["lifetime"]["days"] == pytest.approx(1.0)


def test_a_gate_result_after_the_resolution_does_not_validate_it():
    s = Store.open(None)
    cyc = state_store.start_cycle(s, "eval", at=T("2026-01-01T00:00:00Z"))
    iid = issues_store.open_issue(s, fingerprint="f1:y", title="y", ts=T("2026-01-01T01:00:00Z"), cycle_id=cyc)
    issues_store.resolve(s, iid, T("2026-01-01T02:00:00Z"), cycle_id=cyc)
    cid = chains_store.save_chain(s, _chain(), issue_id=iid, analyst="offline", at=T("2026-01-01T03:00:00Z"))
    chains_store.save_gate_result(s, cid, iid, _gate(True), at=T("2026-01-01T03:00:00Z"))
    issues_store.add_event(s, iid, "open", "recurrence", T("2026-01-01T04:00:00Z"), cycle_id=cyc)
    issues_store.add_occurrence(s, iid, "z", T("2026-01-01T04:00:00Z"), "recurrence")
    r = compute_report(s)
    assert r["repeat_issues"] == 0
    assert r["issues_with_formal_rca"] == 1
    # the gate result after the recurrence escalated? it was recorded before the recurrence: not counted
    assert r["recurrences_escalated"] == 0
    assert r["mttr_hours_latest_cycle"] == pytest.approx(1.0)
    assert r["failure_classes_eliminated"] == []  # no verified fix, nothing archived


def test_an_unfinished_older_cycle_ends_where_the_next_one_starts():
    s = Store.open(None)
    c1 = state_store.start_cycle(s, "daemon", at=T("2026-01-01T00:00:00Z"))  # crashed: never ended
    a = issues_store.open_issue(s, fingerprint="f1:a", title="a", ts=T("2026-01-01T01:00:00Z"))
    issues_store.resolve(s, a, T("2026-01-01T02:00:00Z"))  # no cycle id: falls in c1
    state_store.start_cycle(s, "daemon", at=T("2026-01-02T00:00:00Z"))
    b = issues_store.open_issue(s, fingerprint="f1:b", title="b", ts=T("2026-01-02T01:00:00Z"))
    issues_store.resolve(s, b, T("2026-01-02T05:00:00Z"))
    r = compute_report(s)
    per = {c["cycle"]: c for c in r["mttr_per_cycle"]}
    assert per[c1]["resolved"] == [a] and per[c1]["mttr_hours"] == pytest.approx(1.0)
    assert r["latest_cycle"]["resolved"] == [b] and r["mttr_hours_latest_cycle"] == pytest.approx(4.0)


def _verified_resolution(s: Store, fp: str, at: str) -> str:
    """An issue resolved through a passed chain whose fix was verified, the way remedy/verify.py records it."""
    from agent.store import fixes as fixes_store

    t = T(at)
    iid = issues_store.open_issue(s, fingerprint=fp, title=fp, ts=t)
    issues_store.add_occurrence(s, iid, f"{fp}-1", t, "new")
    cid = chains_store.save_chain(s, _chain(), issue_id=iid, analyst="offline", mode="cert-renewal-disabled", at=t)
    chains_store.save_gate_result(s, cid, iid, _gate(True), at=t)
    fid = fixes_store.create_fix(s, issue_id=iid, chain_id=cid, action="run_command", params={}, kind="eliminate",
                                 plan="p", at=t)
    fixes_store.add_fix_event(s, fid, "verified", at=t)
    issues_store.resolve(s, iid, T(at.replace("T00", "T01")), event="verified", chain_id=cid, fix_id=fid)
    chains_store.archive_chain(s, cid, outcome="resolved", resolved_at=T(at.replace("T00", "T01")))
    return iid


def test_a_class_whose_failure_came_back_was_not_eliminated():
    s = Store.open(None)
    insert_signals(s, [Signal(id="x", ts="2026-01-01T00:00:00Z", source="alert", level="ERROR", message="cert")])
    iid = _verified_resolution(s, "f1:cert", "2026-01-01T00:00:00Z")
    assert [c["chain"] for c in compute_report(s)["failure_classes_eliminated"]] == ["C-0001"]
    # the failure mode occurs again: nobody archived the chain as did-not-hold, the class still does not count
    issues_store.add_event(s, iid, "open", "recurrence", T("2026-01-05T00:00:00Z"))
    issues_store.add_occurrence(s, iid, "f1:cert-2", T("2026-01-05T00:00:00Z"), "recurrence")
    r = compute_report(s)
    assert r["failure_classes_eliminated"] == [] and r["learning_velocity_per_week"] == 0.0
    assert r["repeat_issues"] == 1


def test_a_fix_that_did_not_hold_and_an_escalated_reanalysis_is_an_escalated_recurrence():
    from agent.chat import OfflineAnswerer
    from agent.store import fixes as fixes_store

    s = Store.open(None)
    t = T("2026-01-01T00:00:00Z")
    iid = issues_store.open_issue(s, fingerprint="f1:d", title="disk", ts=t)
    cid = chains_store.save_chain(s, _chain(), issue_id=iid, analyst="offline", at=t)
    chains_store.save_gate_result(s, cid, iid, _gate(True), at=t)
    issues_store.add_event(s, iid, "fixing", "analysed", t, chain_id=cid)
    fid = fixes_store.create_fix(s, issue_id=iid, chain_id=cid, action="run_command", params={}, kind="eliminate",
                                 plan="p", at=t)
    issues_store.add_event(s, iid, "verifying", "fixed", T("2026-01-01T00:10:00Z"), fix_id=fid)
    # what remedy/verify.py records when the watch step sees the symptom again
    fixes_store.add_verification(s, fix_id=fid, issue_id=iid, step="watch", passed=False, detail="symptom seen again",
                                 at=T("2026-01-01T00:20:00Z"))
    fixes_store.add_fix_event(s, fid, "failed", detail="did not hold", at=T("2026-01-01T00:20:00Z"))
    chains_store.archive_chain(s, cid, outcome="did-not-hold", resolved_at=None, at=T("2026-01-01T00:20:00Z"))
    issues_store.add_event(s, iid, "open", "fix-did-not-hold", T("2026-01-01T00:20:00Z"), chain_id=cid, fix_id=fid,
                           reason=f"{fid} did not hold: watch: symptom seen again")
    c2 = chains_store.save_chain(s, _chain(), issue_id=iid, analyst="offline", at=T("2026-01-01T00:30:00Z"))
    chains_store.save_gate_result(s, c2, iid, _gate(True, escalated=True), at=T("2026-01-01T00:30:00Z"))
    r = compute_report(s)
    (rec,) = r["recurrences"]
    assert (rec["kind"], rec["fix"], rec["escalated"], rec["chains"]) == ("fix-did-not-hold", fid, True, [c2])
    assert r["recurrences_escalated"] == 1
    assert r["repeat_issues"] == 0  # never resolved, so nothing validated came back
    a = OfflineAnswerer(s).answer("which failure modes recur?")
    assert f"Its fix {fid} did not hold in verification" in a.text and "escalated by the archive check" in a.text


def test_a_reader_of_a_store_without_the_views_still_gets_its_report(tmp_path):
    from agent.errors import InputError

    path = tmp_path / "store.duckdb"
    with Store.open(path) as s:
        _fixture().build(s)
        for v in q.view_names(s):
            s.execute(f"DROP VIEW {v}")
        s.execute("DELETE FROM migrations WHERE id = 60")  # as if written by a version before the views
    with Store.open(path, readonly=True) as s:
        assert headline(compute_report(s))["issues_tracked"] == 6
        assert "ISS-0001" in render_html(s)
        with pytest.raises(InputError, match="no v_\\* views yet"):
            q.check_views_only(s, "SELECT * FROM v_issues")
    with Store.open(path) as s:  # the next writer applies the migration
        assert "v_issues" in q.view_names(s)


def test_closed_warnings_do_not_count_in_mttr():
    s = Store.open(None)
    cyc = state_store.start_cycle(s, "demo", at=T("2026-01-01T00:00:00Z"))
    w = issues_store.open_issue(s, fingerprint="learned:r1", title="precursor", kind="warning",
                                ts=T("2026-01-01T00:00:00Z"), cycle_id=cyc)
    issues_store.resolve(s, w, T("2026-01-01T10:00:00Z"), event="warning-closed", cycle_id=cyc)
    f = issues_store.open_issue(s, fingerprint="f1:f", title="failure", ts=T("2026-01-01T01:00:00Z"), cycle_id=cyc)
    issues_store.resolve(s, f, T("2026-01-01T03:00:00Z"), cycle_id=cyc)
    r = compute_report(s)
    assert r["latest_cycle"]["resolved"] == [f] and r["mttr_hours_latest_cycle"] == pytest.approx(2.0)


# --------------------------------------------------------------------------- views and the SQL guard


def test_views_answer_with_the_store_history(store):
    names = q.view_names(store)
    for v in ("v_issues", "v_signals", "v_chains", "v_gate_results", "v_fixes", "v_verifications", "v_rules",
              "v_archive", "v_issue_events", "v_cycles", "v_triage", "v_occurrences"):
        assert v in names
    row = store.one("SELECT status, reopened, occurrences FROM v_issues WHERE id = 'ISS-0001'")
    assert row == {"status": "verifying", "reopened": 1, "occurrences": 3}
    row = store.one("SELECT root_category, fix_action, links FROM v_chains WHERE id = 'C-0006'")
    assert row == {"root_category": "process", "fix_action": "write_file", "links": 4}
    row = store.one("SELECT archive_passed, archive_escalated, archive_matched FROM v_gate_results WHERE chain_id = 'C-0005'")
    assert row == {"archive_passed": False, "archive_escalated": True, "archive_matched": "C-0001"}
    assert store.scalar("SELECT status FROM v_fixes WHERE id = 'FIX-0002'") == "verified"
    assert store.scalar("SELECT verdict FROM v_signals WHERE id = 's25'") == "recurrence"


@pytest.mark.parametrize("sql", [
    "INSERT INTO issues VALUES ('x')", "UPDATE issues SET title = 'x'", "DELETE FROM issues", "DROP TABLE issues",
    "ATTACH 'other.db'", "COPY issues TO '/tmp/x.csv'", "PRAGMA version", "CREATE TABLE t (a INT)",
    "SELECT 1; DROP TABLE issues", "SELECT 1; SELECT 2", "WITH x AS (SELECT 1) INSERT INTO issues SELECT * FROM x",
    "SET threads = 1", "EXPLAIN SELECT 1", "DETACH db", "SUMMARIZE issues", "", "   ", "-- only a comment",
    "VALUES (1)", "CALL pragma_version()", "INSTALL httpfs", "LOAD httpfs", "EXPORT DATABASE '/tmp/x'",
])
def test_sql_that_is_not_one_select_is_refused(sql):
    from agent.errors import InputError

    with pytest.raises(InputError):
        q.check_select(sql)


def test_sql_select_and_with_are_accepted_and_run(store):
    assert q.check_select("  -- why\n/* note */ SELECT 1;") == "-- why\n/* note */ SELECT 1"
    cols, rows, truncated = q.run_select(store, "WITH a AS (SELECT id FROM v_issues) SELECT count(*) AS n FROM a")
    assert cols == ["n"] and rows == [(6,)] and not truncated
    cols, rows, truncated = q.run_select(store, "SELECT i.id, c.id FROM v_issues i JOIN v_chains c ON c.issue_id = i.id",
                                         limit=3)
    assert cols == ["id", "id_1"] and len(rows) == 3 and truncated


@pytest.mark.parametrize("sql,message", [
    ("SELECT * FROM issues", "only the views"),
    ("SELECT * FROM v_issues WHERE id IN (SELECT issue_id FROM chains)", "only the views"),
    ("SELECT * FROM read_csv('/etc/passwd')", "table functions"),
    ("SELECT * FROM '/etc/passwd'", "only the views"),
    ("WITH issues AS (SELECT 1) SELECT * FROM issues", "may not reuse"),
    ("SELECT * FROM information_schema.tables", "only the views"),
    ("SELECT * FROM duckdb_tables()", "table functions"),
])
def test_the_views_only_guard(store, sql, message):
    from agent.errors import InputError

    with pytest.raises(InputError, match=message):
        q.check_views_only(store, sql)
    q.check_views_only(store, "WITH x AS (SELECT * FROM v_issues) SELECT x.id FROM x, range(2)")


def test_a_hardened_connection_cannot_read_files(home_with_store):
    from agent.errors import InputError

    s = Store.open(home_with_store / "store.duckdb", readonly=True)
    try:
        q.harden(s)
        with pytest.raises(InputError, match="disabled by configuration|Permission"):
            q.run_select(s, "SELECT * FROM read_csv('/etc/hostname')")
        assert q.run_select(s, "SELECT count(*) FROM v_signals")[1] == [(35,)]
    finally:
        s.close()


# --------------------------------------------------------------------------- HTML


def test_html_is_self_contained_with_charts_and_one_chain_graph_per_issue_with_a_chain(store, report):
    page = render_html(store, report=report)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "<link" not in page.lower() and "@import" not in page
    for chart in ("chart-issues", "chart-mttr", "chart-signals", "chart-classes"):
        assert f'id="{chart}"' in page
    with_chain = [i["id"] for i in report["issues"] if i["chain"]]
    assert with_chain == ["ISS-0001", "ISS-0002", "ISS-0003", "ISS-0006"]
    for iid in with_chain:
        assert f'<article class="chain-card" id="issue-{iid}"' in page
        assert f'href="#issue-{iid}"' in page
    assert page.count('<svg class="chain-graph"') == len(with_chain)
    assert 'data-chain="C-0006"' in page and "ROOT CAUSE" in page
    assert page.count('class="issue-row"') == 6
    # the gate result and the fix of each shown chain
    card = page.split('id="issue-ISS-0003"')[1].split("</article>")[0]
    assert "rejected" in card and "counterfactual" in card and "not necessary" in card
    card = page.split('id="issue-ISS-0006"')[1].split("</article>")[0]
    assert "run_command" in card and "FIX-0004" in card and "verified" in card


def test_html_shows_the_latest_issues_of_a_long_history(store, report):
    page = render_html(store, report=report, max_issues=2)
    assert page.count('class="issue-row"') == 2 and 'data-issue="ISS-0006"' in page
    assert "4 older ones are in" in page
    assert page.count('<svg class="chain-graph"') == 1  # of the two latest, only ISS-0006 has a chain


def test_html_escapes_hostile_text():
    s = Store.open(None)
    evil = '<script>alert("x")</script><img src="http://evil.example/x.png">'
    insert_signals(s, [Signal(id="e1", ts="2026-01-01T00:00:00Z", source="log", level="ERROR", message=evil)])
    iid = issues_store.open_issue(s, fingerprint="f1:e", title=evil, ts=T("2026-01-01T00:00:00Z"), signal_id="e1")
    chain = _chain().model_copy(deep=True)
    chain.nodes[0].statement = evil
    chains_store.save_chain(s, chain, issue_id=iid, analyst="offline", at=T("2026-01-01T00:01:00Z"))
    page = render_html(s)
    assert "<script>alert" not in page and 'src="http://evil' not in page
    assert "&lt;script&gt;" in page


def test_chain_graph_layers_follow_the_links():
    chain = json.loads((DATA / "chains" / "c6.json").read_text())
    assert chain_layers(chain) == [["n0"], ["n1"], ["n2"], ["n3"], ["n4"]]
    svg = str(chain_svg(chain, "g"))
    assert svg.count('class="node ') == 5 and svg.count('class="link"') == 4
    assert 'class="node root" data-node="n4"' in svg and 'class="node symptom" data-node="n0"' in svg
    # an orphan node (not linked to the symptom) is drawn on its own row, not dropped
    chain["nodes"].append({"id": "n9", "statement": "an unrelated claim"})
    assert chain_layers(chain)[-1] == ["n9"]


# --------------------------------------------------------------------------- CLI


def test_cli_report_json_status_and_html(cli, home_with_store, tmp_path):
    proc = cli("report", "--json", "--html", str(tmp_path / "r.html"), home=home_with_store)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {k: out[k] for k in ("issues_tracked", "issues_with_formal_rca", "active_issues", "repeat_issues",
                                "recurrences_escalated", "noise_signals", "genuine_signals")} == {
        "issues_tracked": 6, "issues_with_formal_rca": 3, "active_issues": 4, "repeat_issues": 1,
        "recurrences_escalated": 1, "noise_signals": 7, "genuine_signals": 10}
    assert out["mttr_hours_latest_cycle"] == pytest.approx(1.375)
    assert (tmp_path / "r.html").read_text().count('<svg class="chain-graph"') == 4
    proc = cli("report", home=home_with_store)
    assert proc.returncode == 0 and "repeat issues" in proc.stdout and "MTTR per cycle" in proc.stdout
    proc = cli("status", "--json", home=home_with_store)
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert [i["id"] for i in st["needs_human"]] == ["ISS-0003"] and st["last_cycle"]["id"] == "daemon-0003"
    proc = cli("status", home=home_with_store)
    assert proc.returncode == 0 and "ISS-0003" in proc.stdout and "needs-human" in proc.stdout


def test_cli_sql_outputs_and_refusals(cli, home_with_store):
    proc = cli("sql", "SELECT id, status, opened_at FROM v_issues ORDER BY id", "--json", home=home_with_store)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows[0] == {"id": "ISS-0001", "status": "verifying", "opened_at": "2026-03-02T03:12:09Z"}
    proc = cli("sql", "SELECT id, kind FROM issues ORDER BY id LIMIT 2", "--csv", home=home_with_store)
    assert list(csv.reader(io.StringIO(proc.stdout))) == [["id", "kind"], ["ISS-0001", "failure"], ["ISS-0002", "failure"]]
    before = (home_with_store / "store.duckdb").stat().st_mtime_ns
    for bad in ("DELETE FROM issues", "DROP TABLE issues", "SELECT 1; DELETE FROM issues", "ATTACH 'x.db'",
                "COPY issues TO 'x.csv'", "PRAGMA database_list", "UPDATE issues SET title = ''"):
        proc = cli("sql", bad, home=home_with_store)
        assert proc.returncode == 2, (bad, proc.stdout)
        assert proc.stderr.startswith("selfheal: error: ") and len(proc.stderr.strip().splitlines()) == 1
    proc = cli("sql", "SELECT * FROM read_text('/etc/hostname')", home=home_with_store)
    assert proc.returncode == 2 and "disabled by configuration" in proc.stderr
    assert (home_with_store / "store.duckdb").stat().st_mtime_ns == before
    assert json.loads(cli("sql", "SELECT count(*) AS n FROM issues", "--json", home=home_with_store).stdout) == [{"n": 6}]


def test_an_issue_grouped_into_another_issues_chain_has_its_formal_rca():
    from agent.chat import OfflineAnswerer

    s = Store.open(None)
    t = T("2026-01-01T00:00:00Z")
    parent = issues_store.open_issue(s, fingerprint="f1:p", title="health 503", ts=t)
    child = issues_store.open_issue(s, fingerprint="f1:c", title="OOM kill", ts=t)
    cid = chains_store.save_chain(s, _chain(), issue_id=parent, analyst="offline", at=t)
    chains_store.save_gate_result(s, cid, parent, _gate(True), at=t)
    issues_store.add_event(s, parent, "fixing", "analysed", t, chain_id=cid)
    issues_store.add_event(s, child, "verifying", "grouped", t, chain_id=cid,
                           reason=f"a link of {parent}'s causal chain (node n1); resolved with it")
    r = compute_report(s)
    assert r["issues_with_formal_rca_ids"] == [parent, child]
    kid = next(i for i in r["issues"] if i["id"] == child)
    assert (kid["chain"], kid["chain_issue"], kid["gate_passed"]) == (cid, parent, True)
    page = render_html(s, report=r)
    assert page.count('<svg class="chain-graph"') == 1 and f'(of {parent})' in page
    a = OfflineAnswerer(s).answer(f"what happened to {child}?")
    assert f"It is one of the links of {parent}'s chain {cid}: a link of" in a.text
    assert f"Why (chain {cid}, gate passed)" in a.text and cid in a.refs["chains"]
