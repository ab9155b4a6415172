"""analyze_issue on a real DuckDB store with real probes: statuses, stored chains and gate results, recurrences."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.analysis import analyze_issue
from agent.clock import FakeClock
from agent.config import Config
from agent.models import Signal
from agent.store import Store
from agent.store.chains import archive_chain, chains_for_issue, gate_results
from agent.store.issues import add_event, add_occurrence, events, get_issue, open_issue, resolve
from agent.store.signals import insert_signals, query_signals

DATA = Path(__file__).parent / "data" / "analysis"
T0 = datetime(2026, 11, 30, 3, 20, tzinfo=timezone.utc)


def incident_signals(day: int = 30) -> list[Signal]:
    """The contract incident's events without its probe facts: live probes must find those."""
    case = json.loads((DATA / "contract-analysis-case.json").read_text())
    out = []
    for s in case["signals"]:
        if s["source"] == "probe":
            continue
        s = dict(s, ts=s["ts"].replace("2026-11-30", f"2026-11-{day:02d}" if day <= 30 else f"2026-12-{day - 30:02d}"))
        if day != 30:
            s["id"] = f"{s['id']}-d{day}"
        out.append(Signal.model_validate(s))
    return out


@pytest.fixture
def system(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    (root / "checkout.ini").write_text("[server]\nworkers = 4\n[cache]\nimage_cache_max_items = 0\n")
    cfg = Config(probes={"roots": [str(root)]},
                 remedy={"services": {"checkout-api": {"config_files": ["checkout.ini"]}}})
    cfg.home = tmp_path / "home"
    cfg.home.mkdir()
    store = Store.open(cfg.store_path)
    yield store, cfg, root
    store.close()


def open_from(store: Store, signals: list[Signal], symptom_id: str) -> str:
    insert_signals(store, signals)
    sym = next(s for s in signals if s.id == symptom_id)
    issue = open_issue(store, fingerprint="f1:test", title=sym.message, ts=sym.ts, source=sym.source,
                       service=sym.service, host=sym.host, signal_id=sym.id)
    add_occurrence(store, issue, sym.id, sym.ts, "new")
    return issue


def test_live_analysis_probes_stores_and_moves_the_issue_to_fixing(system):
    store, cfg, _root = system
    issue = open_from(store, incident_signals(), "s4")
    result = analyze_issue(store, cfg, issue, FakeClock(T0))
    assert not result.escalated, result.reason
    assert result.mode == "unbounded-cache-oom"
    root = result.chain.root_node
    assert root.statement == "config image_cache_max_items in checkout.ini is 0, which disables eviction of the cache"
    # the probe's fact is now a stored signal, the evidence the root cites
    probes = query_signals(store, source="probe")
    assert "checkout.ini: image_cache_max_items = 0" in [s.message for s in probes]
    assert all(s.ts == T0 and s.service == "checkout-api" for s in probes)
    # chain and gate result stored; the chain's id is the stored one
    chains = chains_for_issue(store, issue)
    assert [c["id"] for c in chains if c["passed"]] == [result.chain.id]
    assert chains[-1]["mode"] == "unbounded-cache-oom" and chains[-1]["analyst"] == "offline"
    assert gate_results(store, chain_id=result.chain.id)[0]["passed"] is True
    statuses = [(e["status"], e["event"]) for e in events(store, issue)]
    assert statuses == [("open", "opened"), ("analysing", "analysing"), ("fixing", "analysed")]
    assert get_issue(store, issue)["status"] == "fixing"


def test_live_analysis_without_evidence_escalates_to_needs_human(system):
    store, cfg, root = system
    (root / "checkout.ini").write_text("[server]\nworkers = 4\n")  # nothing about the cache
    signals = [s for s in incident_signals() if s.source != "metric"]
    issue = open_from(store, signals, "s4")
    result = analyze_issue(store, cfg, issue, FakeClock(T0))
    assert result.escalated
    last = events(store, issue)[-1]
    assert last["status"] == "needs-human" and last["event"] == "escalated"
    assert "missing evidence" in last["reason"] and last["chain_id"] == result.chain.id
    assert chains_for_issue(store, issue)[-1]["passed"] is False
    assert query_signals(store, source="probe")  # the probes ran and were recorded even so


def test_unknown_issue_is_an_input_error(system):
    store, cfg, _ = system
    from agent.errors import InputError

    with pytest.raises(InputError, match="no issue 'ISS-0404'"):
        analyze_issue(store, cfg, "ISS-0404", FakeClock(T0))


def test_recurrence_after_a_reverting_deploy(system):
    """Fixed once (chain archived, issue resolved); a deploy re-renders the config from its template and the
    failure comes back: the new chain must go deeper than the archived root, to the template."""
    store, cfg, root = system
    issue = open_from(store, incident_signals(), "s4")
    first = analyze_issue(store, cfg, issue, FakeClock(T0))
    assert not first.escalated
    resolved_at = T0 + timedelta(hours=1)
    (root / "checkout.ini").write_text("[cache]\nimage_cache_max_items = 500\n")  # the fix
    archive_chain(store, first.chain.id, outcome="resolved", resolved_at=resolved_at, at=resolved_at)
    resolve(store, issue, resolved_at, reason="fix verified")

    # A day later a deploy renders the config from a template that still says 0.
    (root / "templates").mkdir()
    (root / "templates" / "checkout.ini.j2").write_text("[cache]\nimage_cache_max_items = 0\n")
    (root / "checkout.ini").write_text("[cache]\nimage_cache_max_items = 0\n")
    deploy = Signal(id="dep1", ts="2026-12-01T01:05:00Z", source="log", service="deploy", host="web-1",
                    message="ansible-playbook[8812]: Rendered /srv/checkout.ini from templates/checkout.ini.j2")
    again = incident_signals(day=31)
    for s in again:
        s.host = "web-1"
    insert_signals(store, [deploy] + again)
    sym = next(s for s in again if s.id == "s4-d31")
    add_occurrence(store, issue, sym.id, sym.ts, "recurrence")
    add_event(store, issue, "open", "recurrence", sym.ts, signal_id=sym.id)

    second = analyze_issue(store, cfg, issue, FakeClock(sym.ts + timedelta(minutes=8)))
    assert not second.escalated, second.reason
    assert second.gate.checks.archive.escalated is True
    statements = [n.statement for n in second.chain.nodes]
    assert second.chain.root_node.statement == "the deploy template templates/checkout.ini.j2 sets image_cache_max_items to 0"
    assert first.chain.root_node.statement in statements[:-1]
    assert second.chain.fix.params["file"] == "templates/checkout.ini.j2"
    assert "holds again after its fix" in second.reason


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_dead_model_endpoint_falls_back_to_offline_and_says_so(system):
    store, cfg, _ = system
    cfg.analysis.model = type(cfg.analysis).model_fields["model"].annotation.__args__[0](
        base_url=f"http://127.0.0.1:{_closed_port()}/v1", model="llama3.1", api_key_env=None, max_retries=0,
        timeout_s=3)
    issue = open_from(store, incident_signals(), "s4")
    result = analyze_issue(store, cfg, issue, FakeClock(T0))
    assert not result.escalated
    assert result.analyst == "offline"
    assert "model unavailable" in result.reason and "offline analyst took over" in result.reason
    assert "unreachable" in result.reason


def test_cli_analyze_issue(tmp_path):
    """`selfheal analyze ISSUE --json` against a store prepared on disk, as a user runs it."""
    root = tmp_path / "srv"
    root.mkdir()
    (root / "checkout.ini").write_text("[cache]\nimage_cache_max_items = 0\n")
    conf = tmp_path / "selfheal.yaml"
    conf.write_text(f"probes:\n  roots: [{root}]\nremedy:\n  services:\n    checkout-api:\n"
                    f"      config_files: [checkout.ini]\n")
    home = tmp_path / "home"
    home.mkdir()
    store = Store.open(home / "store.duckdb")
    try:
        issue = open_from(store, incident_signals(), "s4")
    finally:
        store.close()
    exe = str(Path(sys.executable).parent / "selfheal")
    proc = subprocess.run([exe, "--home", str(home), "--config", str(conf), "analyze", issue, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["escalated"] is False and out["chain"]["id"].startswith("C-") and out["issue"] == issue
    proc = subprocess.run([exe, "--home", str(home), "--config", str(conf), "analyze", "ISS-0999"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no issue 'ISS-0999'" in proc.stderr
