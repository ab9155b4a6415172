"""The four-check gate: contract examples, one data-file case per failure reason, matching, settings, archive index."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from agent.config import Config
from agent.gate import ArchiveIndex, Evidence, GateSettings, judge, observe_matches
from agent.gate.archive import features, full_scan, similarity, stem
from agent.models import ArchiveEntry, Chain, GateCase, Observe, Signal

DATA = Path(__file__).parent / "data" / "gate"
EXAMPLES = DATA / "contract-examples"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "contracts" / "examples"
CASES = sorted(DATA.glob("*.json"))
CHECKS = ("reproduce", "archive", "completeness", "counterfactual")


def load_case(path: Path) -> tuple[GateCase, dict]:
    data = json.loads(path.read_text())
    return GateCase.model_validate(data), data


def run(case: GateCase, **kw):
    return judge(case.chain, case.signals, case.archive, **kw)


def verdicts(result) -> dict[str, bool]:
    return {name: check.passed for name, check in result.checks}


# --------------------------------------------------------------------------- contract examples


EXPECTED_EXAMPLES = {
    "gate-pass.json": dict(reproduce=True, archive=True, completeness=True, counterfactual=True),
    "gate-fail-shallow.json": dict(reproduce=True, archive=True, completeness=False, counterfactual=False),
    "gate-fail-not-necessary.json": dict(reproduce=True, archive=True, completeness=True, counterfactual=False),
    "gate-fail-archive-repeat.json": dict(reproduce=True, archive=False, completeness=True, counterfactual=True),
}


def test_example_copies_match_the_contract():
    if not SHARED.is_dir():
        pytest.skip("../shared/contracts is not beside this checkout")
    for name in EXPECTED_EXAMPLES:
        assert json.loads((EXAMPLES / name).read_text()) == json.loads((SHARED / name).read_text()), name


@pytest.mark.parametrize("name", sorted(EXPECTED_EXAMPLES))
def test_contract_examples_judged_as_named(name):
    case, _ = load_case(EXAMPLES / name)
    result = run(case)
    assert verdicts(result) == EXPECTED_EXAMPLES[name]
    assert result.passed is (name == "gate-pass.json")
    assert 0 <= result.elapsed_ms < 1000
    for _, check in result.checks:
        assert check.reason.strip()


def test_shallow_example_reasons_name_each_defect():
    case, _ = load_case(EXAMPLES / "gate-fail-shallow.json")
    checks = run(case).checks
    assert "chain has 2 links, needs 3 to 7" in checks.completeness.reason
    assert "link n2->n1: mechanism is vague: 'somehow'" in checks.completeness.reason
    assert "root n2 states a proximate symptom: 'memory pressure'" in checks.completeness.reason
    assert "fix effect is 'mitigate', not 'eliminate'" in checks.counterfactual.reason
    assert "fix has no postcondition" in checks.counterfactual.reason
    assert "fix description hedges: 'should', 'reduce'" in checks.counterfactual.reason


def test_not_necessary_example_names_the_episode():
    case, _ = load_case(EXAMPLES / "gate-fail-not-necessary.json")
    reason = run(case).checks.counterfactual.reason
    assert "episode at 2026-11-30T01:00:00Z has no preceding match of n2 within 6h" in reason
    assert "03:12" not in reason.split(";")[0]


def test_archive_repeat_example_is_escalated_with_match():
    case, _ = load_case(EXAMPLES / "gate-fail-archive-repeat.json")
    archive = run(case).checks.archive
    extra = archive.model_extra
    assert extra["escalated"] is True
    assert extra["matched"] == "c-3"
    assert extra["similarity"] == 1.0
    assert "repeats its root" in archive.reason and "repeats its fix" in archive.reason


def test_gate_result_has_contract_shape():
    case, _ = load_case(EXAMPLES / "gate-fail-archive-repeat.json")
    out = json.loads(json.dumps(run(case).model_dump(mode="json")))
    assert set(out) >= {"passed", "elapsed_ms", "checks"}
    assert set(out["checks"]) == set(CHECKS)
    for name in CHECKS:
        assert isinstance(out["checks"][name]["passed"], bool)
        assert isinstance(out["checks"][name]["reason"], str)
    assert {"escalated", "matched", "similarity"} <= set(out["checks"]["archive"])


# --------------------------------------------------------------------------- one data file per reason


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_data_case(path):
    case, data = load_case(path)
    expect = data["expect"]
    result = run(case)
    assert verdicts(result) == expect["checks"], data["description"]
    assert result.passed is expect["passed"]
    for name, pattern in expect.get("reasons", {}).items():
        reason = getattr(result.checks, name).reason
        assert re.search(pattern, reason), f"{name}: {reason!r} does not match {pattern!r}"
    if "escalated" in expect:
        assert result.checks.archive.model_extra["escalated"] is expect["escalated"]


def test_every_failure_reason_has_a_data_case():
    names = {p.stem for p in CASES}
    for needed in ("reproduce-no-path", "reproduce-node-unmatched", "reproduce-out-of-order",
                   "reproduce-symptom-success-only", "archive-repeat-root-reworded", "archive-repeat-root-observe",
                   "archive-repeat-fix", "archive-not-deeper", "completeness-gap", "completeness-cycle",
                   "completeness-orphan", "completeness-branch", "completeness-too-few-links",
                   "completeness-too-many-links", "completeness-vague-mechanism", "completeness-short-mechanism",
                   "completeness-proximate-root", "completeness-root-no-category", "completeness-observe-unmatched",
                   "reproduce-node-no-observe", "counterfactual-fix-not-root", "counterfactual-mitigate",
                   "counterfactual-no-postcondition", "counterfactual-hedging-root", "counterfactual-hedging-fix",
                   "counterfactual-not-necessary", "counterfactual-outside-window"):
        assert needed in names


def test_settings_from_config_change_the_verdict():
    case, _ = load_case(DATA / "counterfactual-outside-window.json")
    assert not run(case).checks.counterfactual.passed
    wider = GateSettings.load(Config.model_validate({"gate": {"necessity_window_h": 8}}))
    assert run(case, settings=wider).checks.counterfactual.passed
    case, _ = load_case(DATA / "reproduce-out-of-order.json")  # effect 10 s before its cause
    assert not run(case).checks.reproduce.passed
    lax = GateSettings.load(Config.model_validate({"gate": {"clock_skew_s": 15}}))
    assert run(case, settings=lax).checks.reproduce.passed


def test_prepared_evidence_and_index_give_the_same_result():
    case, _ = load_case(EXAMPLES / "gate-fail-archive-repeat.json")
    plain = run(case).model_dump(exclude={"elapsed_ms"})
    prepared = judge(case.chain, Evidence(case.signals), ArchiveIndex(case.archive)).model_dump(exclude={"elapsed_ms"})
    assert plain == prepared


def test_archive_accepts_json_dicts_and_models_alike():
    case, data = load_case(EXAMPLES / "gate-fail-archive-repeat.json")
    from_dicts = judge(case.chain, case.signals, ArchiveIndex(data["archive"]))
    from_models = judge(case.chain, case.signals, ArchiveIndex(case.archive))
    assert from_dicts.checks.archive == from_models.checks.archive


# --------------------------------------------------------------------------- observe matching


def sig(**kw) -> Signal:
    base = {"ts": "2026-01-01T00:00:00Z", "source": "log", "message": ""}
    base.update(kw)
    return Signal.model_validate(base)


def test_observe_matches_regex_service_and_source():
    obs = Observe(source="log", service="api", match=r"Killed process \d+")
    assert observe_matches(obs, sig(service="api", message="Out of memory: Killed process 42 (x)"))
    assert not observe_matches(obs, sig(service="web", message="Killed process 42"))
    assert not observe_matches(obs, sig(service=None, message="Killed process 42"))
    assert not observe_matches(obs, sig(source="cron", service="api", message="Killed process 42"))
    assert not observe_matches(obs, sig(service="api", message="killed process 42"))  # regexes are case-sensitive
    anywhere = {"source": "log", "match": "boom"}
    assert observe_matches(anywhere, sig(service="anything", message="it went boom"))
    assert observe_matches(anywhere, {"source": "log", "message": "boom", "service": None})


@pytest.mark.parametrize("op,value,expected", [
    (">=", 1900, True), (">", 1950, False), ("<", 2000, True), ("<=", 1950, True), ("==", 1950, True), ("!=", 1950, False),
])
def test_observe_matches_metric_form(op, value, expected):
    obs = Observe(source="metric", metric="worker_rss_mb", op=op, value=value)
    s = sig(source="metric", message="rss", value=1950, attrs={"metric": "worker_rss_mb"})
    assert observe_matches(obs, s) is expected


def test_metric_form_needs_the_metric_name_and_a_value():
    obs = Observe(source="metric", metric="worker_rss_mb", op=">=", value=1)
    assert not observe_matches(obs, sig(source="metric", message="x", value=5, attrs={"metric": "other"}))
    assert not observe_matches(obs, sig(source="metric", message="x", value=None, attrs={"metric": "worker_rss_mb"}))
    assert not observe_matches(obs, sig(source="metric", message="x", value=5))
    assert not observe_matches(Observe(source="log"), sig(message="anything"))  # no condition: shows nothing


def test_evidence_hits_agree_with_observe_matches():
    rnd = random.Random(7)
    sources = ["log", "metric", "probe", "health"]
    signals = [
        sig(id=f"s{i}", ts=f"2026-01-01T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:00Z", source=rnd.choice(sources),
            service=rnd.choice(["a", "b", None]), message=rnd.choice(["disk full at 97", "ok", "Killed process 9", "err 503"]),
            value=rnd.choice([None, 10.0, 99.0]), attrs=rnd.choice([{}, {"metric": "m"}]),
            level=rnd.choice(["INFO", "ERROR"]))
        for i in range(300)
    ]
    ev = Evidence(list(reversed(signals)))
    for obs in (Observe(source="log", match=r"\d+"), Observe(source="health", service="a", match="503"),
                Observe(source="metric", metric="m", op=">", value=50), Observe(source="probe", service="b", match="ok")):
        expected = sorted((s.ts.timestamp(), s.id) for s in signals if observe_matches(obs, s))
        assert [(h.ts, h.id) for h in ev.hits(obs)] == expected
        assert all(h.failure for h in ev.failures(obs))


# --------------------------------------------------------------------------- word lists


CONTRACT_VAGUE = ["somehow", "for some reason", "unknown", "magic", "magical", "magically", "mysterious",
                  "mysteriously", "unexplained", "no idea", "unclear"]
CONTRACT_PROXIMATE = ["memory pressure", "high cpu", "high load", "high memory", "high latency", "cpu spike",
                      "cpu saturation", "cpu usage", "out of memory", "oom", "timeout", "timeouts", "time out",
                      "time outs", "timed out", "crash", "crashed", "crashes", "crashing", "overload", "overloaded",
                      "slow", "slowness", "resource exhaustion", "load spike", "traffic spike", "network issue",
                      "network glitch", "network blip", "disk full", "disk is full", "service down", "is down",
                      "was down"]
CONTRACT_HEDGING = ["may", "might", "could", "likely", "unlikely", "probably", "possibly", "perhaps", "hopefully",
                    "should", "reduce", "reduces", "reduced", "reducing", "mitigate", "mitigates", "mitigated",
                    "mitigating", "mitigation", "less often", "less likely", "less frequent", "less frequently",
                    "fewer", "lower the chance", "lower the risk", "lower the odds", "lower the probability",
                    "minimise", "minimised", "minimising", "minimize", "minimized", "minimizing"]


def test_rules_file_holds_the_contract_lists():
    s = GateSettings.load()
    assert set(s.vague.phrases) == set(CONTRACT_VAGUE)
    assert set(s.proximate.phrases) == set(CONTRACT_PROXIMATE)
    assert set(CONTRACT_HEDGING) <= set(s.hedging.phrases)
    # Beyond the spelled-out words, only other forms of mitigate/minimise/minimize ("any form").
    extra = set(s.hedging.phrases) - set(CONTRACT_HEDGING)
    assert all(w.startswith(("mitigat", "minimi")) for w in extra), extra
    assert s.categories == ("config", "code", "capacity", "dependency", "data", "schedule", "process", "environment")
    assert (s.clock_skew_s, s.necessity_window_s, s.episode_gap_s) == (5.0, 6 * 3600.0, 15 * 60.0)
    assert (s.min_links, s.max_links, s.min_mechanism_words, s.archive_similarity) == (3, 7, 3, 0.5)


@pytest.mark.parametrize("text,found", [
    ("The service CRASHED at night", ["crashed"]),
    ("requests Timed   Out", ["timed out"]),
    ("the disk is full", ["disk is full"]),
    ("crashloop in the job", []),
    ("slowly growing table", []),
    ("an OOM-kill", ["oom"]),
    ("timeouts and slowness", ["timeouts", "slowness"]),
])
def test_proximate_phrases_are_whole_words_case_insensitive(text, found):
    assert GateSettings.load().proximate.found(text) == found


@pytest.mark.parametrize("text,found", [
    ("the mayor could decide", ["could"]),
    ("Mitigation of the risk", ["mitigation"]),
    ("this will LOWER THE RISK", ["lower the risk"]),
    ("reduced to zero, so fewer retries", ["reduced", "fewer"]),
    ("bound the cache to 500 items", []),
    ("set_config", []),
])
def test_hedging_phrases(text, found):
    assert GateSettings.load().hedging.found(text) == found


def test_config_overrides_only_keys_it_sets(tmp_path):
    cfg = Config.model_validate({"gate": {"necessity_window_h": 2, "max_links": 9}})
    s = GateSettings.load(cfg)
    assert s.necessity_window_s == 7200.0 and s.max_links == 9
    assert s.clock_skew_s == 5.0 and s.min_links == 3
    assert GateSettings.load(Config()) == GateSettings.load()


def test_a_broken_rules_file_is_one_clear_error(tmp_path):
    from agent.errors import InputError

    bad = tmp_path / "gate.yaml"
    bad.write_text("vague_mechanism: {min_words: 3}\n")
    with pytest.raises(InputError, match=r"gate.yaml: missing key '\w+\.\w+'"):
        GateSettings.load(path=bad)


# --------------------------------------------------------------------------- archive similarity and index


def _chain(cid: str, statements: list[str], service: str = "api", root_obs: str = "x = 0") -> dict:
    nodes = [{"id": f"n{i}", "statement": st,
              "observe": {"source": "health" if i == 0 else "log", "service": service if i == 0 else None,
                          "match": root_obs if i == len(statements) - 1 else f"m{i}"}}
             for i, st in enumerate(statements)]
    for n in nodes:
        n["observe"] = {k: v for k, v in n["observe"].items() if v is not None}
    links = [{"cause": f"n{i + 1}", "effect": f"n{i}", "mechanism": "one two three"} for i in range(len(statements) - 1)]
    return {"id": cid, "symptom": "n0", "root": f"n{len(statements) - 1}", "nodes": nodes, "links": links}


def test_similarity_agrees_with_contract_jaccard_on_word_sets():
    stop = GateSettings.load().stopwords
    a = features(_chain("a", ["api returns 503", "workers killed by kernel", "cache grows without bound"]), stop)
    b = features(_chain("b", ["api returns 503", "workers killed by kernel", "cache grows without bound"]), stop)
    assert similarity(a, b) == 1.0
    other_service = features(_chain("c", ["api returns 503", "workers killed by kernel", "cache grows without bound"],
                                     service="web"), stop)
    assert similarity(a, other_service) == 0.0
    unrelated = features(_chain("d", ["api returns 503", "database pool exhausted by leak", "connections never closed"],
                                root_obs="pool"), stop)
    assert similarity(a, unrelated) < 0.5


def test_similarity_treats_paraphrase_as_the_same_path():
    stop = GateSettings.load().stopwords
    a = features(_chain("a", ["checkout health check returns 503", "the kernel killed all gunicorn workers",
                              "each worker caches every image without a bound", "image_cache_max_items is 0"]), stop)
    b = features(_chain("b", ["health checks of checkout return 503", "gunicorn workers were killed by the kernel",
                              "images are cached by workers with no bound", "the image_cache_max_items setting is 0"]),
                 stop)
    raw = len(a.words & b.words) / len(a.words | b.words)
    assert raw < 0.5 <= similarity(a, b)


def test_stemming_is_consistent():
    assert stem("caches") == stem("cached") == stem("cache") == stem("caching")
    assert stem("killed") == stem("kills")
    assert stem("process") == "process"
    assert stem("2026") == "2026"


def test_index_finds_exactly_what_a_full_scan_finds():
    rnd = random.Random(11)
    vocab = [f"w{i}" for i in range(40)]
    settings = GateSettings.load()

    def random_chain(cid: str) -> dict:
        n = rnd.randint(3, 6)
        statements = [" ".join(rnd.sample(vocab[: rnd.randint(8, 40)], rnd.randint(2, 6))) for _ in range(n)]
        return _chain(cid, statements, service=rnd.choice(["a", "b"]), root_obs=rnd.choice(["r1", "r2", "r3"]))

    entries = [ArchiveEntry(chain=Chain.model_validate(random_chain(f"c{i}"))) for i in range(400)]
    index = ArchiveIndex(entries, settings)
    archived = [features(e.chain, settings.stopwords) for e in entries]
    found_any = 0
    for q in range(150):
        cand = features(Chain.model_validate(random_chain(f"q{q}")), settings.stopwords)
        got = [(f.id, round(s, 9)) for s, f in index.similar(cand)]
        want = [(f.id, round(s, 9)) for s, f in full_scan(cand, archived, settings.archive_similarity)]
        assert got == want
        found_any += bool(want)
    assert found_any > 10  # the comparison exercised real matches, not only empty answers


def test_identifiers_in_statements_are_single_words_but_action_parts_are_words():
    case, _ = load_case(DATA / "pass-base.json")
    chain = case.chain.model_copy(deep=True)
    chain.root_node.statement = "request_timeout_s is 0 in backup.conf, so old dumps are never deleted"
    assert judge(chain, case.signals).checks.completeness.passed
    chain.fix.action = "reduce_backup_size"
    reason = judge(chain, case.signals).checks.counterfactual.reason
    assert "fix action hedges: 'reduce'" in reason


@pytest.mark.parametrize("path", [p for p in CASES if p.stem.startswith("archive-")], ids=lambda p: p.stem)
def test_archive_verdict_ignores_archive_order(path):
    case, data = load_case(path)
    first = run(case).model_dump(exclude={"elapsed_ms"})
    # Add unrelated chains around the similar one and shuffle: the verdict and the match stay the same.
    noise = [ArchiveEntry.model_validate({"chain": _chain(f"x{i}", ["other symptom", f"cause {i}", "root"],
                                                           service="elsewhere")}) for i in range(20)]
    entries = list(case.archive) + noise
    for seed in range(3):
        random.Random(seed).shuffle(entries)
        again = judge(case.chain, list(reversed(case.signals)), entries).model_dump(exclude={"elapsed_ms"})
        assert again["checks"]["archive"]["passed"] == first["checks"]["archive"]["passed"]
        assert again["checks"]["archive"]["matched"] == first["checks"]["archive"]["matched"]
        assert again["checks"]["archive"]["reason"] == first["checks"]["archive"]["reason"]
        assert again["checks"]["archive"]["escalated"] is True
