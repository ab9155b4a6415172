"""Alertmanager webhook payloads (firing and resolved) as `alert` signals, through the function and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.errors import InputError
from agent.sensors.alertmanager import signals_from_file, signals_from_payload
from agent.store import Store
from agent.store.signals import query_signals

DATA = Path(__file__).parent / "data" / "sensors"
ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=timezone.utc)


def test_firing_payload_is_one_signal_per_alert():
    a, b = signals_from_file(DATA / "alertmanager-firing.json", now=NOW)
    assert a.source == "alert" and a.level == "CRITICAL" and a.service == "checkout-api" and a.host == "web-1"
    assert a.message == "[FIRING] HighErrorRate: 5xx rate above 5% on checkout-api"
    assert a.ts == datetime(2026, 11, 30, 3, 12, 9, 123456, tzinfo=timezone.utc)
    assert a.attrs["alertname"] == "HighErrorRate" and a.attrs["status"] == "firing"
    assert a.attrs["labels"]["instance"] == "web-1:8080" and "endsAt" not in a.attrs
    assert b.level == "WARNING" and b.service == "checkout" and b.message.endswith("error ratio 0.051 over 5m")
    assert b.ts == datetime(2026, 11, 30, 2, 13, tzinfo=timezone.utc)


def test_resolved_is_info_at_its_end_time_and_redelivery_keeps_ids():
    [r] = signals_from_file(DATA / "alertmanager-resolved.json", now=NOW)
    assert r.level == "INFO" and r.message.startswith("[RESOLVED] HighErrorRate")
    assert r.ts == datetime(2026, 11, 30, 3, 40, tzinfo=timezone.utc)
    firing = signals_from_file(DATA / "alertmanager-firing.json", now=NOW)
    again = signals_from_file(DATA / "alertmanager-firing.json", now=datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert [s.id for s in firing] == [s.id for s in again]  # Alertmanager repeats notifications
    assert r.id not in {s.id for s in firing}


def test_lists_and_json_lines_of_payloads(tmp_path):
    payload = json.loads((DATA / "alertmanager-firing.json").read_text())
    resolved = json.loads((DATA / "alertmanager-resolved.json").read_text())
    assert len(signals_from_payload([payload, resolved], NOW)) == 3
    lines = tmp_path / "hooks.jsonl"
    lines.write_text(json.dumps(payload) + "\n\n" + json.dumps(resolved) + "\n")
    assert [s.level for s in signals_from_file(lines, NOW)] == ["CRITICAL", "WARNING", "INFO"]


@pytest.mark.parametrize("payload, message", [
    ({"status": "firing"}, "payload: missing required field 'alerts'"),
    ({"alerts": {}}, "payload.alerts: expected a list"),
    ({"alerts": [{"status": "firing", "labels": {"job": "x"}}]}, "payload.alerts[0].labels.alertname: missing"),
    ({"alerts": [{"status": "odd", "labels": {"alertname": "A"}}]}, "payload.alerts[0].status: expected 'firing' or 'resolved'"),
    ({"alerts": [{"status": "firing", "labels": {"alertname": "A"}, "startsAt": "yesterday"}]}, "payload.alerts[0].startsAt"),
    ([1], "payload[0]: expected an Alertmanager webhook payload"),
])
def test_bad_payloads_are_one_clear_line(payload, message):
    with pytest.raises(InputError) as err:
        signals_from_payload(payload, NOW)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_ingest_format_alertmanager_cli(tmp_path):
    env = dict(os.environ, SELFHEAL_HOME=str(tmp_path))

    def ingest(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agent", "ingest", "--format", "alertmanager", str(path), "--json"],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)

    r = ingest(DATA / "alertmanager-firing.json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stored"] == 2
    assert json.loads(ingest(DATA / "alertmanager-firing.json").stdout)["stored"] == 0
    assert json.loads(ingest(DATA / "alertmanager-resolved.json").stdout)["stored"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"alerts": [')
    r = ingest(bad)
    assert r.returncode == 2 and r.stderr.startswith(f"selfheal: error: {bad}:1: invalid JSON")
    with Store.open(tmp_path / "store.duckdb", readonly=True) as store:
        assert [s.level for s in query_signals(store, source="alert")] == ["WARNING", "CRITICAL", "INFO"]
