"""Many hosts, one loop, end to end: two `selfheal run --ship-to` daemons and a `selfheal serve`, all real
processes on 127.0.0.1. The server is killed (SIGKILL, mid-stream) and started again on the same port while
both shippers keep sensing; afterwards every line written on either host is stored exactly once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from agent.store import Store
from tests.data.server.harness import ServerProcess, metric, start_shipper, stop_process

pytestmark = pytest.mark.slow

LINES_PER_HOST = 300
TOKEN = "e2e-token-7f3a"


def write_shipper_config(home: Path, log: Path) -> None:
    home.mkdir(parents=True)
    conf = {
        "daemon": {"interval_s": 0.1},
        "shipper": {"batch_size": 25, "backoff_initial_s": 0.05, "backoff_max_s": 0.3, "max_attempts": 3,
                    "timeout_s": 5},
        "sensors": {"host": home.name, "logs": [{"name": "app", "paths": [str(log)], "start_at": "beginning",
                                                 "multiline": False, "interval_s": 0.05, "service": "shop"}]},
    }
    (home / "selfheal.yaml").write_text(yaml.safe_dump(conf))


def writer(log: Path, host: str, written: list[str], stop_at: int) -> None:
    """Appends lines in small bursts, as a busy service would, for about three seconds."""
    i = 0
    while i < stop_at:
        burst = [f"2026-05-01T12:{i // 60 % 60:02d}:{i % 60:02d}Z INFO {host} order {i} shipped" for i in range(i, min(i + 10, stop_at))]
        with open(log, "a", encoding="utf-8") as fh:
            fh.write("".join(x + "\n" for x in burst))
        written += burst
        i += len(burst)
        time.sleep(0.1)


def stored_count(server: ServerProcess) -> float:
    try:
        text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).text
    except httpx.TransportError:
        return -1
    return metric(text, "selfheal_store_signals") or 0


def test_two_shippers_and_a_server_restart_store_every_signal_once(tmp_path: Path):
    server = ServerProcess(tmp_path / "server", env={"SELFHEAL_TOKEN": TOKEN}).start()
    hosts = {}
    for name in ("host-a", "host-b"):
        log = tmp_path / f"{name}.log"
        log.touch()
        write_shipper_config(tmp_path / name, log)
        hosts[name] = {"log": log, "written": [],
                       "proc": start_shipper(tmp_path / name, server.url, token=TOKEN)}
    writers = [threading.Thread(target=writer, args=(h["log"], name, h["written"], LINES_PER_HOST))
               for name, h in hosts.items()]
    try:
        for t in writers:
            t.start()
        # mid-stream: some signals are in, the writers are still going
        deadline = time.monotonic() + 30
        while stored_count(server) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored_count(server) >= 60, server.log.read_text()[-2000:]
        server.kill()
        time.sleep(1.0)  # the shippers buffer on disk meanwhile
        buffered = sum(len(list((tmp_path / name / "outbox").glob("*.ndjson"))) for name in hosts)
        server.start()
        for t in writers:
            t.join(30)
        total = 2 * LINES_PER_HOST
        deadline = time.monotonic() + 60
        while stored_count(server) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        for name, h in hosts.items():
            assert stop_process(h["proc"]) == 0, (tmp_path / name / "ship.log").read_text()[-2000:]
    finally:
        for h in hosts.values():
            stop_process(h["proc"])
        server.stop()

    assert buffered > 0, "the shippers had nothing buffered while the server was down"
    with Store.open(server.home / "store.duckdb", readonly=True) as store:
        rows = store.execute("SELECT host, message, id FROM signals").fetchall()
    for name, h in hosts.items():
        got = sorted(m for host, m, _ in rows if host == name)
        assert len(h["written"]) == LINES_PER_HOST
        assert got == sorted(h["written"]), f"{name}: {len(got)} stored of {len(h['written'])} written"
        assert list((tmp_path / name / "outbox").glob("*.ndjson")) == []
    assert len({i for _, _, i in rows}) == len(rows) == 2 * LINES_PER_HOST
