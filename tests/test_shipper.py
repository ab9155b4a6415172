"""The shipper and its outbox against real HTTP servers on 127.0.0.1 (uvicorn in a thread).

Two kinds of server: the real selfheal app (create_app), and a small scripted one that answers with given
statuses (503, 429, 413, 422) so retries, splitting and setting aside can be pinned down.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.config import load_config
from agent.errors import InputError, SelfhealError
from agent.models import Signal
from agent.server.app import create_app
from agent.server.outbox import Outbox
from agent.server.shipper import Refused, Shipper, run_shipper, signals_url
from agent.store import Store
from tests.data.server.harness import free_port


class ThreadServer:
    def __init__(self, app: Any, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def scripted(statuses: list[int], *, max_lines: int | None = None):
    """An ingest endpoint answering the given statuses in turn (then 200); it records what it stored."""
    seen: dict[str, Any] = {"requests": [], "stored": []}

    async def endpoint(request: Request):
        raw = await request.body()
        body = gzip.decompress(raw) if request.headers.get("content-encoding") == "gzip" else raw
        lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
        seen["requests"].append({"headers": dict(request.headers), "lines": lines, "raw_bytes": len(raw)})
        if max_lines is not None and len(lines) > max_lines:
            return JSONResponse({"detail": "too large"}, status_code=413)
        status = statuses.pop(0) if statuses else 200
        if status != 200:
            headers = {"Retry-After": "0"} if status == 429 else {}
            return JSONResponse({"detail": f"scripted {status}"}, status_code=status, headers=headers)
        ids = {x["id"] for x in seen["stored"]}
        new = [x for x in lines if x["id"] not in ids]
        seen["stored"] += new
        return JSONResponse({"received": len(lines), "stored": len(new), "duplicates": len(lines) - len(new)})

    app = Starlette(routes=[Route("/v1/signals", endpoint, methods=["POST"])])
    return app, seen


def write_config(home: Path, log: Path, **shipper: Any) -> None:
    home.mkdir(parents=True, exist_ok=True)
    conf = {
        "daemon": {"interval_s": 0.1},
        "shipper": {"batch_size": 40, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "max_attempts": 4,
                    **shipper},
        "sensors": {"host": home.name, "logs": [{"name": "app", "paths": [str(log)], "start_at": "beginning",
                                                 "multiline": False, "service": "shop"}]},
    }
    (home / "selfheal.yaml").write_text(yaml.safe_dump(conf))


def append_lines(log: Path, start: int, n: int, tag: str = "event") -> list[str]:
    lines = [f"2026-05-01T12:00:{i % 60:02d}Z INFO {tag} number {i} done" for i in range(start, start + n)]
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("".join(x + "\n" for x in lines))
    return lines


@pytest.fixture
def shipper_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SELFHEAL_TOKEN", raising=False)
    home = tmp_path / "host-a"
    log = tmp_path / "app.log"
    log.touch()
    write_config(home, log)
    return home, log


@pytest.fixture
def selfheal_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The real app on 127.0.0.1; `messages()` reads what its store holds."""
    monkeypatch.delenv("SELFHEAL_TOKEN", raising=False)

    def start(token: str | None = None):
        cfg = load_config(tmp_path / "server")
        cfg.server.token = token
        app = create_app(cfg, triage=False)
        srv = ThreadServer(app)

        def messages() -> list[str]:
            with app.state.backend_of().reader() as store:
                return [r[0] for r in store.execute("SELECT message FROM signals ORDER BY seq").fetchall()]

        srv.messages = messages  # type: ignore[attr-defined]
        return srv

    return start


# --------------------------------------------------------------------------- the outbox


def _signals(n: int, start: int = 0) -> list[Signal]:
    return [Signal(id=f"o{i}", ts="2026-05-01T12:00:00Z", source="log", message=f"m{i}") for i in range(start, start + n)]


def test_outbox_files_are_whole_ordered_and_settled(tmp_path: Path):
    box = Outbox(tmp_path / "outbox")
    first = box.put(_signals(3))
    second = box.put(_signals(2, start=3))
    assert box.put([]) is None
    assert box.files() == [first, second]
    assert not list(box.dir.glob(".*"))  # no temporary file left behind
    assert [json.loads(x)["id"] for x in first.read_text().splitlines()] == ["o0", "o1", "o2"]
    assert box.pending() == 5
    a, b = box.split(first)
    assert box.files() == [a, b, second] and not first.exists()
    assert [json.loads(x)["id"] for x in a.read_text().splitlines() + b.read_text().splitlines()] == ["o0", "o1", "o2"]
    kept = box.reject(a, "422: signals[0]: bad")
    assert kept.parent == box.rejected_dir and (box.rejected_dir / (a.name + ".reason")).read_text().startswith("422")
    box.done(b)
    assert box.files() == [second] and box.pending() == 2


def test_signals_url():
    assert signals_url("http://h:8765") == "http://h:8765/v1/signals"
    assert signals_url("https://h/selfheal/") == "https://h/selfheal/v1/signals"
    assert signals_url("http://h:1/v1/signals") == "http://h:1/v1/signals"
    for bad in ("ftp://h", "h:8765", "http://"):
        with pytest.raises(InputError, match="--ship-to"):
            signals_url(bad)


# --------------------------------------------------------------------------- shipping


def test_ships_what_the_sensors_saw_once(shipper_home, selfheal_server):
    home, log = shipper_home
    sent = append_lines(log, 0, 100)
    cfg = load_config(home)
    with selfheal_server() as srv:
        reports = []
        run_shipper(cfg, srv.url, once=True, on_pass=reports.append)
        assert reports[0].sensed == 100 and reports[0].queued == 100 and reports[0].shipped == 100
        assert reports[0].batches == 3 and reports[0].pending == 0
        sent += append_lines(log, 100, 30)
        run_shipper(cfg, srv.url, once=True, on_pass=reports.append)
        assert reports[1].shipped == 30 and reports[1].duplicates == 0
        assert srv.messages() == sent
    assert Outbox(home / "outbox").files() == []


def test_server_down_buffers_on_disk_then_delivers(shipper_home, selfheal_server):
    home, log = shipper_home
    sent = append_lines(log, 0, 90)
    cfg = load_config(home)
    srv = selfheal_server()
    with pytest.raises(SelfhealError, match=r"90 signals kept in .*outbox"):
        run_shipper(cfg, srv.url, once=True)
    box = Outbox(home / "outbox")
    assert box.pending() == 90 and len(box.files()) == 3
    with srv:
        run_shipper(cfg, srv.url, once=True)
        assert srv.messages() == sent
    assert box.files() == []


def test_retries_transient_answers_with_the_same_batch(shipper_home):
    home, log = shipper_home
    append_lines(log, 0, 10)
    app, seen = scripted([503, 429, 500])
    with ThreadServer(app) as srv:
        reports = []
        run_shipper(load_config(home), srv.url, once=True, on_pass=reports.append)
    assert reports[0].shipped == 10 and reports[0].errors == []
    assert len(seen["requests"]) == 4
    ids = [[x["id"] for x in r["lines"]] for r in seen["requests"]]
    assert all(x == ids[0] for x in ids) and len(set(ids[0])) == 10
    assert seen["requests"][0]["headers"]["content-type"] == "application/x-ndjson"
    assert seen["requests"][0]["headers"]["content-encoding"] == "gzip"


def test_gives_up_for_the_pass_and_keeps_the_batch(shipper_home):
    home, log = shipper_home
    append_lines(log, 0, 10)
    app, seen = scripted([503] * 4)
    with ThreadServer(app) as srv:
        with pytest.raises(SelfhealError, match="10 signals kept"):
            run_shipper(load_config(home), srv.url, once=True)
        assert len(seen["requests"]) == 4  # shipper.max_attempts
        run_shipper(load_config(home), srv.url, once=True)
    assert len(seen["stored"]) == 10
    assert Outbox(home / "outbox").files() == []


def test_too_large_batches_are_split(shipper_home):
    home, log = shipper_home
    sent = append_lines(log, 0, 40)
    app, seen = scripted([], max_lines=7)
    with ThreadServer(app) as srv:
        run_shipper(load_config(home), srv.url, once=True)
    assert [x["message"] for x in seen["stored"]] == sent
    assert max(len(r["lines"]) for r in seen["requests"] if r["lines"]) == 40  # tried whole first


def test_refused_batches_are_set_aside_not_lost(shipper_home):
    home, log = shipper_home
    append_lines(log, 0, 10)
    app, _ = scripted([422])
    with ThreadServer(app) as srv:
        reports = []
        run_shipper(load_config(home), srv.url, once=True, on_pass=reports.append)
    assert reports[0].rejected == 1 and reports[0].pending == 0
    (kept,) = (home / "outbox" / "rejected").glob("*.ndjson")
    assert len(kept.read_text().splitlines()) == 10
    assert "scripted 422" in kept.with_name(kept.name + ".reason").read_text()


def test_a_batch_queued_twice_is_stored_once(shipper_home, selfheal_server):
    """A crash after the outbox file was written but before the cursor was saved queues the batch again."""
    home, log = shipper_home
    sent = append_lines(log, 0, 25)
    cfg = load_config(home)
    with selfheal_server() as srv:
        shipper = Shipper(cfg, srv.url)
        store = Store.open(cfg.store_path)
        try:
            from agent.server.shipper import ShipReport
            from agent.store.state import set_state

            report = ShipReport()
            shipper.sense(store, report)
            shipper.queue(store, report)
            set_state(store, "shipper", "cursor", 0)  # as if the cursor never moved
            shipper.queue(store, report)
            assert shipper.outbox.pending() == 50
            shipper.drain(report)
        finally:
            shipper.close()
            store.close()
        assert report.shipped == 25 and report.duplicates == 25
        assert srv.messages() == sent


def test_token_is_sent_and_a_refusal_is_one_line(shipper_home, selfheal_server, cli):
    home, log = shipper_home
    sent = append_lines(log, 0, 5)
    with selfheal_server(token="tok-123") as srv:
        with pytest.raises(Refused, match="refused the token"):
            run_shipper(load_config(home), srv.url, token="wrong", once=True)
        r = cli("run", "--ship-to", srv.url, "--token", "wrong", "--once", home=home)
        assert r.returncode == 2 and "refused the token (401)" in r.stderr
        assert [ln for ln in r.stderr.splitlines() if ln.startswith("selfheal: error")] == [r.stderr.strip().splitlines()[-1]]
        run_shipper(load_config(home), srv.url, token="tok-123", once=True)
        assert srv.messages() == sent


def test_daemon_stops_between_passes(shipper_home, selfheal_server):
    home, log = shipper_home
    sent = append_lines(log, 0, 20)
    stop = threading.Event()
    reports = []
    with selfheal_server() as srv:
        t = threading.Thread(target=run_shipper, args=(load_config(home), srv.url),
                             kwargs={"stop": stop, "interval_s": 0.05, "on_pass": reports.append})
        t.start()
        deadline = time.monotonic() + 20
        while len(srv.messages()) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        sent += append_lines(log, 20, 5)
        while len(srv.messages()) < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        t.join(20)
        assert not t.is_alive()
        assert srv.messages() == sent
    assert len(reports) >= 2


def test_a_backlog_drains_in_budgeted_steps(shipper_home, selfheal_server):
    home, log = shipper_home
    sent = append_lines(log, 0, 120)
    cfg = load_config(home)
    with selfheal_server() as srv:
        shipper = Shipper(cfg, srv.url)
        store = Store.open(cfg.store_path)
        try:
            from agent.server.shipper import ShipReport

            first = ShipReport()
            shipper.sense(store, first)
            shipper.queue(store, first)
            shipper.drain(first, budget_s=0)  # the budget is spent at once: one batch, then the next pass
            assert first.batches == 1 and first.more is True
            rest = ShipReport()
            shipper.drain(rest)
            assert rest.batches == 2 and rest.more is False
        finally:
            shipper.close()
            store.close()
        assert srv.messages() == sent
