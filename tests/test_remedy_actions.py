"""The action catalog on real files under real roots: plan (a diff, nothing on disk), apply, rollback, refusals."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.remedy.base import ActionContext, Backup, RefusedError
from agent.remedy.catalog import get_action, names
from test_remedy_support import DATA, RECORDER, T0, recorded_argv, write_config

FORMATS = [("checkout.ini", "image_cache_max_items", "image_cache_max_items = 500"),
           ("app.yaml", "cache.image_cache_max_items", "    image_cache_max_items: 500 # zero = unbounded"),
           ("app.json", "cache.image_cache_max_items", '        "image_cache_max_items": 500,'),
           ("app.toml", "cache.image_cache_max_items", "image_cache_max_items = 500  # zero disables eviction"),
           ("app.env", "IMAGE_CACHE_MAX_ITEMS", "IMAGE_CACHE_MAX_ITEMS=500 # unbounded")]


@pytest.fixture
def env(tmp_path):
    cfg = write_config(tmp_path, {
        "commands": {"record": RECORDER + [str(tmp_path / "argv.jsonl")]},
        "services": {"checkout-api": {"restart": RECORDER + [str(tmp_path / "restarts.jsonl"), "restart", "checkout"],
                                      "config_files": ["etc/checkout.ini"]}},
    })
    for f in DATA.iterdir():
        shutil.copy(f, tmp_path / "etc" / f.name)
    return cfg, tmp_path


def ctx_for(cfg, tmp_path, fix_id="FIX-TEST"):
    return ActionContext(cfg=cfg, clock=FakeClock(T0), fix_id=fix_id, backup_dir=tmp_path / "home" / "backups" / fix_id)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_catalog_is_the_allow_list():
    assert names() == ["set_config", "write_file", "patch_file", "add_logrotate", "set_crontab", "set_env",
                       "restart_service", "run_command"]
    with pytest.raises(RefusedError, match="unknown action 'shell'.*only set_config"):
        get_action("shell")


@pytest.mark.parametrize("name,key,line", FORMATS)
def test_set_config_dry_run_diff_apply_and_byte_exact_rollback(env, name, key, line):
    cfg, tmp = env
    target = tmp / "etc" / name
    original = target.read_bytes()
    action = get_action("set_config")
    ctx = ctx_for(cfg, tmp)
    plan = action.plan({"file": name, "key": key, "value": "500"}, ctx)
    diff = plan.diff()
    assert f"--- a/{name}" in diff and f"+{line}" in diff.splitlines()
    assert sum(1 for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")) == 1
    assert target.read_bytes() == original, "a plan must not touch the file"

    backup = action.apply(plan, ctx)
    assert line in target.read_text().splitlines()
    assert [ln for ln in target.read_text().splitlines() if ln.lstrip().startswith(("#", ";"))] == \
        [ln for ln in original.decode().splitlines() if ln.lstrip().startswith(("#", ";"))]
    (saved,) = backup.files
    assert saved.existed and saved.sha256 == hashlib.sha256(original).hexdigest()
    assert Path(saved.saved).read_bytes() == original and Path(saved.saved).parent == ctx.backup_dir

    probe = action.probe({"file": name, "key": key, "value": "500"}, ctx)
    assert probe[0].source == "probe" and probe[0].message == f"{name}: {key} = 500"

    action.rollback(backup, ctx)
    assert target.read_bytes() == original


def test_set_config_restarts_the_service_whose_config_it_changed(env):
    cfg, tmp = env
    action = get_action("set_config")
    ctx = ctx_for(cfg, tmp)
    plan = action.plan({"file": "checkout.ini", "key": "image_cache_max_items", "value": 500}, ctx)
    assert plan.services == ["checkout-api"]
    backup = action.apply(plan, ctx)
    assert recorded_argv(tmp / "restarts.jsonl") == [["restart", "checkout"]]
    notes = action.rollback(backup, ctx)
    assert "restarted checkout-api" in notes
    assert recorded_argv(tmp / "restarts.jsonl") == [["restart", "checkout"]] * 2
    other = action.plan({"file": "app.yaml", "key": "cache.name", "value": "x"}, ctx)
    assert other.services == []


def test_set_config_refusals_are_one_clear_line(env):
    cfg, tmp = env
    action = get_action("set_config")
    ctx = ctx_for(cfg, tmp)
    with pytest.raises(RefusedError, match="missing required param 'key'"):
        action.plan({"file": "checkout.ini", "value": "1"}, ctx)
    with pytest.raises(RefusedError, match="unknown param 'shell'"):
        action.plan({"file": "checkout.ini", "key": "a", "value": "1", "shell": "rm"}, ctx)
    with pytest.raises(RefusedError, match="missing.ini: no such file"):
        action.plan({"file": "missing.ini", "key": "a", "value": "1"}, ctx)
    (tmp / "etc" / "notes.txt").write_text("a=1\n")
    with pytest.raises(RefusedError, match="cannot tell the format"):
        action.plan({"file": "notes.txt", "key": "a", "value": "1"}, ctx)
    plan = action.plan({"file": "notes.txt", "key": "a", "value": "2", "format": "ini"}, ctx)
    assert plan.changes[0].after == "a=2\n"


@pytest.mark.parametrize("raw", ["/etc/passwd", "../outside.ini", "sub/../../outside.ini", "link/outside.ini",
                                 "escape.ini"])
def test_paths_outside_the_roots_are_refused(env, raw):
    cfg, tmp = env
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "outside.ini").write_text("[a]\nx = 1\n")
    os.symlink(outside, tmp / "etc" / "link")
    os.symlink(outside / "outside.ini", tmp / "etc" / "escape.ini")
    before = (outside / "outside.ini").read_bytes()
    for name in ("set_config", "write_file"):
        params = {"file": raw, "key": "x", "value": "2"} if name == "set_config" else {"file": raw, "content": "x"}
        with pytest.raises(RefusedError, match=r"outside the remedy roots|'\.\.' is not allowed"):
            get_action(name).plan(params, ctx_for(cfg, tmp))
    assert (outside / "outside.ini").read_bytes() == before


def test_a_symlink_inside_the_roots_is_followed_to_its_real_file(env):
    cfg, tmp = env
    os.symlink(tmp / "etc" / "checkout.ini", tmp / "etc" / "current.ini")
    action = get_action("set_config")
    ctx = ctx_for(cfg, tmp)
    plan = action.plan({"file": "current.ini", "key": "image_cache_max_items", "value": "7"}, ctx)
    assert plan.changes[0].path == str(tmp / "etc" / "checkout.ini")
    action.apply(plan, ctx)
    assert (tmp / "etc" / "current.ini").is_symlink()
    assert "image_cache_max_items = 7" in (tmp / "etc" / "checkout.ini").read_text()


def test_no_roots_means_no_file_changes(tmp_path):
    cfg = write_config(tmp_path, {"roots": []})
    with pytest.raises(RefusedError, match="no remedy roots are configured"):
        get_action("write_file").plan({"file": str(tmp_path / "x"), "content": "y"}, ctx_for(cfg, tmp_path))


def test_write_file_creates_then_rollback_removes_file_and_directories(env):
    cfg, tmp = env
    action = get_action("write_file")
    ctx = ctx_for(cfg, tmp)
    plan = action.plan({"file": "conf.d/new/limits.conf", "content": "max = 5\n", "mode": "0640"}, ctx)
    assert plan.diff().startswith("--- /dev/null\n+++ b/conf.d/new/limits.conf\n")
    assert not (tmp / "etc" / "conf.d").exists()
    backup = action.apply(plan, ctx)
    target = tmp / "etc" / "conf.d" / "new" / "limits.conf"
    assert target.read_text() == "max = 5\n" and (target.stat().st_mode & 0o777) == 0o640
    post = action.postcondition({"file": "conf.d/new/limits.conf", "content": "max = 5\n"})
    from agent.gate import observe_matches

    assert any(observe_matches(post, s) for s in action.probe({"file": "conf.d/new/limits.conf", "content": "x"}, ctx))
    notes = action.rollback(Backup.model_validate(backup.model_dump(mode="json")), ctx)
    assert not target.exists() and not (tmp / "etc" / "conf.d").exists()
    assert any("removed conf.d/new/limits.conf" in n for n in notes)


def test_replacing_a_file_keeps_its_permissions_and_restores_crlf_bytes(env):
    cfg, tmp = env
    target = tmp / "etc" / "dos.conf"
    target.write_bytes(b"a = 1\r\nb = 2")
    target.chmod(0o600)
    action = get_action("patch_file")
    ctx = ctx_for(cfg, tmp)
    plan = action.plan({"file": "dos.conf", "search": "b = 2", "replace": "b = 3"}, ctx)
    backup = action.apply(plan, ctx)
    assert target.read_bytes() == b"a = 1\r\nb = 3" and (target.stat().st_mode & 0o777) == 0o600
    action.rollback(backup, ctx)
    assert target.read_bytes() == b"a = 1\r\nb = 2" and (target.stat().st_mode & 0o777) == 0o600


def test_patch_file_with_a_unified_diff_and_its_refusals(env):
    cfg, tmp = env
    action = get_action("patch_file")
    ctx = ctx_for(cfg, tmp)
    diff = "--- a/checkout.ini\n+++ b/checkout.ini\n@@ -17,2 +17,2 @@\n [logging]\n-level = INFO\n+level = WARNING\n"
    plan = action.plan({"file": "checkout.ini", "diff": diff}, ctx)
    action.apply(plan, ctx)
    assert (tmp / "etc" / "checkout.ini").read_text().endswith("[logging]\nlevel = WARNING\n")
    assert action.postcondition({"file": "checkout.ini", "diff": diff}).match == "level\\ =\\ WARNING"
    with pytest.raises(RefusedError, match="does not apply"):
        action.plan({"file": "checkout.ini", "diff": diff}, ctx)
    with pytest.raises(RefusedError, match="occurs 0 time"):
        action.plan({"file": "checkout.ini", "search": "nope", "replace": "x"}, ctx)
    with pytest.raises(RefusedError, match="either diff or search"):
        action.plan({"file": "checkout.ini", "diff": diff, "search": "a", "replace": "b"}, ctx)


def test_add_logrotate_writes_a_rule_under_the_roots(env):
    cfg, tmp = env
    (tmp / "etc" / "logs").mkdir()
    action = get_action("add_logrotate")
    ctx = ctx_for(cfg, tmp)
    params = {"name": "checkout", "paths": [str(tmp / "etc" / "logs" / "*.log")], "rotate": 14, "size": "100M",
              "create": "0640 app adm"}
    plan = action.plan(params, ctx)
    backup = action.apply(plan, ctx)
    rule = (tmp / "etc" / "logrotate.d" / "checkout").read_text()
    assert rule.splitlines()[1:] == [f"{tmp}/etc/logs/*.log {{", "    daily", "    rotate 14", "    compress",
                                     "    missingok", "    notifempty", "    size 100M", "    create 0640 app adm", "}"]
    from agent.gate import observe_matches

    post = action.postcondition(params)
    assert any(observe_matches(post, s) for s in action.probe(params, ctx))
    action.rollback(backup, ctx)
    assert not (tmp / "etc" / "logrotate.d").exists()
    with pytest.raises(RefusedError, match="logrotate rule '/etc/logrotate.d/sys'.*outside the remedy roots"):
        action.plan({"name": "sys", "dir": "/etc/logrotate.d", "paths": ["/var/log/syslog"]}, ctx)
    with pytest.raises(RefusedError, match="absolute paths without spaces"):
        action.plan({"name": "sys", "paths": ["/var/log/a b.log"]}, ctx)
    with pytest.raises(RefusedError, match="param 'name'"):
        action.plan({"name": "../x", "paths": [str(tmp / "etc" / "a.log")]}, ctx)


def test_set_crontab_edits_a_crontab_file_not_the_system(env):
    cfg, tmp = env
    action = get_action("set_crontab")
    ctx = ctx_for(cfg, tmp)
    params = {"file": "jobs.crontab", "match": "sync-images", "schedule": "*/10 * * * *", "env": {"TMPDIR": "/tmp"}}
    plan = action.plan(params, ctx)
    action.apply(plan, ctx)
    text = (tmp / "etc" / "jobs.crontab").read_text()
    assert "*/10 * * * * TMPDIR=/tmp /usr/local/bin/sync-images" in text.splitlines()
    from agent.gate import observe_matches

    assert any(observe_matches(action.postcondition(params), s) for s in action.probe(params, ctx))
    with pytest.raises(RefusedError, match="jobs.crontab: not a valid cron schedule"):
        action.plan({"file": "jobs.crontab", "match": "backup", "schedule": "every day"}, ctx)


def test_set_env_creates_a_private_file_and_reads_back(env):
    cfg, tmp = env
    action = get_action("set_env")
    ctx = ctx_for(cfg, tmp)
    backup = action.apply(action.plan({"file": "svc/worker.env", "key": "POOL_SIZE", "value": "20"}, ctx), ctx)
    target = tmp / "etc" / "svc" / "worker.env"
    assert target.read_text() == "POOL_SIZE=20\n" and (target.stat().st_mode & 0o777) == 0o600
    assert action.probe({"file": "svc/worker.env", "key": "POOL_SIZE", "value": "20"}, ctx)[0].message == \
        "svc/worker.env: POOL_SIZE = 20"
    action.rollback(backup, ctx)
    assert not target.exists()


def test_run_command_only_allow_listed_and_arguments_are_literal(env):
    cfg, tmp = env
    action = get_action("run_command")
    ctx = ctx_for(cfg, tmp)
    with pytest.raises(RefusedError, match="'rm' is not an allow-listed command.*allowed: record"):
        action.plan({"command": "rm", "args": ["-rf", "/"]}, ctx)
    hostile = ["; rm -rf /", "$(touch pwned)", "`id`", "a && b", "*"]
    plan = action.plan({"command": "record", "args": hostile}, ctx)
    assert plan.commands == [RECORDER + [str(tmp / "argv.jsonl")] + hostile]
    backup = action.apply(plan, ctx)
    assert recorded_argv(tmp / "argv.jsonl") == [hostile]
    assert backup.commands[0].returncode == 0
    assert not (tmp / "pwned").exists() and not Path("pwned").exists()
    notes = action.rollback(backup, ctx)
    assert notes and notes[0].startswith("not reversible")


def test_a_failing_command_is_an_apply_error_with_the_exit_code(tmp_path):
    from agent.remedy.base import ApplyError

    cfg = write_config(tmp_path, {"commands": {"fail": [sys.executable, "-c", "import sys; sys.exit(3)"]}})
    action = get_action("run_command")
    ctx = ctx_for(cfg, tmp_path)
    with pytest.raises(ApplyError, match="exit 3"):
        action.apply(action.plan({"command": "fail"}, ctx), ctx)


def test_restart_service_uses_the_configured_argv(env):
    cfg, tmp = env
    action = get_action("restart_service")
    ctx = ctx_for(cfg, tmp)
    plan = action.plan({"service": "checkout-api"}, ctx)
    assert plan.commands == [RECORDER + [str(tmp / "restarts.jsonl"), "restart", "checkout"]]
    action.apply(plan, ctx)
    assert recorded_argv(tmp / "restarts.jsonl") == [["restart", "checkout"]]
    with pytest.raises(RefusedError, match="no restart command is configured for 'db'"):
        action.plan({"service": "db"}, ctx)


def test_a_file_changed_after_the_plan_is_not_overwritten(env):
    cfg, tmp = env
    action = get_action("set_config")
    ctx = ctx_for(cfg, tmp)
    plan = action.plan({"file": "checkout.ini", "key": "image_cache_max_items", "value": "500"}, ctx)
    target = tmp / "etc" / "checkout.ini"
    target.write_text(target.read_text() + "# edited meanwhile\n")
    before = sha(target)
    with pytest.raises(RefusedError, match="changed since the plan"):
        action.apply(plan, ctx)
    assert sha(target) == before


def _kb_cases():
    import yaml

    return yaml.safe_load((DATA / "kb-fixes.yaml").read_text())


@pytest.mark.parametrize("case", _kb_cases(), ids=lambda c: c["name"])
def test_knowledge_base_fix_shapes_plan_apply_and_meet_their_postcondition(tmp_path, case):
    """The params and postconditions the knowledge base emits work with the catalog and its probes."""
    import re

    from agent.gate import observe_matches
    from agent.models import Observe

    cfg = write_config(tmp_path)
    root = tmp_path / "etc"
    for rel, text in case["setup"].items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    fix = case["fix"]
    post = Observe.model_validate({**fix["postcondition"],
                                   "match": fix["postcondition"]["match"].replace("{root}", re.escape(str(root)))})
    action = get_action(fix["action"])
    ctx = ctx_for(cfg, tmp_path)
    assert not any(observe_matches(post, s) for s in action.probe(fix["params"], ctx))
    backup = action.apply(action.plan(fix["params"], ctx), ctx)
    for rel, text in case.get("expect", {}).items():
        assert (root / rel).read_text() == text
    assert any(observe_matches(post, s) for s in action.probe(fix["params"], ctx)), \
        [s.message for s in action.probe(fix["params"], ctx)]
    action.rollback(backup, ctx)
    for rel, text in case["setup"].items():
        assert (root / rel).read_text() == text


def test_run_command_accepts_name_for_command(env):
    cfg, tmp = env
    plan = get_action("run_command").plan({"name": "record", "args": ["x"]}, ctx_for(cfg, tmp))
    assert plan.commands == [RECORDER + [str(tmp / "argv.jsonl"), "x"]]
    with pytest.raises(RefusedError, match="missing the command"):
        get_action("run_command").plan({"args": ["x"]}, ctx_for(cfg, tmp))


def test_a_directory_swapped_for_a_symlink_after_the_plan_is_refused(env):
    cfg, tmp = env
    (tmp / "etc" / "app").mkdir()
    (tmp / "etc" / "app" / "a.ini").write_text("x = 1\n")
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "a.ini").write_text("x = 1\n")
    action = get_action("set_config")
    ctx = ctx_for(cfg, tmp)
    plan = action.plan({"file": "app/a.ini", "key": "x", "value": "2"}, ctx)
    shutil.rmtree(tmp / "etc" / "app")
    os.symlink(outside, tmp / "etc" / "app")
    with pytest.raises(RefusedError, match="no longer resolves"):
        action.apply(plan, ctx)
    assert (outside / "a.ini").read_text() == "x = 1\n"


def test_a_plan_with_nothing_to_change_says_so(env):
    cfg, tmp = env
    action = get_action("set_config")
    ctx = ctx_for(cfg, tmp)
    plan = action.plan({"file": "checkout.ini", "key": "image_cache_ttl_s", "value": "3600"}, ctx)
    assert plan.noop and plan.diff() == "" and "nothing to change: already in place" in plan.render()
    backup = action.apply(plan, ctx)
    assert backup.files == [] and not ctx.backup_dir.exists()
