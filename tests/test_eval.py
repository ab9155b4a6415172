"""`selfheal eval`: incidents read and checked, the sandbox (fixture copy, param mapping), triage in passes,
scoring and thresholds, a broken knowledge entry failing with a per-case diff, the three analyst modes
(replay runs a hand-written cassette), loghub grouping accuracy, the CLI's output and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from agent.clock import FakeClock
from agent.config import Config
from agent.errors import InputError
from agent.evals.incident import find_incidents, load_incident
from agent.evals.replay import passes
from agent.evals.runner import DEFAULT_INCIDENTS, run_eval
from agent.evals.sandbox import SandboxProbe, map_params, map_path, virtual_prefixes
from agent.evals.thresholds import Thresholds, load_thresholds
from agent.models import Signal
from tests.conftest import REPO, run_cli

DATA = Path(__file__).parent / "data" / "eval"
TEST_INCIDENTS = DATA / "incidents"
CHECKOUT = TEST_INCIDENTS / "checkout-image-cache"


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return Config(home=tmp_path / "home")


def copy_incident(name: str, dest: Path, source: Path = DEFAULT_INCIDENTS) -> Path:
    target = dest / name
    shutil.copytree(source / name, target)
    return target


def edit_expected(folder: Path, **changes) -> None:
    data = yaml.safe_load((folder / "expected.yaml").read_text())
    for key, value in changes.items():
        node = data
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    (folder / "expected.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


# --------------------------------------------------------------------------- incidents


def test_incident_folder_reads_as_the_analysis_case_tests_build():
    inc = load_incident(DEFAULT_INCIDENTS / "recurrence-config-template")
    case = inc.case()
    assert case.issue.symptom_signal == "s45" and case.issue.id == "ISS-0001"
    assert len(case.signals) == len(inc.signals) and len(case.archive) == 1
    assert inc.symptom.id == "s45" and inc.fixtures is not None and inc.cassette is None
    assert load_incident(CHECKOUT).cassette == CHECKOUT / "cassettes" / "analysis.yaml"


@pytest.mark.parametrize("change,message", [
    ({"symptom_signal": "nope"}, "symptom_signal: no signal with id 'nope'"),
    ({"triage.verdicts": {"s1": "maybe"}}, "unknown verdict 'maybe'"),
    ({"triage.verdicts": {"zz": "new"}}, "triage.verdicts: no signal with id 'zz'"),
    ({"analysis.root_statement": "([unclosed"}, "invalid regular expression"),
    ({"analysis.root_category": "vibes"}, "unknown category 'vibes'"),
    ({"kind": "other"}, "kind"),
])
def test_a_bad_expected_yaml_is_one_clear_line(tmp_path: Path, change: dict, message: str):
    folder = copy_incident("port-in-use-api", tmp_path)
    edit_expected(folder, **change)
    with pytest.raises(InputError) as err:
        load_incident(folder)
    text = str(err.value)
    assert message in text and "\n" not in text and "expected.yaml" in text


def test_a_broken_incident_is_reported_with_its_case_and_the_others_still_run(tmp_path: Path, cfg: Config):
    copy_incident("port-in-use-api", tmp_path)
    bad = copy_incident("fd-exhaustion-nginx", tmp_path)
    (bad / "signals.jsonl").write_text((bad / "signals.jsonl").read_text() + "{not json\n")
    report = run_eval(tmp_path, cfg, thresholds=Thresholds(max_errors=0))
    by = {c.name: c for c in report.cases}
    assert by["port-in-use-api"].status == "passed"
    assert by["fd-exhaustion-nginx"].status == "error" and "invalid JSON" in by["fd-exhaustion-nginx"].error
    assert not report.passed and "1 cases could not run > 0: fd-exhaustion-nginx" in report.violations


def test_find_incidents_takes_one_folder_or_a_folder_of_them(tmp_path: Path):
    assert find_incidents(CHECKOUT) == [CHECKOUT]
    assert find_incidents(TEST_INCIDENTS) == [CHECKOUT]
    with pytest.raises(InputError, match="no incident folders"):
        find_incidents(tmp_path)
    with pytest.raises(InputError, match="no such directory"):
        find_incidents(tmp_path / "missing")


# --------------------------------------------------------------------------- sandbox


def test_absolute_file_params_map_onto_the_fixture_copy(tmp_path: Path):
    root = tmp_path / "root"
    (root / "checkout").mkdir(parents=True)
    (root / "checkout" / "checkout.ini").write_text("a = 1\n")
    (root / "only.conf").write_text("")
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "unique.yaml").write_text("")
    # the longest trailing part that exists wins
    assert map_path("/etc/checkout/checkout.ini", root) == "checkout/checkout.ini"
    assert map_path("/srv/app/only.conf", root) == "only.conf"
    # a name found once anywhere in the copy
    assert map_path("/etc/unique.yaml", root) == "deep/er/unique.yaml"
    # nothing matches: the file lands at its own path inside the copy (a file the fix creates)
    assert map_path("/etc/logrotate.d/new-rule", root) == "etc/logrotate.d/new-rule"
    # relative paths already resolve under the root; climbing paths are left for the remedy to refuse
    assert map_path("checkout.ini", root) is None and map_path("/etc/../x", root) is None
    params, mapped = map_params({"file": "/etc/checkout/checkout.ini", "key": "/not/a/file", "paths": ["/var/log/x"]},
                                root)
    assert params == {"file": "checkout/checkout.ini", "key": "/not/a/file", "paths": ["/var/log/x"]}
    assert mapped == {"file": ("/etc/checkout/checkout.ini", "checkout/checkout.ini")}


def test_verification_reads_the_copy_under_the_names_the_probes_gave(tmp_path: Path):
    from agent.remedy.executor import context

    root = tmp_path / "root"
    (root / "logrotate.d").mkdir(parents=True)
    (root / "logrotate.d" / "orders-api").write_text("/var/log/orders-api/*.log {\n    daily\n    copytruncate\n}\n")
    probe = Signal(ts="2026-01-01T00:00:00Z", source="probe",
                   message="logrotate_rules: /etc/logrotate.d/orders-api: /var/log/orders-api/*.log { daily }")
    other = Signal(ts="2026-01-01T00:00:00Z", source="log", message="/opt/logrotate.d/orders-api is not a probe")
    prefixes = virtual_prefixes(root, [probe, other])
    assert prefixes == ["/etc/"]
    cfg = Config(home=tmp_path / "home", remedy={"roots": [str(root)]})
    reader = SandboxProbe(root, prefixes, context(None, cfg, FakeClock(probe.ts)))
    found = [s.message for s in reader.run({"action": "add_logrotate",
                                            "params": {"name": "orders-api", "paths": ["/var/log/orders-api/*.log"]}})]
    assert any(m.startswith("/etc/logrotate.d/orders-api: /var/log/orders-api/*.log { daily copytruncate }")
               for m in found)
    assert any(m.startswith("logrotate.d/orders-api: ") for m in found)  # the action's own names stay


def test_passes_cut_the_stream_by_recorded_time_and_judge_like_one_signal_at_a_time(tmp_path: Path, cfg: Config):
    from agent.store import Store
    from agent.triage import Triage

    inc = load_incident(DEFAULT_INCIDENTS / "decoy-503-pool-not-oom")
    batches = list(passes(inc.signals, 300))
    assert [s for b in batches for s in b] == inc.signals
    assert all((b[-1].ts - b[0].ts).total_seconds() <= 300 for b in batches)
    assert len(list(passes(inc.signals, 1e9))) == 1

    def judge(groups):
        store = Store.open(None)
        try:
            triage = Triage(store, cfg, FakeClock(inc.signals[0].ts))
            return [(r.signal_id, r.verdict, r.issue) for g in groups for r in triage.judge(g)]
        finally:
            store.close()

    assert judge(batches) == judge([[s] for s in inc.signals])


# --------------------------------------------------------------------------- scoring and thresholds


def test_a_wrong_expectation_fails_its_case_with_expected_and_got(tmp_path: Path, cfg: Config):
    folder = copy_incident("pool-exhausted-knex-cart", tmp_path)
    edit_expected(folder, **{"analysis.root_statement": "max_connections.*4", "triage.counts": {"info": 99},
                             "issues": 5})
    report = run_eval(folder, cfg)
    case = report.cases[0]
    assert case.status == "failed" and set(case.failed) == {"triage", "issues", "root_cause"}
    root = case.checks["root_cause"]
    assert root.expected["root_statement"] == "max_connections.*4"
    assert "pool.max" in root.got["root_statement"] and "does not match /max_connections.*4/" in root.detail
    assert case.checks["triage"].detail == "info: 99 signals expected, got 18"
    assert case.checks["issues"].detail == "5 issues expected, triage opened 2"
    assert not report.passed
    assert any(v.startswith("root_cause 0.000 < 1.0 (1 of 1 failed: pool-exhausted-knex-cart)") for v in report.violations)


def test_thresholds_merge_per_mode_and_name_the_cases(tmp_path: Path):
    t = load_thresholds()
    live = t.for_mode("live")
    assert t.min_scores["root_cause"] == 1.0 and live.min_scores["root_cause"] == 0.8
    assert live.min_scores["triage"] == 1.0 and live.max_failed_cases == 6
    assert t.for_mode("offline").max_failed_cases == 0
    bad = tmp_path / "t.yaml"
    bad.write_text("min_scores: {rootcause: 0.5}\n")
    with pytest.raises(InputError, match="unknown score 'rootcause'"):
        load_thresholds(bad)
    bad.write_text("min_scores: {triage: 2}\n")
    with pytest.raises(InputError, match="between 0 and 1"):
        load_thresholds(bad)
    with pytest.raises(InputError, match="not found"):
        load_thresholds(tmp_path / "none.yaml")


def break_knowledge(dest: Path) -> Path:
    """A copy of rules/knowledge whose unbounded-cache-oom root (cache_limit_zero) can no longer match."""
    kb = dest / "knowledge"
    shutil.copytree(REPO / "rules" / "knowledge", kb)
    mode = kb / "unbounded-cache-oom.yaml"
    text = mode.read_text()
    good = "(?P<value>0|-1|none|None|null|unlimited)\\s*$'"
    assert text.count(good) == 1
    mode.write_text(text.replace(good, "(?P<value>never-matches)\\s*$'"))
    return kb


def test_a_broken_knowledge_entry_fails_the_eval_with_a_per_case_diff(tmp_path: Path, cfg: Config):
    kb = break_knowledge(tmp_path)
    good = run_eval(None, cfg, only=["oom-", "recurrence-cache"])
    assert good.passed, good.violations
    broken = run_eval(None, cfg, knowledge=kb, only=["oom-", "recurrence-cache"])
    assert not broken.passed and broken.knowledge == str(kb)
    failed = {c.name: c for c in broken.cases if c.status == "failed"}
    assert set(failed) == {"oom-jvm-heap-product-cache", "oom-unbounded-cache-catalog", "recurrence-cache-template"}
    assert len(broken.cases) == 3
    catalog = failed["oom-unbounded-cache-catalog"]
    assert {"escalation", "root_cause", "gate", "fix"} <= set(catalog.failed)
    root = catalog.checks["root_cause"]
    assert root.expected == {"root_statement": "image_cache_max_items.*0", "category": "config",
                             "mode": "unbounded-cache-oom"}
    assert root.got is None and root.detail == "no validated chain (escalated)"
    assert catalog.checks["fix"].detail == "fix action: expected set_config, got None"
    assert "cache_limit_zero" in catalog.reason  # the analyst names the evidence it could not find
    assert any(v.startswith("root_cause ") and "oom-unbounded-cache-catalog" in v for v in broken.violations)


def test_the_cli_exits_1_and_prints_the_diff_for_a_broken_knowledge_entry(tmp_path: Path, home: Path):
    kb = break_knowledge(tmp_path)
    proc = run_cli("eval", "-k", "oom-unbounded", "--knowledge", str(kb), home=home)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "✗ oom-unbounded-cache-catalog (mode)" in out
    assert "root_cause: no validated chain (escalated)" in out
    assert 'expected: {"root_statement": "image_cache_max_items.*0"' in out
    assert "FAILED: " in out and "root_cause 0.000 < 1.0" in out
    assert "Traceback" not in proc.stderr
    ok = run_cli("eval", "-k", "oom-unbounded", home=home)
    assert ok.returncode == 0 and "PASSED: every threshold met" in ok.stdout


# --------------------------------------------------------------------------- modes


def test_replay_mode_runs_the_hand_written_cassette(cfg: Config):
    report = run_eval(TEST_INCIDENTS, cfg, mode="replay")
    assert report.passed, report.violations
    case = report.cases[0]
    assert case.status == "passed" and case.analyst == "model:gpt-4o-mini"
    assert case.model["played"] == case.model["recorded"] == 2 and case.model["all_played"]
    assert case.root.startswith("config image_cache_max_items in /etc/checkout/checkout.ini is 0")
    assert case.mode is None and case.checks["store"].passed is None  # a model chain names no mode
    # the model named the file by its absolute path: the plan ran against the fixture copy
    assert case.plan["mapped"] == {"file": {"given": "/etc/checkout/checkout.ini", "sandbox": "checkout.ini"}}
    assert "+image_cache_max_items = 500" in case.plan["diff"]
    assert case.verification["status"] == "verified"


def test_the_same_incident_runs_offline_too(cfg: Config):
    report = run_eval(TEST_INCIDENTS, cfg)
    case = report.cases[0]
    assert report.passed and case.analyst == "offline" and case.mode == "unbounded-cache-oom"
    assert case.checks["store"].passed is True


def test_replay_skips_incidents_without_a_cassette(cfg: Config):
    report = run_eval(None, cfg, mode="replay", only=["port-in-use"])
    assert [c.status for c in report.cases] == ["skipped"] and report.cases[0].reason == "no cassette"
    assert report.passed and report.summary["skipped"] == 1


def test_a_cassette_that_does_not_cover_the_run_is_that_case_s_error(tmp_path: Path, cfg: Config):
    folder = copy_incident("checkout-image-cache", tmp_path, TEST_INCIDENTS)
    tape = folder / "cassettes" / "analysis.yaml"
    data = yaml.safe_load(tape.read_text())
    data["interactions"] = data["interactions"][:1]  # the model's second answer is missing
    tape.write_text(yaml.safe_dump(data))
    report = run_eval(folder, cfg, mode="replay")
    case = report.cases[0]
    assert case.status == "error" and "the cassette does not hold this run's requests" in case.error
    assert not report.passed


def test_live_mode_without_a_model_is_one_clear_error(cfg: Config, home: Path):
    with pytest.raises(InputError, match="--mode live needs a model: set analysis.model"):
        run_eval(CHECKOUT, cfg, mode="live")
    proc = run_cli("eval", "--mode", "live", str(CHECKOUT), home=home)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("selfheal: error: --mode live needs a model: set analysis.model "
                                   "(model, base_url, api_key_env) in the config")
    bad = run_cli("eval", "--mode", "dream", str(CHECKOUT), home=home)
    assert bad.returncode == 2 and "--mode: expected one of offline, live, replay" in bad.stderr


# --------------------------------------------------------------------------- CLI


def test_json_report_shape(home: Path):
    proc = run_cli("eval", str(TEST_INCIDENTS), "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"path", "mode", "passed", "elapsed_s", "knowledge", "summary", "thresholds", "cases"}
    assert out["passed"] is True and out["mode"] == "offline"
    assert set(out["summary"]) >= {"cases", "passed", "failed", "errors", "skipped", "scores", "counts", "resolved",
                                   "mttr_minutes", "repeat_issues"}
    assert set(out["summary"]["scores"]) == {"triage", "issues", "escalation", "root_cause", "gate", "fix", "verify",
                                             "recurrence", "repeat", "store"}
    assert out["thresholds"]["violations"] == [] and out["thresholds"]["file"].endswith("evals/thresholds.yaml")
    case = out["cases"][0]
    assert set(case) >= {"name", "kind", "status", "failed", "checks", "analyst", "mode", "root", "fix", "reason",
                         "mttr_minutes", "plan", "verification", "repeat"}
    assert set(case["checks"]["root_cause"]) == {"passed", "expected", "got", "detail"}


def test_the_table_shows_every_case_and_the_scores(home: Path):
    proc = run_cli("eval", str(TEST_INCIDENTS), "--thresholds", str(REPO / "evals" / "thresholds.yaml"), home=home)
    assert proc.returncode == 0, proc.stderr
    assert "checkout-image-cache" in proc.stdout and "passed" in proc.stdout
    assert "root_cause" in proc.stdout and "PASSED: every threshold met" in proc.stdout


def test_bad_paths_and_arguments_are_one_line(tmp_path: Path, home: Path):
    for args, message in ((("eval", str(tmp_path / "none")), "no such directory"),
                          (("eval", str(tmp_path)), "no incident folders"),
                          (("eval", "a", "b"), "expected at most one PATH"),
                          (("eval", str(CHECKOUT), "--thresholds", str(tmp_path / "t.yaml")), "thresholds file not found"),
                          (("eval", str(CHECKOUT), "--knowledge", str(tmp_path / "kb")), "no such directory"),
                          (("eval", "-k", "no-such-incident"), "no incident name contains"),
                          (("eval", "loghub"), "usage: selfheal eval loghub DIR")):
        proc = run_cli(*args, home=home)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("selfheal: error: ") and message in lines[0], (args, lines)


def test_loghub_grouping_accuracy_per_dataset(tmp_path: Path, home: Path):
    header = "LineId,Content,EventId\n"
    (tmp_path / "Tiny_2k.log_structured.csv").write_text(
        header + "1,Received block blk_1 of size 10 from 10.0.0.1,E1\n2,Received block blk_2 of size 20 from 10.0.0.2,E1\n"
        "3,Deleting block blk_3 file /data/blk_3,E2\n")
    (tmp_path / "Other_2k.log_structured.csv").write_text(header + "1,session opened for user root,E1\n")
    proc = run_cli("eval", "loghub", str(tmp_path), "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["datasets"]) == {"Tiny", "Other"}
    assert out["datasets"]["Tiny"]["lines"] == 3 and out["datasets"]["Tiny"]["accuracy"] == 1.0
    assert out["mean_accuracy"] == 1.0
    table = run_cli("eval", "loghub", str(tmp_path), home=home)
    assert table.returncode == 0 and "Tiny" in table.stdout and "mean" in table.stdout
    (tmp_path / "Bad_2k.log_structured.csv").write_text("LineId,Text\n1,x\n")
    bad = run_cli("eval", "loghub", str(tmp_path), home=home)
    assert bad.returncode == 2 and "missing column 'Content'" in bad.stderr
