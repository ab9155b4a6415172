"""The store: migrations, the writer lock, all-or-nothing idempotent ingest, bulk speed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from agent.errors import LockedError
from agent.models import Signal
from agent.store import Store, migrations
from agent.store.signals import count_signals, insert_signals, query_signals
from tests.conftest import EXAMPLES


def test_migrations_apply_once_and_are_recorded(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        applied = store.applied_migrations()
    assert applied == [f"{n:03d}_{name}" for n, name, _ in migrations()]
    with Store.open(path) as store:
        assert store.migrate() == []
        assert store.applied_migrations() == applied
        assert store.scalar("SELECT count(*) FROM migrations") == len(applied)


def test_second_writer_gets_the_lock_error(tmp_path):
    path = tmp_path / "s.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from agent.store import Store; s = Store.open(sys.argv[1]); print('ready', flush=True); time.sleep(30)",
         str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(LockedError, match=r"another selfheal writer \(pid \d+\) holds the store"):
            Store.open(path)
    finally:
        holder.kill()
        holder.wait()
    with Store.open(path) as store:  # the lock dies with its holder
        assert store.applied_migrations()


def test_cli_ingest_is_idempotent_and_all_or_nothing(cli, home, tmp_path):
    small = EXAMPLES / "signals-small.jsonl"
    first = cli("ingest", str(small), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["stored"] == 4
    again = cli("ingest", str(small), "--json")
    assert json.loads(again.stdout) == {"file": str(small), "read": 4, "stored": 0, "duplicates": 4}

    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"ts": f"2026-12-01T00:00:0{i}Z", "source": "log", "message": f"fresh {i}"}) for i in range(3)]
    lines.insert(2, '{"ts": "2026-12-01T00:00:09Z", "source": "log"}')
    bad.write_text("\n".join(lines) + "\n")
    res = cli("ingest", str(bad))
    assert res.returncode == 2
    assert res.stderr.strip() == f"selfheal: error: {bad}:3: missing required field 'message'"
    assert "Traceback" not in res.stderr
    listed = cli("signals", "--json", "--limit", "100")
    assert [s["id"] for s in json.loads(listed.stdout)] == ["s2", "s3", "s4", "s1"]


def test_stdin_ingest_and_filters(cli):
    lines = "\n".join(json.dumps({"ts": f"2026-12-01T00:0{i}:00Z", "source": "health" if i % 2 else "log",
                                  "service": "api", "level": "ERROR" if i == 3 else "INFO", "message": f"m{i}"})
                      for i in range(5))
    assert cli("ingest", "-", input=lines).returncode == 0
    out = json.loads(cli("signals", "--source", "health", "--json").stdout)
    assert [s["message"] for s in out] == ["m1", "m3"]
    out = json.loads(cli("signals", "--level", "error", "--json").stdout)
    assert [s["message"] for s in out] == ["m3"]
    bad = cli("signals", "--source", "nope")
    assert bad.returncode == 2 and bad.stderr.startswith("selfheal: error: --source")


def test_interrupted_batch_leaves_store_unchanged(tmp_path):
    path = tmp_path / "s.duckdb"
    base = datetime(2026, 12, 1, tzinfo=timezone.utc)
    with Store.open(path) as store:
        insert_signals(store, [Signal(ts=base, source="log", message="kept")])
        with pytest.raises(duckdb.Error):
            with store.transaction():
                insert_signals(store, [Signal(ts=base, source="log", message=f"m{i}") for i in range(10)])
                store.execute("INSERT INTO no_such_table VALUES (1)")
        assert count_signals(store) == 1


def test_bulk_ingest_of_100k_signals(tmp_path):
    base = datetime(2026, 12, 1, tzinfo=timezone.utc)
    batch = [Signal(ts=base + timedelta(seconds=i), source="log", service="svc", message=f"line {i}",
                    attrs={"n": i}) for i in range(100_000)]
    with Store.open(tmp_path / "s.duckdb") as store:
        assert insert_signals(store, batch) == 100_000
        assert insert_signals(store, batch[:10]) == 0
        got = query_signals(store, text="line 99999")
        assert [s.attrs for s in got] == [{"n": 99999}]
