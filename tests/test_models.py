"""The contract formats parse, and every kind of malformed input is one clear error."""

from __future__ import annotations

import json

import pytest

from agent.errors import InputError
from agent.models import (
    AnalysisCase,
    Chain,
    GateCase,
    Signal,
    load_signals_file,
    parse_model,
    read_signals,
    rfc3339,
)
from tests.conftest import EXAMPLES


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("gate-*.json")))
def test_gate_examples_parse(name):
    case = parse_model(GateCase, json.loads((EXAMPLES / name).read_text()), name)
    assert case.chain.root_node.id == case.chain.root
    assert case.chain.symptom_node.observe is not None
    assert all(s.id for s in case.signals)


def test_analysis_case_parses():
    case = parse_model(AnalysisCase, json.loads((EXAMPLES / "analysis-case.json").read_text()), "case")
    assert case.issue.symptom_signal in {s.id for s in case.signals}


def test_signal_files_parse():
    for path in [EXAMPLES / "signals-small.jsonl", *sorted((EXAMPLES / "triage-stream").glob("day*.jsonl"))]:
        signals = load_signals_file(path)
        assert signals and all(s.ts.tzinfo is not None for s in signals)


def test_signal_defaults_and_extra_fields_are_kept():
    s = Signal.model_validate({"ts": "2026-11-30T05:12:09+02:00", "source": "log", "message": "x", "team": "core"})
    assert s.level == "INFO"
    assert rfc3339(s.ts) == "2026-11-30T03:12:09Z"
    assert s.extra == {"team": "core"}
    assert s.id and s.id == Signal.model_validate({"ts": "2026-11-30T03:12:09Z", "source": "log", "message": "x",
                                                   "team": "core"}).id
    assert s.model_dump(mode="json")["team"] == "core"


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"ts": "2026-11-30T03:12:09Z", "source": "log"', "f.jsonl:2: invalid JSON"),
        ('{"source": "log", "message": "m"}', "f.jsonl:2: missing required field 'ts'"),
        ('{"ts": "yesterday", "source": "log", "message": "m"}', "f.jsonl:2: field 'ts': not an RFC 3339 timestamp"),
        ('{"ts": "2026-11-30T03:12:09", "source": "log", "message": "m"}', "f.jsonl:2: field 'ts': timestamp has no UTC offset"),
        ('{"ts": "2026-11-30T03:12:09Z", "source": "syslog", "message": "m"}', "f.jsonl:2: field 'source'"),
        ('{"ts": "2026-11-30T03:12:09Z", "source": "log", "message": "m", "value": "high"}', "f.jsonl:2: field 'value'"),
        ('{"ts": "2026-11-30T03:12:09Z", "source": "log", "message": "m", "attrs": [1]}', "f.jsonl:2: field 'attrs'"),
        ('{"ts": "2026-11-30T03:12:09Z", "source": "log", "message": 7}', "f.jsonl:2: field 'message'"),
        ('{"ts": "2026-11-30T03:12:09Z", "source": "log", "message": "m", "level": "LOUD"}', "f.jsonl:2: field 'level'"),
        ('[1, 2]', "f.jsonl:2: expected a JSON object"),
    ],
)
def test_malformed_signal_lines(line, expected):
    good = '{"ts": "2026-11-30T03:12:09Z", "source": "log", "message": "ok"}'
    with pytest.raises(InputError) as err:
        read_signals([good, line], "f.jsonl")
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


def _chain(**changes):
    data = json.loads((EXAMPLES / "gate-pass.json").read_text())["chain"]
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["links"].append({"cause": "n9", "effect": "n0", "mechanism": "a b c"}), "links[3].cause 'n9' is not a node id"),
        (lambda c: c["nodes"].append(dict(c["nodes"][0])), "duplicate node id 'n0'"),
        (lambda c: c.update(root="n7"), "root 'n7' is not a node id"),
        (lambda c: c.pop("root"), "missing required field 'root'"),
        (lambda c: c["nodes"][1]["observe"].update(match="(unclosed"), "invalid regular expression"),
        (lambda c: c["nodes"][2]["observe"].pop("op"), "a metric observe needs metric, op and value (missing: op)"),
    ],
)
def test_malformed_chains(mutate, expected):
    data = _chain()
    mutate(data)
    with pytest.raises(InputError) as err:
        parse_model(Chain, data, "chain.json")
    assert expected in str(err.value)


def test_chain_round_trips_with_schema_alias():
    data = _chain()
    chain = Chain.model_validate(data)
    assert chain.to_json()["schema"] == "selfheal.chain/v1"
    assert Chain.model_validate(chain.to_json()) == chain
