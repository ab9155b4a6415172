"""The pure text editors behind the file actions: one key changes, every other byte (comments too) stays."""

from __future__ import annotations

import difflib
import json
import tomllib
from io import StringIO

import pytest
from ruamel.yaml import YAML

from agent.remedy.editors import EditError, crontab, envfile, ini, structured, unidiff
from test_remedy_support import DATA


def changes(before: str, after: str) -> tuple[list[str], list[str]]:
    """(lines removed, lines added), with their line endings."""
    removed, added = [], []
    for op in difflib.ndiff(before.splitlines(keepends=True), after.splitlines(keepends=True)):
        if op.startswith("- "):
            removed.append(op[2:])
        elif op.startswith("+ "):
            added.append(op[2:])
    return removed, added


# --------------------------------------------------------------------------- ini


def test_ini_changes_only_the_key_line_and_keeps_comments():
    text = (DATA / "checkout.ini").read_text()
    after = ini.set_value(text, "image_cache_max_items", "500")
    assert changes(text, after) == (["image_cache_max_items = 0\n"], ["image_cache_max_items = 500\n"])
    assert "; edited by ops, keep the comments" in after and "# zero disables eviction" in after


def test_ini_keeps_the_lines_own_spacing_delimiter_and_inline_comment():
    text = (DATA / "checkout.ini").read_text()
    assert changes(text, ini.set_value(text, "port", "9090")) == (["port=8080   ; the public port\n"],
                                                                  ["port=9090   ; the public port\n"])
    assert changes(text, ini.set_value(text, "workers", "8")) == (["workers: 4\n"], ["workers: 8\n"])
    assert changes(text, ini.set_value(text, "image_cache_ttl_s", "60"))[1] == ["image_cache_ttl_s = 60  # one hour\n"]


def test_ini_replaces_continuation_lines_and_reads_them_back():
    text = (DATA / "checkout.ini").read_text()
    assert ini.get_value(text, "description") == ("cache", "first line\ncontinued line")
    after = ini.set_value(text, "description", "one line")
    assert changes(text, after) == (["description = first line\n", "    continued line\n"], ["description = one line\n"])


def test_ini_adds_missing_keys_to_their_section_or_a_new_section():
    text = (DATA / "checkout.ini").read_text()
    after = ini.set_value(text, "image_cache_evict", "lru", "cache")
    lines = after.splitlines()
    assert lines[lines.index("    continued line") + 1] == "image_cache_evict = lru"
    assert changes(text, after) == ([], ["image_cache_evict = lru\n"])
    after = ini.set_value(text, "retries", "3", "client")
    assert after == text + "\n[client]\nretries = 3\n"
    assert ini.get_value(after, "retries", "client") == ("client", "3")


def test_ini_section_dot_key_and_ambiguity():
    text = "[a]\nx = 1\n[b]\nx = 2\n"
    with pytest.raises(EditError, match="several sections"):
        ini.set_value(text, "x", "3")
    assert ini.set_value(text, "x", "3", "b") == "[a]\nx = 1\n[b]\nx = 3\n"
    assert ini.set_value(text, "a.x", "9") == "[a]\nx = 9\n[b]\nx = 2\n"
    with pytest.raises(EditError, match="give params.section"):
        ini.set_value(text, "y", "1")
    with pytest.raises(EditError, match="single line"):
        ini.set_value(text, "x", "1\n[evil]", "a")


def test_ini_crlf_bom_and_missing_final_newline_survive():
    text = "\ufeff[main]\r\nkey = old\r\nother = 1"
    after = ini.set_value(text, "key", "new")
    assert after == "\ufeff[main]\r\nkey = new\r\nother = 1"
    added = ini.set_value(text, "third", "3", "main")
    assert added == "\ufeff[main]\r\nkey = old\r\nother = 1\r\nthird = 3\r\n"


def test_ini_sectionless_file():
    assert ini.set_value("# flags\nA=1\nB=2\n", "B", "5") == "# flags\nA=1\nB=5\n"
    assert ini.set_value("# flags\nA=1\n", "C", "x") == "# flags\nA=1\nC=x\n"


# --------------------------------------------------------------------------- env


def test_env_keeps_export_quotes_and_comments():
    text = (DATA / "app.env").read_text()
    assert changes(text, envfile.set_value(text, "IMAGE_CACHE_MAX_ITEMS", "500")) == (
        ["IMAGE_CACHE_MAX_ITEMS=0 # unbounded\n"], ["IMAGE_CACHE_MAX_ITEMS=500 # unbounded\n"])
    assert changes(text, envfile.set_value(text, "DATABASE_URL", "postgres://x"))[1] == [
        'export DATABASE_URL="postgres://x"\n']
    assert changes(text, envfile.set_value(text, "GREETING", "hi there"))[1] == ["GREETING='hi there'\n"]
    assert envfile.get_value(text, "GREETING") == "hello world"
    assert envfile.get_value(text, "DATABASE_URL") == "postgres://app@db/checkout"


def test_env_new_keys_are_quoted_when_needed_and_literal():
    text = (DATA / "app.env").read_text()
    after = envfile.set_value(text, "MOTD", 'say "hi" $HOME; rm -rf /')
    assert after == text + 'MOTD="say \\"hi\\" $HOME; rm -rf /"\n'
    assert envfile.get_value(after, "MOTD") == 'say "hi" $HOME; rm -rf /'
    with pytest.raises(EditError, match="not a valid environment variable"):
        envfile.set_value(text, "BAD-NAME", "1")


def test_env_rewrites_every_assignment_and_multiline_values():
    text = 'A=1\nB="two\nlines"\nA=2\n'
    assert envfile.set_value(text, "A", "3") == 'A=3\nB="two\nlines"\nA=3\n'
    assert envfile.set_value(text, "B", "one") == 'A=1\nB="one"\nA=2\n'


# --------------------------------------------------------------------------- yaml, toml, json


def test_yaml_round_trip_keeps_comments_quotes_and_indentation():
    text = (DATA / "app.yaml").read_text()
    after = structured.set_value(text, "yaml", "cache.image_cache_max_items", "500")
    assert changes(text, after) == (["    image_cache_max_items: 0 # zero = unbounded\n"],
                                    ["    image_cache_max_items: 500 # zero = unbounded\n"])
    assert YAML(typ="safe").load(StringIO(after))["cache"]["image_cache_max_items"] == 500
    assert changes(text, structured.set_value(text, "yaml", "cache.name", "imgs"))[1] == ['    name: "imgs"\n']
    assert changes(text, structured.set_value(text, "yaml", "server.hosts.1", "web-3")) == (["      - web-2\n"],
                                                                                            ["      - web-3\n"])
    assert structured.get_value(after, "yaml", "server.port") == (True, 8080)


def test_yaml_creates_missing_keys():
    text = (DATA / "app.yaml").read_text()
    after = structured.set_value(text, "yaml", "cache.evict.policy", "lru")
    assert changes(text, after) == ([], ["    evict:\n", "        policy: lru\n"])


def test_toml_keeps_comments_and_types():
    text = (DATA / "app.toml").read_text()
    after = structured.set_value(text, "toml", "cache.image_cache_max_items", "500")
    assert changes(text, after) == (["image_cache_max_items = 0  # zero disables eviction\n"],
                                    ["image_cache_max_items = 500  # zero disables eviction\n"])
    assert tomllib.loads(after)["cache"]["image_cache_max_items"] == 500
    assert changes(text, structured.set_value(text, "toml", "cache.ttl", 60)) == ([], ["ttl = 60\n"])


def test_json_splices_in_place_keeping_layout_and_order():
    text = (DATA / "app.json").read_text()
    after = structured.set_value(text, "json", "cache.image_cache_max_items", "500")
    assert changes(text, after) == (['        "image_cache_max_items": 0,\n'], ['        "image_cache_max_items": 500,\n'])
    assert json.loads(after)["cache"]["image_cache_max_items"] == 500
    assert list(json.loads(after)) == ["server", "cache", "zeta"]
    nested = structured.set_value(text, "json", "server.hosts.1", "web-3")
    assert changes(text, nested)[1] == ['    "server": {"port": 8080, "hosts": ["web-1", "web-3"]},\n']
    added = structured.set_value(text, "json", "cache.ttl", 60)
    assert changes(text, added) == (['        "name": "images"\n'], ['        "name": "images",\n', '        "ttl": 60\n'])
    deep = structured.set_value(text, "json", "limits.cpu.max", 2)
    assert json.loads(deep)["limits"] == {"cpu": {"max": 2}} and deep.endswith("}\n")


def test_structured_bad_input_is_one_clear_error():
    with pytest.raises(EditError, match="not valid JSON"):
        structured.set_value('{"a": 1,,}', "json", "a", 2)
    with pytest.raises(EditError, match="not valid YAML"):
        structured.set_value("a: [1, 2\n", "yaml", "a", 2)
    with pytest.raises(EditError, match="not valid TOML"):
        structured.set_value("a = = 1\n", "toml", "a", 2)
    with pytest.raises(EditError, match="not a mapping"):
        structured.set_value('{"a": 1}\n', "json", "a.b", 2)


# --------------------------------------------------------------------------- crontab


def test_crontab_changes_a_jobs_schedule_and_environment_in_place():
    text = (DATA / "jobs.crontab").read_text()
    after = crontab.edit(text, system=False, match="sync-images", schedule="*/10 * * * *")
    assert changes(text, after) == (["*/5 * * * * /usr/local/bin/sync-images\n"],
                                    ["*/10 * * * * /usr/local/bin/sync-images\n"])
    after = crontab.edit(text, system=False, match="backup", env={"TMPDIR": "/var/tmp big"})
    assert changes(text, after)[1] == ["0 3 * * * TMPDIR='/var/tmp big' /usr/local/bin/backup --full\n"]
    again = crontab.edit(after, system=False, match="backup", env={"TMPDIR": "/tmp"})
    assert changes(text, again)[1] == ["0 3 * * * TMPDIR=/tmp /usr/local/bin/backup --full\n"]


def test_crontab_adds_jobs_and_crontab_wide_variables():
    text = (DATA / "jobs.crontab").read_text()
    assert crontab.edit(text, system=False, schedule="@daily", command="/bin/true") == text + "@daily /bin/true\n"
    after = crontab.edit(text, system=False, env={"PATH": "/usr/bin:/bin", "MAILTO": "x@y"})
    assert changes(text, after) == (["MAILTO=ops@example.com\n"], ["MAILTO=x@y\n", "PATH=/usr/bin:/bin\n"])
    assert after.splitlines()[3] == "PATH=/usr/bin:/bin"


def test_crontab_system_format_and_refusals():
    text = "SHELL=/bin/sh\n15 * * * * root /usr/sbin/rotate --now\n"
    after = crontab.edit(text, system=True, match="rotate", schedule="45 * * * *")
    assert after == "SHELL=/bin/sh\n45 * * * * root /usr/sbin/rotate --now\n"
    with pytest.raises(EditError, match="give params.user"):
        crontab.edit(text, system=True, schedule="@hourly", command="/bin/true")
    with pytest.raises(EditError, match="not a valid cron schedule"):
        crontab.edit(text, system=True, match="rotate", schedule="61 * * * *")
    with pytest.raises(EditError, match="selects 2 jobs"):
        crontab.edit("1 * * * * a x\n2 * * * * a y\n", system=False, match="a", schedule="@daily")
    with pytest.raises(EditError, match="no job's command matches"):
        crontab.edit(text, system=True, match="nothing-like-this", schedule="@daily")


# --------------------------------------------------------------------------- unified diffs


def test_unidiff_applies_at_an_offset_and_refuses_missing_context():
    text = "a\nb\nc\nd\ne\n"
    diff = "--- a/f\n+++ b/f\n@@ -3,2 +3,2 @@\n c\n-d\n+D\n"
    assert unidiff.apply(text, diff) == "a\nb\nc\nD\ne\n"
    assert unidiff.apply("x\ny\n" + text, diff) == "x\ny\na\nb\nc\nD\ne\n"
    with pytest.raises(EditError, match="does not apply"):
        unidiff.apply("a\nb\n", diff)
    with pytest.raises(EditError, match="no hunks"):
        unidiff.apply(text, "just words\n")
    with pytest.raises(EditError, match="more than one file"):
        unidiff.apply(text, "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+A\n--- a/g\n+++ b/g\n@@ -1 +1 @@\n-a\n+A\n")


def test_unidiff_round_trips_with_difflib_including_no_final_newline():
    from agent.remedy.base import unified_diff

    before, after = "one\ntwo\nthree", "one\n2\nthree\nfour"
    assert unidiff.apply(before, unified_diff(before, after, "f")) == after
    before, after = "l1\r\nl2\r\n", "l1\r\nL2\r\nl3\r\n"
    assert unidiff.apply(before, unified_diff(before, after, "f")) == after
