"""Property tests of the gate: valid chains pass, each kind of damage fails the right check, order never matters."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, assume, given, settings, strategies as st

from agent.gate import judge
from agent.models import CATEGORIES, Chain, Signal

EVENT_SOURCES = ("log", "cron", "health", "heartbeat", "metric", "alert")
SYMPTOM_SOURCES = ("log", "cron", "health", "heartbeat", "alert")
# Words in no contract list, so statements, mechanisms and descriptions are never vague, proximate or hedged.
SAFE = ("queue", "worker", "index", "table", "cache", "entry", "value", "limit", "buffer", "socket", "pool", "schema",
        "token", "certificate", "path", "flag", "rotation", "retention", "replica", "partition", "schedule", "owner")
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids_st = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=6)


@st.composite
def valid_cases(draw):
    """A chain of 3..7 links whose every node is evidenced in order, with a fix that eliminates the root."""
    n_links = draw(st.integers(3, 7))
    ids = draw(st.lists(ids_st, min_size=n_links + 1, max_size=n_links + 1, unique=True))
    # ids[0] is the symptom, ids[-1] the root; the path runs root -> ... -> symptom.
    words = lambda lo, hi: " ".join(draw(st.lists(st.sampled_from(SAFE), min_size=lo, max_size=hi)))  # noqa: E731
    nodes, signals = [], []
    t = T0
    for depth, nid in enumerate(reversed(ids)):
        is_symptom = nid == ids[0]
        source = draw(st.sampled_from(SYMPTOM_SOURCES if is_symptom else EVENT_SOURCES + ("probe",)))
        service = draw(st.sampled_from([None, "svc-a", "svc-b"]))
        marker = f"marker-{depth}-{nid}"
        obs: dict = {"source": source}
        if service:
            obs["service"] = service
        sig = {"id": f"s-{nid}", "source": source, "service": service, "message": f"{marker} observed"}
        if source == "metric" and draw(st.booleans()):
            obs.update(metric=f"m_{depth}", op=">=", value=10)
            sig.update(value=float(draw(st.integers(10, 500))), attrs={"metric": f"m_{depth}"})
        else:
            obs["match"] = re.escape(marker)
        if source == "probe":
            sig["ts"] = T0 + timedelta(hours=draw(st.integers(-2, 10)))  # a state, read whenever
        else:
            t += timedelta(seconds=draw(st.integers(0, 1800)))
            sig["ts"] = t
        sig["level"] = draw(st.sampled_from(["ERROR", "CRITICAL"])) if is_symptom else draw(
            st.sampled_from(["INFO", "WARNING", "ERROR"]))
        node = {"id": nid, "statement": f"{nid} {words(2, 6)}", "observe": obs}
        if nid == ids[-1]:
            node["category"] = draw(st.sampled_from(CATEGORIES))
        nodes.append(node)
        signals.append(sig)
    links = [{"cause": c, "effect": e, "mechanism": words(3, 8)} for c, e in zip(ids[1:], ids[:-1])]
    # Background noise that matches no node.
    for i in range(draw(st.integers(0, 5))):
        signals.append({"id": f"noise-{i}", "source": draw(st.sampled_from(EVENT_SOURCES)), "level": "ERROR",
                        "message": f"unrelated {words(1, 3)}", "ts": T0 + timedelta(minutes=draw(st.integers(0, 600)))})
    chain = {
        "id": "c-prop", "symptom": ids[0], "root": ids[-1], "nodes": nodes, "links": links,
        "fix": {"action": "set_config", "target": ids[-1], "effect": "eliminate", "params": {"key": "k", "value": "1"},
                "postcondition": {"source": "probe", "match": "k = 1"}, "description": words(3, 6)},
    }
    return chain, signals


def judge_dicts(chain: dict, signals: list[dict]):
    return judge(Chain.model_validate(chain), [Signal.model_validate(s) for s in signals])


def path_of(chain: dict) -> list[str]:
    """root ... symptom of a generated (valid) chain."""
    effect_of = {lk["cause"]: lk["effect"] for lk in chain["links"]}
    path = [chain["root"]]
    while path[-1] != chain["symptom"]:
        path.append(effect_of[path[-1]])
    return path


@PROPS
@given(valid_cases())
def test_valid_chains_pass_completeness_and_the_whole_gate(case):
    chain, signals = case
    result = judge_dicts(chain, signals)
    assert result.checks.completeness.passed, result.checks.completeness.reason
    assert result.passed, result.failed_reasons()


@PROPS
@given(valid_cases(), st.randoms(use_true_random=False))
def test_removing_a_link_fails_completeness(case, rnd):
    chain, signals = case
    chain["links"].pop(rnd.randrange(len(chain["links"])))
    result = judge_dicts(chain, signals)
    assert not result.checks.completeness.passed
    assert re.search(r"gap:|chain has \d links", result.checks.completeness.reason)
    assert not result.checks.reproduce.passed  # the walk cannot reach the symptom either


@PROPS
@given(valid_cases(), st.randoms(use_true_random=False))
def test_adding_a_cycle_fails_completeness(case, rnd):
    chain, signals = case
    path = path_of(chain)
    i = rnd.randrange(len(path))
    j = rnd.randrange(i, len(path))
    # A link from a node back to itself or to one of its causes closes a loop.
    chain["links"].append({"cause": path[j], "effect": path[i], "mechanism": "feeds back into the earlier condition"})
    result = judge_dicts(chain, signals)
    assert not result.checks.completeness.passed
    assert "cycle: " in result.checks.completeness.reason


@PROPS
@given(valid_cases(), st.randoms(use_true_random=False), st.integers(1, 3600))
def test_reversing_an_events_order_fails_reproduce(case, rnd, by):
    chain, signals = case
    nodes = {n["id"]: n for n in chain["nodes"]}
    pairs = [(lk["cause"], lk["effect"]) for lk in chain["links"]
             if nodes[lk["cause"]]["observe"]["source"] != "probe" and nodes[lk["effect"]]["observe"]["source"] != "probe"]
    assume(pairs)
    cause, effect = rnd.choice(pairs)
    by_id = {s["id"]: s for s in signals}
    # The effect's only signal now comes more than the clock-skew tolerance before its cause's.
    by_id[f"s-{effect}"]["ts"] = by_id[f"s-{cause}"]["ts"] - timedelta(seconds=5 + by)
    result = judge_dicts(chain, signals)
    assert not result.checks.reproduce.passed
    assert "out of order" in result.checks.reproduce.reason


def _damage(chain: dict, signals: list[dict], kind: int, rnd: random.Random) -> None:
    path = path_of(chain)
    if kind == 1:
        chain["links"].pop(rnd.randrange(len(chain["links"])))
    elif kind == 2:
        chain["links"].append({"cause": path[-1], "effect": path[0], "mechanism": "loops back to the root cause"})
    elif kind == 3:
        signals.pop(rnd.randrange(len(signals)))
    elif kind == 4:
        chain["nodes"].append({"id": "orphan-node", "statement": "an unrelated detail of the host",
                               "observe": {"source": "log", "match": "nothing"}})
    elif kind == 5:
        next(n for n in chain["nodes"] if n["id"] == chain["root"])["statement"] = "memory pressure on the host"
    elif kind == 6:
        signals.append({"id": "early", "source": next(n for n in chain["nodes"] if n["id"] == chain["symptom"])["observe"]["source"],
                        "level": "ERROR", "message": "early", "ts": T0 - timedelta(days=3)})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_cases(), st.integers(0, 6), st.randoms(use_true_random=False))
def test_verdict_never_depends_on_the_order_of_nodes_links_or_signals(case, kind, rnd):
    chain, signals = case
    _damage(chain, signals, kind, rnd)
    first = judge_dicts(chain, signals).model_dump(exclude={"elapsed_ms"})
    for _ in range(3):
        shuffled = dict(chain, nodes=rnd.sample(chain["nodes"], len(chain["nodes"])),
                        links=rnd.sample(chain["links"], len(chain["links"])))
        again = judge_dicts(shuffled, rnd.sample(signals, len(signals))).model_dump(exclude={"elapsed_ms"})
        assert again == first
