"""The log sensor against real files: appends, rotation, copytruncate, restarts, multi-line entries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.config import Config
from agent.sensors.runner import SensorRunner, sense_once
from agent.store import Store
from agent.store.signals import query_signals

START = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)


def make_cfg(tmp_path: Path, **log: object) -> Config:
    entry = {"name": "app", "paths": ["app.log"], "service": "checkout-api", "start_at": "beginning"}
    entry.update(log)
    cfg = Config(sensors={"host": "web-1", "logs": [entry]})
    cfg.home = tmp_path / "home"
    cfg.source = tmp_path / "selfheal.yaml"
    return cfg


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


def messages(store: Store) -> list[str]:
    return [s.message for s in query_signals(store, source="log")]


@pytest.fixture()
def env(tmp_path):
    store = Store.open(tmp_path / "store.duckdb")
    yield tmp_path, store, FakeClock(START)
    store.close()


def test_lines_become_signals_with_level_time_service_and_path(env):
    tmp, store, clock = env
    cfg = make_cfg(tmp)
    log = tmp / "app.log"
    append(log, "2026-11-30T03:12:09Z ERROR Out of memory: Killed process 4121 (gunicorn)\n"
                "Nov 30 03:12:10 web-1 kernel: Out of memory: Killed process 4122 (gunicorn)\n"
                "2026-11-30 03:12:11,500 INFO worker booted\n"
                "plain line without a level or time\n")
    report = sense_once(store, cfg, clock)
    assert report.sensors[0].signals == 4 and report.stored == 4
    sigs = query_signals(store, source="log")
    by_msg = {s.message: s for s in sigs}
    oom = by_msg["2026-11-30T03:12:09Z ERROR Out of memory: Killed process 4121 (gunicorn)"]
    assert oom.level == "ERROR" and oom.service == "checkout-api" and oom.host == "web-1"
    assert oom.ts == datetime(2026, 11, 30, 3, 12, 9, tzinfo=timezone.utc)
    assert oom.attrs["path"] == str(log) and oom.attrs["offset"] == 0
    kernel = by_msg["Nov 30 03:12:10 web-1 kernel: Out of memory: Killed process 4122 (gunicorn)"]
    assert kernel.level == "ERROR"  # no level word: the words say it failed
    assert kernel.ts.month == 11 and kernel.ts.day == 30 and kernel.ts.second == 10
    assert by_msg["2026-11-30 03:12:11,500 INFO worker booted"].ts.microsecond == 500000
    plain = by_msg["plain line without a level or time"]
    assert plain.level == "INFO" and plain.ts == START  # no time in the line: the clock's


def test_partial_last_line_waits_for_its_newline(env):
    tmp, store, clock = env
    cfg = make_cfg(tmp)
    log = tmp / "app.log"
    append(log, "first\nsecond hal")
    sense_once(store, cfg, clock)
    assert messages(store) == ["first"]
    append(log, "f done\nthird\n")
    sense_once(store, cfg, clock)
    assert messages(store) == ["first", "second half done", "third"]


def test_restart_between_appends_stores_every_line_exactly_once(tmp_path):
    cfg = make_cfg(tmp_path)
    log = tmp_path / "app.log"
    clock = FakeClock(START)
    expected = []
    for round_no in range(4):
        # A new process each round: a fresh store connection and freshly built sensors.
        with Store.open(tmp_path / "store.duckdb") as store:
            lines = [f"round {round_no} line {i}" for i in range(25)]
            append(log, "\n".join(lines) + "\n")
            expected += lines
            sense_once(store, cfg, clock)
            sense_once(store, cfg, clock)  # a second round in the same process adds nothing
    with Store.open(tmp_path / "store.duckdb", readonly=True) as store:
        assert messages(store) == expected


def test_rotation_by_rename_finishes_the_old_file_then_reads_the_new(env):
    tmp, store, clock = env
    cfg = make_cfg(tmp)
    log = tmp / "app.log"
    append(log, "a1\na2\n")
    sense_once(store, cfg, clock)
    append(log, "a3\n")
    os.rename(log, tmp / "app.log.1")
    append(tmp / "app.log.1", "a4 written by the old handle before it reopened\n")
    append(log, "b1\nb2\n")
    sense_once(store, cfg, clock)
    assert messages(store) == ["a1", "a2", "a3", "a4 written by the old handle before it reopened", "b1", "b2"]
    # The rotated file is still watched for a while; the new one goes on.
    append(tmp / "app.log.1", "a5 late\n")
    append(log, "b3\n")
    sense_once(store, cfg, clock)
    assert messages(store)[-2:] == ["a5 late", "b3"]
    assert len(set(messages(store))) == len(messages(store))


def test_copytruncate_reads_the_file_again_from_the_start(env):
    tmp, store, clock = env
    cfg = make_cfg(tmp)
    log = tmp / "app.log"
    append(log, "2026-11-30T03:00:00Z INFO one\n2026-11-30T03:00:01Z INFO two\n")
    sense_once(store, cfg, clock)
    shutil.copyfile(log, tmp / "app.log.1")
    with open(log, "r+") as fh:
        fh.truncate(0)
    append(log, "2026-11-30T03:00:02Z INFO three\n")
    sense_once(store, cfg, clock)
    # Truncated and regrown past the old offset before the next round: the first bytes tell.
    shutil.copyfile(log, tmp / "app.log.2")
    with open(log, "r+") as fh:
        fh.truncate(0)
    append(log, "2026-11-30T03:00:03Z INFO four, a much longer line than before\n2026-11-30T03:00:04Z INFO five\n")
    sense_once(store, cfg, clock)
    got = [m.split(" INFO ")[1] for m in messages(store)]
    assert got == ["one", "two", "three", "four, a much longer line than before", "five"]


def test_rotation_while_a_real_writer_is_writing(tmp_path):
    """A separate process logs through RotatingFileHandler while we poll: each line stored exactly once."""
    cfg = make_cfg(tmp_path, paths=["app.log"], multiline=False)
    n = 3000
    clock = FakeClock(START)
    store = Store.open(tmp_path / "store.duckdb")
    sense_once(store, cfg, clock)  # the sensor watches before the service starts writing
    writer = subprocess.Popen([sys.executable, "-c", (
        "import logging, logging.handlers, sys, time\n"
        f"h = logging.handlers.RotatingFileHandler({str(tmp_path / 'app.log')!r}, maxBytes=4000, backupCount=200)\n"
        "h.setFormatter(logging.Formatter('%(levelname)s %(message)s'))\n"
        "log = logging.getLogger('w'); log.addHandler(h); log.setLevel(logging.INFO)\n"
        f"for i in range({n}):\n"
        "    log.info('line %06d', i)\n"
        "    if i % 100 == 0: time.sleep(0.01)\n"
    )])
    try:
        restarts = 0
        while writer.poll() is None:
            sense_once(store, cfg, clock)
            time.sleep(0.005)
            if restarts < 3:  # restart the "daemon" mid-stream a few times
                store.close()
                store = Store.open(tmp_path / "store.duckdb")
                restarts += 1
        assert writer.returncode == 0
        sense_once(store, cfg, clock)
        got = messages(store)
    finally:
        store.close()
    assert len(got) == n, f"{len(got)} stored, {n} written"
    assert sorted(got) == [f"INFO line {i:06d}" for i in range(n)]
    assert len(list(tmp_path.glob("app.log.*"))) > 5  # it really rotated, several times


def test_glob_picks_up_new_files_and_start_at_end_skips_history(env):
    tmp, store, clock = env
    (tmp / "logs").mkdir()
    append(tmp / "logs" / "a.log", "old history\n")
    append(tmp / "logs" / "skip.log.gz", "not text\n")
    cfg = make_cfg(tmp, paths=["logs/*.log*"], start_at="end")
    sense_once(store, cfg, clock)
    assert messages(store) == []  # existing content skipped on the first round
    append(tmp / "logs" / "a.log", "new in a\n")
    append(tmp / "logs" / "b.log", "b appeared later, read from its start\n")
    sense_once(store, cfg, clock)
    assert sorted(messages(store)) == ["b appeared later, read from its start", "new in a"]


def test_multiline_entries_stay_with_the_line_that_started_them(env):
    tmp, store, clock = env
    cfg = make_cfg(tmp)
    text = (Path(__file__).parent / "data" / "sensors" / "multiline.log").read_text()
    append(tmp / "app.log", text)
    sense_once(store, cfg, clock)
    sigs = sorted(query_signals(store, source="log"), key=lambda s: s.attrs["offset"])
    firsts = [s.message.splitlines()[0] for s in sigs]
    assert firsts == [
        "2026-11-30 03:11:40,120 ERROR checkout-api: request failed: GET /cart/77",
        "2026-11-30 03:11:41,000 INFO checkout-api: GET /health 200",
        "2026-11-30 03:11:42,001 ERROR c.e.CheckoutController - payment failed",
        "2026-11-30 03:11:43,000 WARN c.e.Pool - pool at 90%",
        'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space',
        "2026-11-30 03:11:45,000 INFO done",
    ]
    py, _, java, _, oom, _ = sigs
    assert py.level == "ERROR" and py.attrs["lines"] == 13
    assert py.message.splitlines()[-1] == "KeyError: 'price'"
    assert "During handling of the above exception" in py.message
    assert java.attrs["lines"] == 7 and java.message.splitlines()[-1] == "\t... 12 more"
    assert oom.level == "ERROR" and oom.attrs["lines"] == 3
    assert sigs[3].level == "WARNING"


def test_a_trace_written_in_two_pieces_is_one_signal(env):
    tmp, store, clock = env
    cfg = make_cfg(tmp, multiline_flush_s=30)
    log = tmp / "app.log"
    append(log, "2026-11-30 03:11:42 ERROR c.e.Foo - failed\njava.lang.IllegalStateException: boom\n"
                "\tat com.example.Foo.bar(Foo.java:10)\n")
    sense_once(store, cfg, clock)
    assert messages(store) == []  # the trace may go on: held back
    append(log, "\tat com.example.Main.main(Main.java:3)\n2026-11-30 03:11:43 INFO next\n")
    sense_once(store, cfg, clock)
    got = messages(store)
    assert len(got) == 2 and got[0].count("\n") == 3 and got[1].endswith("INFO next")
    # A trace at the end of a quiet file is flushed by the next round that sees no growth.
    append(log, "2026-11-30 03:11:44 ERROR x\n\tat a.b(C.java:1)\n")
    sense_once(store, cfg, clock)
    assert len(messages(store)) == 2
    sense_once(store, cfg, clock)
    assert messages(store)[-1] == "2026-11-30 03:11:44 ERROR x\n\tat a.b(C.java:1)"


def test_large_backlog_is_read_in_budgeted_rounds(env):
    tmp, store, clock = env
    cfg = make_cfg(tmp, max_bytes_per_poll=4096)
    lines = [f"line {i:05d} " + "x" * 40 for i in range(2000)]
    append(tmp / "app.log", "\n".join(lines) + "\n")
    report = sense_once(store, cfg, clock)
    assert report.sensors[0].signals == 2000
    assert messages(store) == lines


def test_min_level_and_service_pattern(env):
    tmp, store, clock = env
    cfg = make_cfg(tmp, min_level="WARNING", service_pattern=r"^\w{3} +\d+ [\d:]+ \S+ (?P<service>[\w-]+)\[\d+\]:")
    append(tmp / "app.log", "Nov 30 03:00:00 web-1 sshd[12]: Accepted publickey\n"
                            "Nov 30 03:00:01 web-1 gunicorn[77]: ERROR worker timeout (pid:78)\n")
    sense_once(store, cfg, clock)
    sigs = query_signals(store, source="log")
    assert [s.service for s in sigs] == ["gunicorn"] and sigs[0].level == "ERROR"


def test_missing_file_is_a_one_line_warning_and_appearing_later_is_read(env):
    tmp, store, clock = env
    cfg = make_cfg(tmp, paths=["later.log"], start_at="end")
    report = sense_once(store, cfg, clock)
    assert report.all_warnings() == [f"log:app: {tmp / 'later.log'}: no such file"]
    append(tmp / "later.log", "hello\n")
    sense_once(store, cfg, clock)
    assert messages(store) == ["hello"]  # appeared after the first round: read from its start


def test_due_follows_interval(tmp_path):
    cfg = make_cfg(tmp_path, interval_s=10)
    runner = SensorRunner(cfg)
    clock = FakeClock(START)
    with Store.open(None) as store:
        assert [r.sensor for r in runner.sense(store, clock, only_due=True).sensors] == ["log:app"]
        clock.sleep(5)
        assert runner.sense(store, clock, only_due=True).sensors == []
        clock.sleep(5)
        assert len(runner.sense(store, clock, only_due=True).sensors) == 1
