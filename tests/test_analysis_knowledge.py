"""The knowledge base loader (validation errors name file and field), templates, and symptom regexes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from agent.analysis.knowledge import KNOWLEDGE_DIR, fill, load_file, load_modes, parse_mode, variables
from agent.analysis.patterns import concretise, message_regex
from agent.errors import InputError
from agent.models import CATEGORIES

MINIMAL = {
    "id": "tiny-mode",
    "title": "a tiny mode",
    "symptoms": [{"node": "sym", "source": "log", "match": "boom"}],
    "nodes": [
        {"id": "sym", "statement": "{{service}} fails", "observe": {"source": "log", "match": "boom"}},
        {"id": "root", "statement": "config {{key}} is wrong", "category": "config",
         "observe": {"source": "probe", "match": "(?P<key>\\w+) = 0"},
         "fix": {"action": "set_config", "params": {"key": "{{key}}", "value": "1"},
                 "postcondition": {"source": "probe", "match": "{{key}} = 1"},
                 "description": "set {{key}} to 1 so it cannot be zero"}},
    ],
    "edges": [{"cause": "root", "effect": "sym", "mechanism": "a zero {{key}} makes it fail at once"}],
}


def _mutate(path: str, value):
    import copy

    data = copy.deepcopy(MINIMAL)
    cur = data
    parts = path.split(".")
    for p in parts[:-1]:
        cur = cur[int(p)] if p.isdigit() else cur[p]
    last = parts[-1]
    if value is _DELETE:
        del cur[int(last) if last.isdigit() else last]
    elif last.isdigit():
        cur[int(last)] = value
    else:
        cur[last] = value
    return data


_DELETE = object()


def test_shipped_modes_load_and_are_consistent():
    modes = load_modes()
    ids = [m.id for m in modes]
    assert {"unbounded-cache-oom", "expired-tls-certificate", "cron-missing-env"} <= set(ids)
    assert len(ids) == len(set(ids))
    for m in modes:
        roots = [n for n in m.nodes.values() if n.is_root]
        assert roots, m.id
        for r in roots:
            assert r.category in CATEGORIES
        for s in m.symptoms:
            assert s.node in m.nodes
        for e in m.edges:
            assert e.cause in m.nodes and e.effect in m.nodes


def test_minimal_mode_parses(tmp_path):
    mode = parse_mode(MINIMAL, tmp_path / "tiny-mode.yaml")
    assert mode.nodes["root"].is_root
    assert [e.cause for e in mode.causes_of["sym"]] == ["root"]


@pytest.mark.parametrize(
    "path,value,field,words",
    [
        ("title", _DELETE, "title", "missing required field"),
        ("nodes.1.observe.match", "(unclosed", "nodes[1].observe.match", "invalid regular expression"),
        ("edges.0.cause", "nowhere", "edges[0].cause", "'nowhere' is not a node id"),
        ("nodes.1.fix.action", "rm_rf", "nodes[1].fix.action", "unknown action"),
        ("nodes.1.category", "vibes", "nodes[1].category", "unknown category"),
        ("nodes.1.statement", "config {{kee}} is wrong", "nodes[1].statement", "{{kee}} is never supplied"),
        ("symptoms.0.node", "ghost", "symptoms[0].node", "'ghost' is not a node id"),
        ("symptoms.0.source", "syslog", "symptoms[0].source", "unknown source"),
        ("nodes.1.fix", _DELETE, "nodes[1].fix", "needs both category and fix"),
        ("nodes.0.probes", [{"kind": "teleport"}], "nodes[0].probes[0]", "unknown probe kind"),
        ("nodes.0.probes", [{"kind": "stat"}], "nodes[0].probes[0]", "probe stat needs path"),
        ("nodes.0.colour", "red", "nodes[0].colour", "unknown field"),
        ("id", "Bad_Id", "id", "lowercase-kebab"),
    ],
)
def test_malformed_entry_is_one_error_naming_file_and_field(tmp_path, path, value, field, words):
    f = tmp_path / "tiny-mode.yaml"
    f.write_text(yaml.safe_dump(_mutate(path, value)))
    with pytest.raises(InputError) as err:
        load_file(f)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{f}: {field}"), message
    assert words in message


def test_invalid_yaml_names_the_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("id: x\nnodes: [\n  - bad\n")
    with pytest.raises(InputError, match=r"broken\.yaml:\d+: invalid YAML"):
        load_file(f)


def test_duplicate_mode_id_across_dirs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "one.yaml").write_text(yaml.safe_dump(MINIMAL))
    (b / "two.yaml").write_text(yaml.safe_dump(MINIMAL))
    (b / "_draft.yaml").write_text("not: [valid")  # ignored: leading underscore
    with pytest.raises(InputError, match="already defined"):
        load_modes(dirs=[a, b])


def test_readme_documents_the_format():
    text = (KNOWLEDGE_DIR / "README.md").read_text()
    for word in ("symptoms", "nodes", "edges", "observe", "probes", "category", "fix", "postcondition", "recurrence",
                 "scope", "defaults", "facts", "{{"):
        assert word in text


def test_fill_escapes_in_regexes_only():
    values = {"file": "check.out.ini", "key": "a+b"}
    assert fill("{{file}}: {{ key }}", values) == "check.out.ini: a+b"
    assert fill("{{file}}: {{key}}\\d{3}", values, regex=True) == "check\\.out\\.ini: a\\+b\\d{3}"
    assert fill("{{missing}}", values) is None
    assert variables("x {{a}} {{ b }} \\d{2}") == ["a", "b"]


@pytest.mark.parametrize(
    "message,repeat,other",
    [
        ("GET http://127.0.0.1:8080/health -> 503", "GET http://127.0.0.1:8080/health -> 503",
         "GET http://127.0.0.1:8080/health -> 200"),
        ("Out of memory: Killed process 4121 (gunicorn) total-vm:2459932kB, anon-rss:1998020kB",
         "Out of memory: Killed process 977 (gunicorn) total-vm:2011kB, anon-rss:1900kB",
         "Out of memory: Killed process 977 (postgres) total-vm:2011kB, anon-rss:1900kB"),
        ("2026/11/30 03:12:09 [error] 1234#1234: *5678 upstream timed out (110: Connection timed out) while reading "
         "response header from upstream, client: 10.0.0.5, server: shop",
         "2026/12/01 13:02:44 [error] 88#88: *1 upstream timed out (110: Connection timed out) while reading "
         "response header from upstream, client: 10.9.0.77, server: shop",
         "2026/12/01 13:02:44 [error] 88#88: *1 connect() failed (111: Connection refused) while connecting to "
         "upstream, client: 10.9.0.77, server: shop"),
        ("[2026-11-30 03:12:09 +0000] [77] [CRITICAL] WORKER TIMEOUT (pid:1234)",
         "[2026-12-02 11:00:01 +0000] [80] [CRITICAL] WORKER TIMEOUT (pid:98)",
         "[2026-12-02 11:00:01 +0000] [80] [INFO] Booting worker with pid: 98"),
        ("FATAL:  sorry, too many clients already", "FATAL:  sorry, too many clients already",
         "FATAL:  remaining connection slots are reserved for non-replication superuser connections"),
    ],
)
def test_message_regex_matches_repeats_not_neighbours(message, repeat, other):
    rx = message_regex(message)
    assert re.search(rx, message)
    assert re.search(rx, repeat)
    assert not re.search(rx, other)


def test_message_regex_uses_first_line_of_multiline_output():
    msg = "report.sh exited with status 1: Traceback (most recent call last):\n  File \"x.py\", line 3\nKeyError: 'A'"
    rx = message_regex(msg)
    assert "KeyError" not in rx and re.search(rx, msg)


def test_concretise_replaces_captured_groups():
    rx = r"(?P<file>[\w./-]+): (?P<key>\w*cache\w*)\s*=\s*(?P<value>0)\b"
    text = "checkout.ini: image_cache_max_items = 0"
    out = concretise(rx, {"file": "checkout.ini", "key": "image_cache_max_items", "value": "0"}, text)
    assert out == r"checkout\.ini: image_cache_max_items\s*=\s*0\b"
    assert re.search(out, text) and not re.search(out, "other.ini: image_cache_max_items = 0")
    # character classes holding '(' do not confuse the group scanner
    assert concretise(r"[(](?P<x>\d+)", {"x": "7"}, "(7") == r"[(]7"


def test_every_shipped_symptom_pattern_recognises_real_phrasing():
    """Real-world lines the three shipped modes must recognise (wording of the kernel, systemd, OpenSSL, nginx, cron)."""
    lines = {
        "unbounded-cache-oom": [
            ("log", "Out of memory: Killed process 4121 (gunicorn) total-vm:2459932kB, anon-rss:1998020kB"),
            ("log", "Memory cgroup out of memory: Killed process 3301 (python3) total-vm:1200kB"),
            ("log", "checkout-api.service: Main process exited, code=killed, status=9/KILL"),
            ("log", "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space"),
            ("health", "GET http://127.0.0.1:8080/health -> 503"),
        ],
        "expired-tls-certificate": [
            ("log", "ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                    "certificate has expired (_ssl.c:1006)"),
            ("log", "curl: (60) SSL certificate problem: certificate has expired"),
            ("log", "x509: certificate has expired or is not yet valid: current time 2026-11-30T09:00:00Z is after "
                    "2026-11-29T23:59:59Z"),
            ("log", "javax.net.ssl.SSLHandshakeException: PKIX path validation failed: "
                    "java.security.cert.CertPathValidatorException: validity check failed"),
        ],
        "cron-missing-env": [
            ("cron", "backup.sh exited with status 1: /opt/backup.sh: line 4: S3_BUCKET: unbound variable"),
            ("cron", "report exited 1: KeyError: 'DATABASE_URL'"),
        ],
    }
    modes = {m.id: m for m in load_modes()}
    for mode_id, samples in lines.items():
        mode = modes[mode_id]
        for source, text in samples:
            assert any(source in s.sources and s.regex.search(text) for s in mode.symptoms), (mode_id, text)


def test_knowledge_dir_from_config_rules_dirs(tmp_path):
    from agent.config import Config

    extra = tmp_path / "rules" / "knowledge"
    extra.mkdir(parents=True)
    data = dict(MINIMAL, id="site-specific-mode")
    (extra / "site.yaml").write_text(yaml.safe_dump(data))
    cfg = Config(rules_dirs=[str(tmp_path / "rules")])
    ids = [m.id for m in load_modes(cfg)]
    assert "site-specific-mode" in ids and "unbounded-cache-oom" in ids
    assert Path(KNOWLEDGE_DIR).is_dir()
