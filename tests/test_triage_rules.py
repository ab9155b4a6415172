"""The rules are data: loading, validation (one line naming file, rule and problem), overrides, reload, and the
durable_rules traps the engine handles on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from agent.config import load_config
from agent.errors import InputError, SelfhealError
from agent.models import Signal
from agent.rules_engine import SHIPPED_DIR, RulesEngine, TriageRules, load_rules
from agent.store import Store
from agent.triage import Triage
from tests.conftest import run_cli

SCANNER = ('45.95.147.236 - - [03/Oct/2026:09:00:20 +0000] "GET /.git/config HTTP/1.1" 404 162 "-" '
           '"Mozilla/5.0 zgrab/0.x"')


def _signal(i: int, message: str, *, level: str = "ERROR", source: str = "log", service: str = "web",
            attrs: dict | None = None) -> Signal:
    return Signal(id=f"r{i}", ts=f"2026-10-03T09:{i // 60:02d}:{i % 60:02d}Z", source=source, service=service,
                  host="h1", level=level, message=message, attrs=attrs or {})


def _config(tmp_path: Path, rules_dir: Path | None = None, **extra) -> object:
    data = dict(extra)
    if rules_dir is not None:
        data["rules_dirs"] = [str(rules_dir)]
    path = tmp_path / "selfheal.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(tmp_path / "home", path)


def test_shipped_rules_load_with_their_origin_and_a_catch_all():
    data = load_rules(None)
    assert data.files == (str(SHIPPED_DIR / "triage.yaml"), str(SHIPPED_DIR / "noise.yaml"))
    ids = [r.id for r in data.rules]
    assert ids[-1] == "unmatched" and data.rules[-1].condition is None
    assert {"check-not-persisted", "first-error-of-fingerprint", "recurrence-after-resolve",
            "benign-pattern", "maintenance-window", "early-warning-new"} <= set(ids)
    assert all(r.origin == str(SHIPPED_DIR / "triage.yaml") for r in data.rules)
    assert {p.id for p in data.patterns} >= {"client-disconnect", "scanner-404"}
    assert data.settings.check_sources == ("health", "heartbeat", "metric")
    # the engine's facts hold only what the rules read, none of the signal's free text
    engine = RulesEngine(data)
    assert "message" not in engine.fields and {"failure", "consecutive", "threshold", "issue_state"} <= set(engine.fields)


MALFORMED = [
    ("triage-x.yaml", "rules:\n  - id: a\n    priority: 5\n    when: {failure: [true\n",
     ["triage-x.yaml:", "invalid YAML"]),
    ("triage-x.yaml", "rules:\n  - id: bad-field\n    priority: 5\n    when: {colour: red}\n    verdict: noise\n    reason: x\n",
     ["triage-x.yaml", "rule 'bad-field'", "unknown fact field 'colour'"]),
    ("triage-x.yaml", "rules:\n  - id: bad-verdict\n    priority: 5\n    when: {}\n    verdict: ignore\n    reason: x\n",
     ["rule 'bad-verdict'", "'verdict' must be one of info, noise, new, ongoing, recurrence", "'ignore'"]),
    ("triage-x.yaml", "rules:\n  - id: bad-op\n    priority: 5\n    when: {source: {gt: log}}\n    verdict: noise\n    reason: x\n",
     ["rule 'bad-op'", "source is text, so it cannot be compared with 'gt'"]),
    ("triage-x.yaml", "rules:\n  - id: same-priority\n    priority: 50\n    when: {}\n    verdict: info\n    reason: x\n",
     ["rule 'same-priority'", "priority 50 is also rule 'check-ok'"]),
    ("triage-x.yaml", "rules:\n  - id: bad-reason\n    priority: 5\n    when: {}\n    verdict: info\n    reason: 'because {bogus}'\n",
     ["rule 'bad-reason'", "unknown name {bogus}"]),
    ("triage-x.yaml", "rules:\n  - id: no-reason\n    priority: 5\n    when: {failure: true}\n    verdict: noise\n",
     ["rule 'no-reason'", "'reason' is required"]),
    ("triage-x.yaml", "rules:\n  - id: bad-state\n    priority: 5\n    when: {issue_state: open}\n    verdict: noise\n    reason: x\n",
     ["rule 'bad-state'", "issue_state is one of none, active, resolved"]),
    ("triage-x.yaml", "rules:\n  - priority: 5\n    when: {}\n    verdict: info\n    reason: x\n",
     ["triage-x.yaml: rules[0]", "'id' must be"]),
    ("noise-x.yaml", "patterns:\n  - id: broken\n    description: d\n    match: 'unbalanced ('\n",
     ["noise-x.yaml", "pattern 'broken'", "invalid regular expression"]),
    ("noise-x.yaml", "patterns:\n  - id: undescribed\n    match: foo\n",
     ["pattern 'undescribed'", "'description' is required"]),
]


@pytest.mark.parametrize("name,text,fragments", MALFORMED, ids=[m[2][-1][:30] for m in MALFORMED])
def test_malformed_rules_file_fails_at_load_naming_file_rule_and_problem(tmp_path, name, text, fragments):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / name).write_text(text)
    cfg = _config(tmp_path, rules)
    with pytest.raises(InputError) as err:
        load_rules(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert str(rules / name) in message or f"{rules / name}:" in message
    for fragment in fragments:
        assert fragment in message


def test_malformed_rules_file_through_the_cli_is_one_line_and_exit_2(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "triage-local.yaml").write_text(
        "rules:\n  - id: typo\n    priority: 5\n    when: {failur: true}\n    verdict: noise\n    reason: x\n")
    cfg = tmp_path / "selfheal.yaml"
    cfg.write_text(yaml.safe_dump({"rules_dirs": [str(rules)]}))
    for args in (["rules"], ["triage", str(Path(__file__).parent / "data" / "triage" / "benign.jsonl")]):
        proc = run_cli("--config", str(cfg), *args, home=tmp_path / "home")
        assert proc.returncode == 2, proc.stdout
        line = proc.stderr.strip()
        assert "\n" not in line and "Traceback" not in line
        assert line.startswith("selfheal: error: ") and "triage-local.yaml" in line
        assert "rule 'typo'" in line and "unknown fact field 'failur'" in line


def test_a_rules_file_in_rules_dirs_changes_verdicts_without_code(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    # switch off a shipped rule, add a rule of our own, add a noise pattern of our own
    (rules / "triage-local.yaml").write_text(yaml.safe_dump({"rules": [
        {"id": "benign-pattern", "enabled": False},
        {"id": "cron-failures-are-noise", "priority": 55, "when": {"failure": True, "source": "cron"},
         "verdict": "noise", "reason": "cron jobs here retry on their own ({service})"},
    ]}))
    (rules / "noise-local.yaml").write_text(yaml.safe_dump({"patterns": [
        {"id": "lb-probe", "description": "the load balancer's probe of a closed port", "match": r"probe from lb-\d+ refused"}]}))
    cfg = _config(tmp_path, rules)
    with Store.open(None) as store:
        triage = Triage(store, cfg)
        out = triage.judge([
            _signal(1, SCANNER),
            _signal(2, "backup exited with status 2", source="cron", service="backup"),
            _signal(3, "probe from lb-7 refused"),
        ])
    # with benign-pattern off, no pattern makes noise (the scanner and our own pattern both open issues)
    assert [r.verdict for r in out] == ["new", "noise", "new"]
    assert out[1].rule == "cron-failures-are-noise" and out[1].reason == "cron jobs here retry on their own (backup)"
    origins = {r.id: r.origin for r in triage.rules.data.rules}
    assert origins["cron-failures-are-noise"] == str(rules / "triage-local.yaml")
    assert "benign-pattern" not in origins

    (rules / "triage-local.yaml").write_text("rules: []\n")
    cfg2 = _config(tmp_path, rules)
    with Store.open(None) as store:
        out = Triage(store, cfg2).judge([_signal(3, "probe from lb-7 refused"), _signal(1, SCANNER)])
    assert [(r.verdict, r.rule) for r in out] == [("noise", "noise:lb-probe"), ("noise", "noise:scanner-404")]


def test_reload_swaps_rules_in_or_keeps_the_previous_ones(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    local = rules / "triage-local.yaml"
    local.write_text("rules: []\n")
    cfg = _config(tmp_path, rules)
    with Store.open(None) as store:
        triage = Triage(store, cfg)
        before = triage.engine
        assert triage.reload() is None and triage.engine is before  # unchanged files: same compiled engine

        local.write_text("rules:\n  - id: broken\n    priority: 5\n    when: {failure: maybe}\n")
        error = triage.reload()
        assert error and "triage-local.yaml" in error and "rule 'broken'" in error
        assert triage.engine is before
        # the previous rules keep judging
        assert triage.judge([_signal(1, "disk quota exceeded for /srv")])[0].verdict == "new"

        local.write_text(yaml.safe_dump({"rules": [
            {"id": "quota-is-noise", "priority": 5, "when": {"failure": True, "seen": True},
             "verdict": "noise", "reason": "seen before, so a known limit"}]}))
        assert triage.reload() is None
        assert triage.engine is not before and triage.engine.name != before.name  # a new ruleset version
        second = triage.judge([_signal(2, "disk quota exceeded for /var")])[0]
        assert (second.verdict, second.rule) == ("noise", "quota-is-noise")


def _only(tmp_path: Path, rules: list[dict], **settings) -> TriageRules:
    d = tmp_path / "only"
    d.mkdir(exist_ok=True)
    body = {"rules": rules}
    if settings:
        body["settings"] = settings
    (d / "triage.yaml").write_text(yaml.safe_dump(body))
    return TriageRules(None, dirs=[d])


def test_a_fact_no_rule_matches_gets_the_catch_all_not_an_exception(tmp_path):
    rules = _only(tmp_path, [{"id": "failures", "priority": 1, "when": {"failure": True}, "verdict": "noise",
                              "reason": "all failures are noise here"}])
    engine = rules.engine
    assert engine.rules[-1].origin == "built-in catch-all"
    assert engine.decide_fact({"failure": False}).id == "unmatched"
    assert engine.decide_fact({"failure": True}).id == "failures"


def test_an_exception_inside_an_action_is_surfaced_and_cleared(tmp_path):
    from durable.engine import Promise

    rules = _only(tmp_path, [{"id": "failures", "priority": 1, "when": {"failure": True}, "verdict": "noise",
                              "reason": "x"}])
    engine = RulesEngine(rules.data)
    ruleset = engine._host.get_ruleset(engine.name)

    def broken(c):
        raise RuntimeError("the action fell over")

    # durable_rules swallows an action's exception into the session state; the engine must not
    ruleset._actions["failures"] = Promise(broken)
    with pytest.raises(SelfhealError, match="an action failed: exception caught the action fell over"):
        engine.ensure([(True,)])
    # the state was cleared: once the action works again, the same ruleset decides again
    ruleset._actions["failures"] = Promise(engine._recorder("failures"))
    assert engine.ensure([(True,)]) == 1
    assert engine.decide((True,)).id == "failures"


def test_rulesets_are_versioned_copied_and_posted_in_chunks(tmp_path):
    rules = _only(tmp_path, [
        {"id": "persisted", "priority": 1, "when": {"failure": True, "consecutive": {"gte": "$threshold"}},
         "verdict": "new", "reason": "x"},
        {"id": "not-yet", "priority": 2, "when": {"failure": True}, "verdict": "noise", "reason": "x"},
    ], chunk_size=2)
    before = json.dumps([r.condition for r in rules.data.rules])
    a, b = RulesEngine(rules.data), RulesEngine(rules.data)
    assert a.name != b.name  # the same rules registered twice live side by side
    assert json.dumps([r.condition for r in rules.data.rules]) == before  # set_rulesets got a copy

    posts = []
    real = a._post
    a._post = lambda events: posts.append(len(events)) or real(events)
    assert a.fields == ("consecutive", "failure", "threshold")
    keys = [(n, True, t) for n in range(1, 4) for t in (2, 3)]
    assert a.ensure(keys) == 6 and posts == [2, 2, 2]
    assert a.ensure(keys) == 0 and posts == [2, 2, 2]  # decided facts are not asked again
    assert [a.decide(k).id for k in keys] == ["not-yet", "not-yet", "persisted", "not-yet", "persisted", "persisted"]


def test_a_bad_maintenance_window_is_a_one_line_config_error(tmp_path):
    cfg = _config(tmp_path, maintenance=[{"service": "db", "start": "tomorrow", "end": "2026-10-04T03:00:00Z"}])
    with Store.open(None) as store, pytest.raises(InputError, match=r"^maintenance\[0\]: not an RFC 3339 timestamp: 'tomorrow'$"):
        Triage(store, cfg)
    cfg = _config(tmp_path, maintenance=[{"service": "db", "start": "2026-10-04T03:00:00Z", "end": "2026-10-04T02:00:00Z"}])
    with Store.open(None) as store, pytest.raises(InputError, match=r"maintenance\[0\]: end .* is not after start"):
        Triage(store, cfg)
