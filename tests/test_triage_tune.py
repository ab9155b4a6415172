"""`selfheal tune`: proposals read from the signal history, each explained, written with --apply as learned rules."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from agent.config import load_config
from agent.models import Chain, Signal
from agent.rules_engine import load_rules
from agent.store import Store
from agent.store import chains as chain_store
from agent.store import learned as learned_store
from agent.triage import Triage
from agent.triage_tune import apply, propose
from tests.conftest import EXAMPLES

T0 = datetime(2026, 9, 1, tzinfo=timezone.utc)

# F = failure, . = success; runs of 1, 2, 3, 4 and 2 failures, each recovered on its own
FLAPPING = "F.FF.FFF.FFFF.FF."
STEADY = "F.FF.F.FF."


def check_stream(pattern: str, service: str, start: int = 0) -> list[Signal]:
    url = f"https://{service}.internal/health"
    out = []
    for i, c in enumerate(pattern):
        out.append(Signal(id=f"{service}-{start + i}", ts=(T0 + timedelta(minutes=start + i)).isoformat(),
                          source="health", service=service, host="mon-1", level="ERROR" if c == "F" else "INFO",
                          message=f"GET {url} -> " + ("503 Service Unavailable (2.1 s)" if c == "F" else "200 OK (0.01 s)"),
                          attrs={"url": url}))
    return out


def test_flapping_check_gets_a_threshold_and_applying_it_changes_triage(tmp_path):
    cfg = load_config(tmp_path / "home")
    data = load_rules(cfg)
    with Store.open(tmp_path / "store.duckdb") as store:
        triage = Triage(store, cfg)
        verdicts = [r.verdict for r in triage.judge(check_stream(FLAPPING, "shop") + check_stream(STEADY, "cart"))]
        assert verdicts.count("new") == 1 and verdicts.count("ongoing") == 2  # the runs of 3 and 4 made an issue
        proposals = propose(store, cfg, data)
        assert [(p.kind, p.definition) for p in proposals] == [("threshold", {
            "check": {"source": "health", "service": "shop", "host": "mon-1", "key": "https://shop.internal/health"},
            "failure_threshold": 5})]
        p = proposals[0]
        assert p.evidence["self_recovered_runs"] == [1, 2, 3, 4, 2]
        assert "\n" not in p.explanation
        assert "failed and recovered on its own 5 times, 2 of them after reaching its threshold 3" in p.explanation
        assert "require 5 consecutive failures" in p.explanation

        apply(store, proposals, T0)
        rule = learned_store.rules(store, kind="threshold")[0]
        assert rule["id"] == p.rule_id and rule["explanation"] == p.explanation and rule["status"] == "active"
        # the learned threshold is honoured: four failures in a row are noise now
        later = triage.judge(check_stream("FFFF", "shop", start=100))
        assert [r.verdict for r in later] == ["noise"] * 4
        assert f"learned rule {p.rule_id}" in later[-1].reason
        assert propose(store, cfg, data) == []  # nothing left to propose: the longest run is below 5
        assert apply(store, [p], T0)[0].applied is False  # writing the same rule again adds nothing


def test_runs_that_recovered_because_someone_fixed_them_are_not_flaps(tmp_path):
    cfg = load_config(tmp_path / "home")
    with Store.open(tmp_path / "store.duckdb") as store:
        out = Triage(store, cfg).judge(check_stream(FLAPPING, "shop"))
        issue = next(r.issue for r in out if r.verdict == "new")
        chain = Chain.model_validate(json.loads((EXAMPLES / "gate-pass.json").read_text())["chain"])
        chain_store.save_chain(store, chain, issue_id=issue, analyst="offline", passed=True)
        assert propose(store, cfg, load_rules(cfg)) == []


def _log(i: int, service: str, message: str, at: datetime) -> Signal:
    return Signal(id=f"{service}-{i}", ts=at.isoformat(), source="log", service=service, host="h1", level="ERROR",
                  message=message)


def test_failure_mode_that_never_preceded_a_genuine_failure_is_proposed_benign(tmp_path):
    cfg = load_config(tmp_path / "home")
    data = load_rules(cfg)
    signals = []
    for h in range(25):
        at = T0 + timedelta(hours=h)
        signals.append(_log(h, "cache", f"cache warmup skipped {h + 3} keys (lock held by pid {100 + h})", at))
        # in db, a warning-looking error is followed each time by a real failure: not benign
        signals.append(_log(100 + h, "db", f"slow checkpoint took {h + 10} s", at + timedelta(minutes=1)))
        signals.append(_log(200 + h, "db", f"replica db-2 lost connection to primary (lag {h} s)",
                            at + timedelta(minutes=11)))
    with Store.open(tmp_path / "store.duckdb") as store:
        triage = Triage(store, cfg)
        first = triage.judge(signals)
        warmup_fp = first[0].fingerprint
        proposals = propose(store, cfg, data)
        assert [(p.kind, p.definition) for p in proposals] == [("benign", {"fingerprint": warmup_fp, "pattern": None})]
        p = proposals[0]
        assert p.issue_id == first[0].issue
        assert "occurred 25 times" in p.explanation and "no genuine failure of another failure mode of cache" in p.explanation

        apply(store, proposals, T0)
        again = triage.judge([_log(999, "cache", "cache warmup skipped 1 keys (lock held by pid 7)", T0 + timedelta(days=2))])
        assert (again[0].verdict, again[0].rule) == ("noise", f"learned:{p.rule_id}")


def _chain_for(service: str) -> Chain:
    data = json.loads((EXAMPLES / "gate-pass.json").read_text())["chain"]
    data["nodes"][0]["statement"] = f"{service} health check returns HTTP 503"
    data["nodes"][0]["observe"]["service"] = service
    return Chain.model_validate(data)


def test_early_warning_rule_that_never_preceded_its_symptom_is_demoted(tmp_path):
    cfg = load_config(tmp_path / "home")
    data = load_rules(cfg)
    with Store.open(tmp_path / "store.duckdb") as store:
        for rid, svc in (("ew-idle", "checkout-api"), ("ew-useful", "search")):
            chain_id = chain_store.save_chain(store, _chain_for(svc), issue_id=None, analyst="offline", passed=True)
            learned_store.add_rule(store, rule_id=rid, kind="early-warning", chain_id=chain_id, explanation="x",
                                   definition={"observe": {"source": "metric", "service": svc, "metric": "worker_rss_mb",
                                                           "op": ">=", "value": 1500},
                                               "title": f"{svc} memory", "mode": None, "lead_time_s": 600})
        signals = []
        for n in range(3):
            at = T0 + timedelta(days=n)
            for svc in ("checkout-api", "search"):
                signals.append(Signal(id=f"m-{svc}-{n}", ts=at.isoformat(), source="metric", service=svc, host="h",
                                      message="worker_rss_mb=1600", value=1600, attrs={"metric": "worker_rss_mb"}))
            # only search's precursor is followed by its symptom, half an hour later
            signals.append(Signal(id=f"h-search-{n}", ts=(at + timedelta(minutes=30)).isoformat(), source="health",
                                  service="search", host="mon-1", level="ERROR", message="GET /health -> 503",
                                  attrs={"url": "/health"}))
        out = Triage(store, cfg).judge(signals)
        assert [r.rule for r in out if r.signal_id.startswith("m-")] == ["learned:ew-idle", "learned:ew-useful"] * 3

        proposals = propose(store, cfg, data)
        assert [(p.kind, p.rule_id) for p in proposals] == [("demote", "ew-idle")]
        assert "fired 3 times" in proposals[0].explanation
        assert "checkout-api health check returns HTTP 503" in proposals[0].explanation
        apply(store, proposals, T0)
        statuses = {r["id"]: r["status"] for r in learned_store.rules(store)}
        assert statuses == {"ew-idle": "demoted", "ew-useful": "active"}


def test_tune_through_the_cli(cli, home, tmp_path):
    stream = tmp_path / "checks.jsonl"
    stream.write_text("".join(s.model_dump_json() + "\n" for s in check_stream(FLAPPING, "shop")))
    assert cli("triage", str(stream)).returncode == 0
    shown = cli("tune", "--json")
    assert shown.returncode == 0, shown.stderr
    proposals = json.loads(shown.stdout)
    assert [p["kind"] for p in proposals] == ["threshold"] and proposals[0]["applied"] is False
    assert json.loads(cli("rules", "--learned", "--json").stdout) == {"learned": []}  # proposing writes nothing

    applied = json.loads(cli("tune", "--apply", "--json").stdout)
    assert applied[0]["applied"] is True
    learned = json.loads(cli("rules", "--learned", "--json").stdout)["learned"]
    assert [(r["id"], r["kind"], r["status"], r["explanation"]) for r in learned] == [
        (proposals[0]["rule_id"], "threshold", "active", proposals[0]["explanation"])]
    text = cli("tune")
    assert text.returncode == 0 and "no proposals" in text.stdout
