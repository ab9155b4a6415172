"""Triage against history: state that survives processes, the daemon's pending pass, recurrences that name the
fix that did not hold, and learned rules (early warning, per-check threshold, benign)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agent.config import load_config
from agent.models import Chain, Signal
from agent.store import Store
from agent.store import chains as chain_store
from agent.store import fixes as fix_store
from agent.store import issues as issue_store
from agent.store import learned as learned_store
from agent.store import signals as signal_store
from agent.triage import Triage, triage_pending
from tests.conftest import EXAMPLES

T0 = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def health(i: int, ok: bool, *, minutes: float | None = None, service: str = "checkout-api") -> Signal:
    url = f"https://{service}.internal/health"
    return Signal(id=f"h{i}", ts=_at(i if minutes is None else minutes), source="health", service=service,
                  host="mon-1", level="INFO" if ok else "ERROR",
                  message=f"GET {url} -> " + ("200 OK (0.012 s)" if ok else f"503 Service Unavailable ({i}.5 s)"),
                  attrs={"url": url})


def log(i: int, message: str, *, level: str = "ERROR", service: str = "checkout-api", minutes: float | None = None,
        source: str = "log") -> Signal:
    return Signal(id=f"l{i}", ts=_at(i if minutes is None else minutes), source=source, service=service,
                  host="web-1", level=level, message=message)


def metric(i: int, value: float, *, level: str = "INFO") -> Signal:
    return Signal(id=f"m{i}", ts=_at(i), source="metric", service="checkout-api", host="web-1", level=level,
                  message=f"worker_rss_mb={value:g}", value=value, attrs={"metric": "worker_rss_mb"})


def test_fingerprints_and_check_counts_survive_a_new_process(tmp_path):
    cfg = load_config(tmp_path / "home")
    path = tmp_path / "store.duckdb"
    with Store.open(path) as store:
        first = Triage(store, cfg).judge([health(1, False), health(2, False),
                                          log(3, "Out of memory: Killed process 4121 (gunicorn)")])
    assert [r.verdict for r in first] == ["noise", "noise", "new"]
    with Store.open(path) as store:  # another process: everything comes from the store
        second = Triage(store, cfg).judge([health(4, False), log(5, "Out of memory: Killed process 977 (gunicorn)")])
        assert store.scalar("SELECT count(*) FROM fingerprint_clusters") >= 2
    assert [r.verdict for r in second] == ["new", "ongoing"]  # the third consecutive failure, across processes
    assert second[1].fingerprint == first[2].fingerprint and second[1].issue == first[2].issue
    assert second[0].fingerprint == first[0].fingerprint


def test_two_triages_of_one_store_take_each_others_history(tmp_path):
    cfg = load_config(tmp_path / "home")
    with Store.open(tmp_path / "store.duckdb") as store:
        a, b = Triage(store, cfg), Triage(store, cfg)
        assert a.judge([log(1, "TLS certificate for api.internal expired 3 days ago")])[0].verdict == "new"
        got = b.judge([log(2, "TLS certificate for api.internal expired 4 days ago")])[0]
        assert got.verdict == "ongoing"
        assert a.judge([log(3, "TLS certificate for api.internal expired 5 days ago")])[0].issue == got.issue


def test_triage_pending_judges_stored_signals_in_ingestion_order(tmp_path):
    cfg = load_config(tmp_path / "home")
    with Store.open(tmp_path / "store.duckdb") as store:
        # stored by ingest in this order (timestamps deliberately not in order)
        batch = [health(5, False, minutes=5), health(1, False, minutes=1), health(3, False, minutes=3),
                 log(9, "disk full on /var/lib/postgresql (write failed)")]
        signal_store.insert_signals(store, batch)
        out = triage_pending(store, cfg)
        assert [(r.signal_id, r.verdict) for r in out] == [("h5", "noise"), ("h1", "noise"), ("h3", "new"),
                                                            ("l9", "new")]
        assert triage_pending(store, cfg) == []  # nothing left
        fps = dict(store.execute("SELECT id, fingerprint FROM signals").fetchall())
        assert fps == {r.signal_id: r.fingerprint for r in out}
        signal_store.insert_signals(store, [health(6, False, minutes=6)])
        assert [(r.signal_id, r.verdict) for r in triage_pending(store, cfg)] == [("h6", "ongoing")]


def test_recurrence_reopens_the_issue_and_names_the_chain_and_fix_that_did_not_hold(tmp_path):
    cfg = load_config(tmp_path / "home")
    chain = Chain.model_validate(json.loads((EXAMPLES / "gate-pass.json").read_text())["chain"])
    oom = "Out of memory: Killed process {} (gunicorn)"
    with Store.open(tmp_path / "store.duckdb") as store:
        triage = Triage(store, cfg)
        first = triage.judge([log(1, oom.format(4121))])[0]
        issue = first.issue
        chain_id = chain_store.save_chain(store, chain, issue_id=issue, analyst="offline", passed=True)
        fix_id = fix_store.create_fix(store, issue_id=issue, chain_id=chain_id, action="set_config",
                                      params={"key": "image_cache_max_items", "value": "500"}, kind="eliminate",
                                      plan="bound the cache")
        fix_store.add_fix_event(store, fix_id, "verified")
        resolved_at = T0 + timedelta(hours=1)
        chain_store.archive_chain(store, chain_id, outcome="resolved", resolved_at=resolved_at)
        issue_store.resolve(store, issue, resolved_at, reason="fix verified", chain_id=chain_id, fix_id=fix_id)

        again = triage.judge([log(200, oom.format(77)), log(201, oom.format(78))])
        assert [(r.verdict, r.issue) for r in again] == [("recurrence", issue), ("ongoing", issue)]
        assert chain_id in again[0].reason and fix_id in again[0].reason

        event = issue_store.events(store, issue)[-1]
        assert (event["event"], event["status"], event["signal_id"]) == ("recurrence", "open", "l200")
        assert event["chain_id"] == chain_id and event["fix_id"] == fix_id
        assert event["attrs"]["fix_did_not_hold"] is True
        assert event["attrs"]["root"] == chain.root_node.statement
        assert event["attrs"]["fix_action"] == "set_config"
        outcomes = [(r["chain_id"], r["outcome"]) for r in chain_store.archive_rows(store, issue)]
        assert outcomes == [(chain_id, "resolved"), (chain_id, "did-not-hold")]
        assert issue_store.get_issue(store, issue)["status"] == "open"
        occ = [(o["signal_id"], o["verdict"]) for o in issue_store.occurrences(store, issue)]
        assert occ == [("l1", "new"), ("l200", "recurrence"), ("l201", "ongoing")]


def _early_warning(store: Store, rule_id: str = "ew-rss", status: str = "active") -> None:
    learned_store.add_rule(store, rule_id=rule_id, kind="early-warning", definition={
        "observe": {"source": "metric", "service": "checkout-api", "metric": "worker_rss_mb", "op": ">=", "value": 1500},
        "title": "early warning: worker memory grows without bound", "mode": "unbounded-cache-oom",
        "lead_time_s": 1800}, explanation="learned from ISS-0001 (chain C-0001)", chain_id=None, issue_id=None)
    if status != "active":
        learned_store.set_rule_status(store, rule_id, status)


def test_learned_early_warning_rule_opens_a_warning_issue_at_the_precursor(tmp_path):
    cfg = load_config(tmp_path / "home")
    with Store.open(tmp_path / "store.duckdb") as store:
        _early_warning(store)
        out = Triage(store, cfg).judge([metric(1, 900), metric(2, 1600), metric(3, 1750),
                                        log(4, "Out of memory: Killed process 4121 (gunicorn)")])
        assert [r.verdict for r in out] == ["info", "new", "ongoing", "new"]
        assert out[1].rule == out[2].rule == "learned:ew-rss"
        assert "worker memory grows without bound" in out[1].reason
        warning = issue_store.get_issue(store, out[1].issue)
        assert warning["kind"] == "warning" and warning["title"] == "early warning: worker memory grows without bound"
        assert warning["service"] == "checkout-api"
        assert out[2].issue == out[1].issue
        assert issue_store.get_issue(store, out[3].issue)["kind"] == "failure"

        # a resolved warning that fires again reopens the same warning (one warning issue per learned rule)
        issue_store.resolve(store, out[1].issue, T0 + timedelta(hours=1), reason="precursor cleared")
        later = Triage(store, cfg).judge([metric(90, 1800)])[0]
        assert later.verdict == "recurrence" and later.issue == out[1].issue and later.rule == "learned:ew-rss"
        reopened = issue_store.events(store, later.issue)[-1]
        assert (reopened["status"], reopened["event"]) == ("open", "warning-again")


def test_demoted_early_warning_rule_is_not_applied(tmp_path):
    cfg = load_config(tmp_path / "home")
    with Store.open(tmp_path / "store.duckdb") as store:
        _early_warning(store, status="demoted")
        assert Triage(store, cfg).judge([metric(1, 1600)])[0].verdict == "info"


def test_learned_threshold_and_benign_rules(tmp_path):
    cfg = load_config(tmp_path / "home")
    with Store.open(tmp_path / "store.duckdb") as store:
        learned_store.add_rule(store, rule_id="th-checkout", kind="threshold", definition={
            "check": {"source": "health", "service": "checkout-api", "host": "mon-1",
                      "key": "https://checkout-api.internal/health"}, "failure_threshold": 5},
            explanation="flaps")
        triage = Triage(store, cfg)
        out = triage.judge([health(i, False) for i in range(1, 7)] + [health(7, False, service="cart")])
        assert [r.verdict for r in out] == ["noise"] * 4 + ["new", "ongoing", "noise"]
        assert "an issue needs 5 (learned rule th-checkout)" in out[3].reason
        assert "an issue needs 3 (failure_threshold in the config)" in out[6].reason

        noisy = log(20, "cache warmup skipped 12 keys (lock held by pid 88)")
        fp = triage.judge([noisy])[0].fingerprint
        learned_store.add_rule(store, rule_id="bn-warmup", kind="benign", definition={"fingerprint": fp, "pattern": None},
                               explanation="occurred 40 times and never preceded a failure")
        learned_store.add_rule(store, rule_id="bn-gc", kind="benign",
                               definition={"fingerprint": None, "pattern": r"GC overhead \d+%"},
                               explanation="the collector's own log")
        got = triage.judge([log(21, "cache warmup skipped 3 keys (lock held by pid 12)"),
                            log(22, "GC overhead 12% in the last minute")])
        assert [(r.verdict, r.rule) for r in got] == [("noise", "learned:bn-warmup"), ("noise", "learned:bn-gc")]
        assert "never preceded a failure" in got[0].reason


def test_malformed_learned_rule_is_skipped_not_fatal(tmp_path):
    cfg = load_config(tmp_path / "home")
    with Store.open(tmp_path / "store.duckdb") as store:
        learned_store.add_rule(store, rule_id="bad", kind="early-warning",
                               definition={"observe": {"source": "log", "match": "unbalanced ("}}, explanation="x")
        triage = Triage(store, cfg)
        assert triage.judge([log(1, "unbalanced (")])[0].verdict == "new"
        assert any("bad" in e for e in triage._learned.errors)


def test_signals_stored_by_ingest_get_their_fingerprint_when_judged(tmp_path: Path):
    cfg = load_config(tmp_path / "home")
    with Store.open(tmp_path / "store.duckdb") as store:
        s = log(1, "connection pool exhausted (50/50 in use)")
        signal_store.insert_signals(store, [s])
        assert signal_store.signal_fingerprint(store, "l1") is None
        r = Triage(store, cfg).judge([s])[0]
        assert signal_store.signal_fingerprint(store, "l1") == r.fingerprint
        row = store.one("SELECT template, source, service FROM fingerprints WHERE fingerprint = ?", [r.fingerprint])
        assert row == {"template": r.template, "source": "log", "service": "checkout-api"}


def test_messages_holding_the_bulk_separators_are_stored_exactly(tmp_path: Path):
    cfg = load_config(tmp_path / "home")
    odd = ["binary junk \x1e\x1f in a request line", "a NUL \x00 inside", "\x00", "plain"]
    with Store.open(tmp_path / "store.duckdb") as store:
        out = Triage(store, cfg).judge([log(i, m) for i, m in enumerate(odd)])
        assert [r.verdict for r in out][:2] == ["new", "new"]
        stored = dict(store.execute("SELECT id, message FROM signals").fetchall())
        assert stored == {f"l{i}": m for i, m in enumerate(odd)}
        reasons = dict(store.execute("SELECT signal_id, template FROM triage_results").fetchall())
        assert reasons == {r.signal_id: r.template for r in out}
