"""The offline answerer: every question type answered from a store built from a recorded week
(tests/data/report/), with the right ids and numbers; unknown questions get the help answer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from agent.chat import OFFLINE_FOOTER, ChatSettings, OfflineAnswerer, chain_in_words, default_intents, load_intents, parse_question
from agent.errors import InputError
from agent.store import Store

DATA = Path(__file__).parent / "data" / "report"


def _build(store: Store) -> None:
    spec = importlib.util.spec_from_file_location("report_fixture", DATA / "fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.build(store)


@pytest.fixture(scope="module")
def store():
    s = Store.open(None)
    _build(s)
    yield s
    s.close()


@pytest.fixture
def bot(store):
    return OfflineAnswerer(store)


# --------------------------------------------------------------------------- intents are data


@pytest.mark.parametrize("question,intent", [
    ("what is open?", "open"),
    ("What needs a human?", "open"),
    ("what is broken right now?", "open"),
    ("what happened to ISS-0002 and why?", "issue"),
    ("why did ISS-3 fail?", "issue"),
    ("tell me about issue 6", "issue"),
    ("is ISS-0003 still open?", "issue"),
    ("explain C-0004", "issue"),
    ("what broke in the last 6 hours?", "recent"),
    ("what failed today", "recent"),
    ("which failure modes recur and why did the fix not hold?", "recurring"),
    ("what keeps coming back?", "recurring"),
    ("MTTR, repeat issues, learning velocity?", "metrics"),
    ("how many repeat issues are there", "metrics"),
    ("what changed before ISS-0001 failed?", "changes"),
    ("were there deploys before the last failure?", "changes"),
    ("which rules were learned from which issue?", "learned"),
    ("what did we learn from ISS-0006?", "learned"),
    ("what is noise and how much?", "noise"),
    ("how many false alarms do we get", "noise"),
    ("help", "help"),
    ("what is the airspeed of an unladen swallow", "unknown"),
])
def test_questions_map_to_intents(question, intent):
    assert parse_question(default_intents(), question).intent == intent


def test_parameters_are_read_from_the_question():
    book = default_intents()
    assert parse_question(book, "what broke in the last 6 hours").window_s == 6 * 3600
    assert parse_question(book, "anything in the past 90 min?").window_s == 90 * 60
    assert parse_question(book, "what failed in the last day").window_s == 86400
    assert parse_question(book, "why did issue #12 fail").issue_num == 12
    assert parse_question(book, "ISS-0042?").issue_num == 42
    assert parse_question(book, "what happened with FIX-0002").fix == "FIX-0002"


def test_a_broken_intents_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "intents.yaml"
    bad.write_text("intents:\n  - name: x\n    patterns: ['(unclosed']\n")
    with pytest.raises(InputError, match=r"intents\[0\].*invalid regular expression"):
        load_intents(bad)
    bad.write_text("intents:\n  - name: x\n")
    with pytest.raises(InputError, match="needs a name and patterns"):
        load_intents(bad)


# --------------------------------------------------------------------------- answers from the store


def test_open_and_needs_a_human(bot):
    a = bot.answer("what needs a human?")
    assert a.intent == "open"
    assert a.data == {"active": ["ISS-0001", "ISS-0003", "ISS-0004", "ISS-0005"], "needs_human": ["ISS-0003"]}
    assert a.text.startswith("4 active issues as of 2026-03-08T08:00:00Z; 1 needs a human.")
    human = a.text.split("Needs a human:")[1].split("In progress:")[0]
    assert "ISS-0003" in human and "counterfactual" in human and "ISS-0001" not in human
    assert a.render().endswith(OFFLINE_FOOTER)


def test_what_happened_to_an_issue_and_why(bot):
    a = bot.answer("What happened to ISS-0001 and why?")
    assert a.intent == "issue"
    assert a.refs["issues"] == ["ISS-0001"]
    assert a.refs["chains"] == ["C-0001", "C-0005", "C-0006"] and a.refs["fixes"] == ["FIX-0001", "FIX-0003"]
    assert set(a.refs["signals"]) == {"s3", "s25"} and a.refs["rules"] == ["ew-0001"]
    assert a.data == {"issue": "ISS-0001", "status": "verifying", "chain": "C-0006", "gate_passed": True,
                      "fix": "FIX-0003", "recurrences": 1}
    t = a.text
    # the chain in words, symptom first, root last, with the mechanisms
    order = [t.index(s) for s in ("symptom: checkout-api health check returns HTTP 503",
                                  "<- because: gunicorn workers of checkout-api were killed",
                                  "<- because: config image_cache_max_items is 0",
                                  "<- root cause [process]: the deploy pipeline renders checkout.ini")]
    assert order == sorted(order)
    assert "overwriting the hand-set value 500 with the default 0" in t
    assert "Gate: passed all four checks" in t and "escalated" in t
    assert "Fix: write_file (eliminate)" in t and "FIX-0003 is applied" in t
    assert "Verification: postcondition passed" in t
    assert "Earlier chain C-0005: rejected by archive" in t
    assert "Recurred 2026-03-08T02:00:00Z (signal s25)" in t
    assert "Why the fix of C-0001 did not hold" in t


def test_an_issue_whose_gate_rejected_its_chain(bot):
    a = bot.answer("why did ISS-3 fail?")
    assert a.refs["issues"] == ["ISS-0003"] and a.data["gate_passed"] is False and a.data["fix"] is None
    assert "Status: needs-human" in a.text
    assert "Gate: rejected — counterfactual: root n3 is not necessary" in a.text
    assert "not planned yet" in a.text


def test_an_issue_named_by_its_fix_or_chain_and_a_missing_one(bot):
    assert bot.answer("what happened with FIX-0004?").refs["issues"] == ["ISS-0006"]
    assert bot.answer("explain C-0002").refs["issues"] == ["ISS-0002"]
    a = bot.answer("what happened to ISS-0042?")
    assert a.intent == "issue" and a.refs["issues"] == []
    assert "There is no issue ISS-0042" in a.text and "ISS-0001 … ISS-0006" in a.text


def test_what_broke_in_the_last_hours(bot):
    a = bot.answer("what broke in the last 6 hours?")
    assert a.intent == "recent"
    # [02:00, 08:00] on 03-08: s25 (ISS-0001 recurrence), s29 and s33 (ISS-0005), s30 (ISS-0006); noise s26, s34
    assert a.data["genuine"] == 4 and a.data["noise"] == 2
    assert a.data["issues"] == ["ISS-0001", "ISS-0005", "ISS-0006"]
    assert a.data["resolved"] == ["ISS-0005", "ISS-0006"]
    assert sorted(a.refs["signals"]) == ["s25", "s29", "s30", "s33"]
    assert "In the 6 h up to 2026-03-08T08:00:00Z: 4 genuine failure signals across 3 issues" in a.text
    narrow = bot.answer("what broke in the last 30 minutes?")
    assert narrow.data["genuine"] == 0 and narrow.text.startswith("Nothing broke in the 30 min up to")
    day = bot.answer("what failed in the past 2 days")
    assert day.data["issues"] == ["ISS-0004", "ISS-0001", "ISS-0005", "ISS-0006"]  # in order of first signal


def test_which_failure_modes_recur_and_why_the_fix_did_not_hold(bot):
    a = bot.answer("which failure modes recur and why did the fix not hold?")
    assert a.intent == "recurring"
    assert a.data["repeat_issues"] == 1 and a.data["recurrences"] == 2
    assert a.data["issues"] == ["ISS-0001", "ISS-0005"] and a.data["repeat_fingerprints"] == ["f1:oomkill"]
    assert a.refs["signals"] == ["s25", "s33"]
    oom = a.text.split("- ISS-0001")[1].split("- ISS-0005")[0]
    assert "resolved 2026-03-02T04:00:00Z through chain C-0001" in oom and "that fix did not hold" in oom
    assert "deeper cause" in oom and "each deploy re-renders checkout.ini" in oom
    assert "escalated by the archive check (matched C-0001)" in oom
    manual = a.text.split("- ISS-0005")[1]
    assert "without a gate-validated chain" in manual and "not been re-analysed" in manual


def test_mttr_repeat_issues_and_learning_velocity(bot):
    a = bot.answer("MTTR, repeat issues, learning velocity?")
    assert a.intent == "metrics"
    assert a.data["mttr_hours_latest_cycle"] == pytest.approx(1.375)
    assert a.data["repeat_issues"] == 1 and a.data["issues_tracked"] == 6
    assert a.data["learning_velocity_per_week"] == pytest.approx(2.2105, abs=1e-3)
    assert "MTTR in the latest cycle (daemon-0003, daemon): 1.38 h over 2 resolved issues (ISS-0005, ISS-0006)" in a.text
    assert "Repeat issues: 1 (goal 0): ISS-0001" in a.text
    assert "Learning velocity: 2.21 failure classes eliminated per week (2 classes over 6.3 days" in a.text
    assert "daemon-0001 0.80 h, daemon-0002 4.50 h" in a.text


def test_what_changed_before_a_failure(bot):
    a = bot.answer("what changed before ISS-0001 failed?")
    assert a.intent == "changes"
    # the latest episode of ISS-0001 is its recurrence at 03-08T02:00 (s25): a deploy and a config render 4 h
    # before, and the learned rule's warning (s24, ISS-0004) 30 min before; probes of checkout-api after it
    assert a.data["at"].isoformat() == "2026-03-08T02:00:00+00:00"
    assert a.data["changes"] == ["s22", "s23"]
    assert a.data["warnings"] == ["s24"]
    assert a.data["probes_after"] == ["s27", "s28"]
    assert "Deployed checkout-api 2.4.1" in a.text and "(4 h before)" in a.text
    assert "s24 opened ISS-0004" in a.text and "(30 min before)" in a.text
    assert "Root cause in chain C-0006" in a.text
    first = bot.answer("what changed before ISS-0002?")
    # ISS-0002 was first detected 03-05T02:00 (s14): the credential rotation s15 at 03-04T23:30
    assert first.data["changes"] == ["s15"] and first.data["probes_after"] == ["s16"]


def test_which_rules_were_learned_from_which_issue(bot):
    a = bot.answer("which rules were learned from which issue?")
    assert a.intent == "learned"
    assert a.data["rules"] == [
        {"id": "ew-0001", "kind": "early-warning", "issue": "ISS-0001", "chain": "C-0001", "fired": 1},
        {"id": "ew-0002", "kind": "early-warning", "issue": "ISS-0006", "chain": "C-0007", "fired": 0},
    ]
    assert "ew-0001 (early-warning, active), learned from ISS-0001 via chain C-0001" in a.text
    assert "fired 1 time" in a.text and "opening ISS-0004" in a.text and "30 min before the failure" in a.text
    only = bot.answer("what did we learn from ISS-0006?")
    assert [r["id"] for r in only.data["rules"]] == ["ew-0002"] and "has not fired yet" in only.text
    none = bot.answer("what did we learn from ISS-0003?")
    assert none.text == "No rule was learned from ISS-0003."


def test_what_is_noise_and_how_much(bot):
    a = bot.answer("what is noise and how much?")
    assert a.intent == "noise"
    assert (a.data["noise"], a.data["genuine"], a.data["info"]) == (7, 10, 18)
    assert a.data["noise_ratio"] == pytest.approx(7 / 17, abs=1e-4)
    assert a.text.startswith("7 of 17 failure-like signals were noise (41%)")
    assert "health 3 noise / 0 genuine (100% noise)" in a.text
    assert "3 × GET http://127.0.0.1:8080/health -> 503" in a.text and "rule below-failure-threshold" in a.text
    assert a.refs["signals"][0] == "s26"


def test_unknown_questions_get_the_help_answer(bot):
    a = bot.answer("what is the airspeed of an unladen swallow?")
    assert a.intent == "unknown"
    assert a.text.startswith("I did not understand the question.")
    for what in ("what is open now and what needs a human", "what happened to one issue and why",
                 "what broke in the last N hours", "which failure modes recur", "MTTR, repeat issues, learning velocity",
                 "what changed before a failure", "which rules were learned from which issue", "what is noise and how much"):
        assert what in a.text
    assert a.render().endswith(OFFLINE_FOOTER)
    assert bot.answer("help").intent == "help"
    assert bot.answer("   ").intent == "help"


def test_follow_up_questions_use_the_issue_talked_about(bot):
    bot.answer("what happened to ISS-0002?")
    assert bot.last_issue == "ISS-0002"
    follow = bot.answer("and why?")
    assert follow.intent == "issue" and follow.refs["issues"] == ["ISS-0002"]
    changed = bot.answer("what changed before it?")
    assert changed.data["issue"] == "ISS-0002"


def test_chat_settings_come_from_the_config_section():
    from agent.config import Config

    cfg = Config.model_validate({"chat": {"recent_window_h": 2, "max_items": 5}})
    assert ChatSettings.from_config(cfg).recent_window_h == 2.0
    with pytest.raises(InputError, match="chat.max_items"):
        ChatSettings.from_config(Config.model_validate({"chat": {"max_items": 0}}))


def test_a_shorter_default_window(store):
    bot = OfflineAnswerer(store, settings=ChatSettings(recent_window_h=1))
    a = bot.answer("what broke recently?")
    assert a.data["issues"] == ["ISS-0005"] and a.data["genuine"] == 1


def test_chain_in_words_walks_from_symptom_to_root():
    chain = json.loads((DATA / "chains" / "c7.json").read_text())
    lines = chain_in_words(chain, indent="")
    assert lines[0] == "symptom: clients reject shop.example.com because its certificate expired"
    assert lines[-1].startswith("<- root cause [schedule]: certbot.timer is disabled on web-1")
    assert len(lines) == 4


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def home_with_store(tmp_path_factory):
    home = tmp_path_factory.mktemp("chat-home")
    s = Store.open(home / "store.duckdb")
    _build(s)
    s.close()
    return home


def test_cli_ask_text_and_json(cli, home_with_store):
    proc = cli("ask", "what happened to ISS-0002?", home=home_with_store)
    assert proc.returncode == 0, proc.stderr
    assert "root cause [config]: .pgpass of the backup user" in proc.stdout
    assert proc.stdout.rstrip().endswith(OFFLINE_FOOTER)
    proc = cli("ask", "what is open?", "--json", home=home_with_store)
    out = json.loads(proc.stdout)
    assert out["intent"] == "open" and out["answerer"] == "offline" and out["footer"] == OFFLINE_FOOTER
    assert out["references"]["issues"] == ["ISS-0001", "ISS-0003", "ISS-0004", "ISS-0005"]
    proc = cli("ask", "", home=home_with_store)
    assert proc.returncode == 2 and proc.stderr.startswith("selfheal: error: empty question")


def test_cli_chat_reads_questions_until_end_of_input(cli, home_with_store):
    proc = cli("chat", home=home_with_store, input="what happened to ISS-0006?\n\nwhat changed before it?\nexit\nnever read\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(OFFLINE_FOOTER) == 2
    assert "certbot.timer is disabled on web-1" in proc.stdout
    assert "ISS-0006 was first detected at 2026-03-08T04:00:00Z (signal s30)" in proc.stdout
    assert "never read" not in proc.stdout


def test_an_intent_without_an_answer_is_neither_matched_nor_offered(store, tmp_path):
    path = tmp_path / "intents.yaml"
    path.write_text(
        "intents:\n"
        "  - name: weather\n    description: the weather\n    patterns: ['\\bweather\\b']\n"
        "  - name: open\n    description: what is open\n    examples: ['what is open?']\n    patterns: ['\\bopen\\b']\n")
    bot = OfflineAnswerer(store, intents=load_intents(path))
    a = bot.answer("what is the weather?")
    assert a.intent == "unknown" and "the weather" not in a.text and "what is open" in a.text
    assert bot.answer("what is open?").intent == "open"
