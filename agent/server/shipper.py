"""`selfheal run --ship-to URL`: run this host's sensors and ship their signals to a selfheal server.

Each pass: the sensors run one round into the local store (their cursors and baselines live there, and so do
beats and cron runs spooled by `selfheal beat` / `selfheal cron`); the signals stored since the last pass are
written to the outbox ($SELFHEAL_HOME/outbox, see outbox.py) in batches and the local cursor moves on; then
the outbox is sent oldest first, one batch per POST to /v1/signals, each retried with backoff (tenacity) on
connection errors, 5xx and 429. A batch leaves the outbox only after a 2xx. While the server is down the
batches wait on disk and the next pass tries again, so nothing is lost; signals keep their stable ids and the
server's insert is idempotent by id, so a batch sent twice (its answer lost, a crash before the file was
removed, the cursor not yet saved) is stored once.

Settings (optional `shipper:` section of selfheal.yaml):
  batch_size: 1000          signals per outbox file / request
  timeout_s: 30             per request
  max_attempts: 5           tries per batch and pass (then the pass ends and the batch waits for the next)
  backoff_initial_s: 0.5    first retry delay; doubles each try (with jitter), up to
  backoff_max_s: 10         ... this; a 429/503 Retry-After (seconds) is honoured up to this too
  gzip_min_bytes: 2048      bodies at least this large are sent gzip-compressed
"""

from __future__ import annotations

import gzip
import logging
import os
import signal as signals_mod
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.errors import InputError, SelfhealError

log = logging.getLogger("selfheal.shipper")
CURSOR_SENSOR = "shipper"
CURSOR_KEY = "cursor"
MIN_DRAIN_BUDGET_S = 10.0  # a pass sends for at least this long (or its interval), then senses again


class ShipperConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=1000, ge=1)
    timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=10.0, ge=0)
    gzip_min_bytes: int = Field(default=2048, ge=0)


def shipper_config(cfg: Config) -> ShipperConfig:
    raw = (cfg.model_extra or {}).get("shipper") or {}
    where = str(cfg.source) if cfg.source else "config"
    if not isinstance(raw, dict):
        raise InputError(f"{where}: shipper: expected a mapping")
    try:
        return ShipperConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{where}: shipper.{loc}: {err['msg']}") from None


def signals_url(url: str) -> str:
    """The ingest endpoint of a server given by its base URL (or by the endpoint itself)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--ship-to: expected an http:// or https:// URL of a selfheal server, got {url!r}")
    base = url.strip().rstrip("/")
    return base if base.endswith("/v1/signals") else base + "/v1/signals"


def outbox_dir(cfg: Config) -> Path:
    return Path(cfg.home) / "outbox"


class Retryable(Exception):
    """A transient answer (5xx, 429): try again after a while."""

    def __init__(self, status: int, retry_after: float | None):
        super().__init__(f"server answered {status}")
        self.status = status
        self.retry_after = retry_after


class Refused(SelfhealError):
    """The server refuses the token or the address: no retry helps until someone changes the config."""


@dataclass
class ShipReport:
    sensed: int = 0
    queued: int = 0
    shipped: int = 0
    duplicates: int = 0
    batches: int = 0
    rejected: int = 0
    pending: int = 0
    more: bool = False
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Sender:
    """POSTs outbox batches with retries; one HTTP connection pool for the shipper's life."""

    def __init__(self, url: str, token: str | None, settings: ShipperConfig, stop: threading.Event):
        import httpx

        from agent import __version__

        self.url = url
        self.settings = settings
        self.stop = stop
        headers = {"Content-Type": "application/x-ndjson", "User-Agent": f"selfheal-shipper/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(timeout=settings.timeout_s, headers=headers, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def post(self, data: bytes):
        """One batch, retried on connection errors, 5xx and 429; returns the final response (any other status)."""
        import httpx
        from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

        s = self.settings
        headers = {}
        if len(data) >= s.gzip_min_bytes:
            data = gzip.compress(data, compresslevel=5)
            headers["Content-Encoding"] = "gzip"

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            backoff = min(s.backoff_max_s, s.backoff_initial_s * (2 ** (state.attempt_number - 1)))
            backoff *= 0.5 + 0.5 * (os.urandom(1)[0] / 255)  # jitter: two shippers do not retry in step
            if isinstance(exc, Retryable) and exc.retry_after is not None:
                backoff = max(backoff, min(exc.retry_after, s.backoff_max_s))
            return backoff

        def stopped(state: RetryCallState) -> bool:
            return self.stop.is_set() or stop_after_attempt(s.max_attempts)(state)

        retrying = Retrying(retry=retry_if_exception_type((httpx.TransportError, Retryable)), wait=wait,
                            stop=stopped, sleep=self.stop.wait, reraise=True)
        for attempt in retrying:
            with attempt:
                resp = self.client.post(self.url, content=data, headers=headers)
                if resp.status_code == 429 or resp.status_code >= 500:
                    raise Retryable(resp.status_code, _retry_after(resp.headers.get("retry-after")))
        return resp


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Shipper:
    def __init__(self, cfg: Config, url: str, *, token: str | None = None, clock: Clock | None = None,
                 stop: threading.Event | None = None, sensors: Any = None):
        from agent.server.auth import resolve_token
        from agent.server.outbox import Outbox

        self.cfg = cfg
        self.url = signals_url(url)
        self.settings = shipper_config(cfg)
        self.clock = clock or SystemClock()
        self.stop = stop or threading.Event()
        self.token = (token or "").strip() or resolve_token(cfg)
        self.outbox = Outbox(outbox_dir(cfg))
        self._sensors = sensors
        self._runner: Any = None
        self.sender = Sender(self.url, self.token, self.settings, self.stop)

    def close(self) -> None:
        self.sender.close()

    # ------------------------------------------------------------------ one pass

    def sense(self, store: Any, report: ShipReport) -> None:
        from agent.sensors.runner import SensorRunner

        if self._runner is None:
            self._runner = SensorRunner(self.cfg, self._sensors)
        result = self._runner.sense(store, self.clock)
        report.sensed = result.stored
        report.errors += [f"sense: {w}" for w in result.all_warnings()]

    def queue(self, store: Any, report: ShipReport) -> None:
        """Move the signals stored since the last pass into the outbox; the cursor moves only after each file is safe."""
        from agent.store.server import signals_after
        from agent.store.state import get_state, set_state

        cursor = int(get_state(store, CURSOR_SENSOR, CURSOR_KEY, 0) or 0)
        while True:
            rows = signals_after(store, cursor, self.settings.batch_size)
            if not rows:
                return
            self.outbox.put([s for _, s in rows])
            cursor = rows[-1][0]
            set_state(store, CURSOR_SENSOR, CURSOR_KEY, cursor, at=self.clock.now())
            report.queued += len(rows)

    def drain(self, report: ShipReport, budget_s: float | None = None) -> None:
        """Send the outbox oldest first; stops at the first batch the server cannot take now (kept for later).

        With `budget_s`, stops sending new batches after that long (a backlog after an outage must not keep the
        sensors waiting): `report.more` then says the next pass should follow at once.
        """
        import httpx

        todo = self.outbox.files()
        deadline = time.monotonic() + budget_s if budget_s is not None else None
        sent_here = 0
        while todo and not self.stop.is_set():
            if deadline is not None and sent_here and time.monotonic() > deadline:
                report.more = True
                return
            path = todo.pop(0)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                resp = self.sender.post(data)
            except (httpx.TransportError, Retryable) as exc:
                report.errors.append(f"ship: {self.url}: {_describe(exc)}; {len(todo) + 1} batches kept in the outbox")
                return
            status = resp.status_code
            if 200 <= status < 300:
                body = _json(resp)
                report.shipped += int(body.get("stored", 0))
                report.duplicates += int(body.get("duplicates", 0))
                report.batches += 1
                sent_here += 1
                self.outbox.done(path)
            elif status == 413:
                halves = self.outbox.split(path)
                if halves == [path]:
                    reason = _json(resp).get("detail") or resp.text[:500]
                    self.outbox.reject(path, f"413: {reason}")
                    report.rejected += 1
                    report.errors.append(f"ship: {path.name}: one signal larger than the server accepts; "
                                         f"set aside in {self.outbox.rejected_dir}")
                else:
                    todo = halves + todo
            elif status in (400, 422):
                reason = _json(resp).get("detail") or resp.text[:500]
                self.outbox.reject(path, f"{status}: {reason}")
                report.rejected += 1
                report.errors.append(f"ship: {path.name}: refused ({status}: {reason}); "
                                     f"set aside in {self.outbox.rejected_dir}")
            elif status in (401, 403):
                raise Refused(f"{self.url}: the server refused the token ({status}); "
                              f"check --token / ${self.cfg.server.token_env or 'SELFHEAL_TOKEN'}")
            else:
                raise Refused(f"{self.url}: unexpected answer {status} (is this a selfheal server?)")

    def run_pass(self, store: Any, budget_s: float | None = None) -> ShipReport:
        report = ShipReport()
        try:
            self.sense(store, report)
        except SelfhealError as exc:
            report.errors.append(f"sense: {exc}")
        self.queue(store, report)
        try:
            self.drain(report, budget_s)
        finally:
            report.pending = self.outbox.pending()
        return report


def _json(resp: Any) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Retryable):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_shipper(cfg: Config, url: str, *, token: str | None = None, once: bool = False,
                interval_s: float | None = None, stop: threading.Event | None = None, clock: Clock | None = None,
                on_pass: Callable[[ShipReport], None] | None = None) -> int:
    """Sense and ship until stopped (SIGTERM/SIGINT between steps); returns the number of passes.

    Holds the local store's writer lock for its whole life and the database only during a pass, like the
    daemon. With `once`: one pass, and an error (exit 2) when batches are left in the outbox.
    """
    from agent.store import Store

    stop = stop or threading.Event()
    shipper = Shipper(cfg, url, token=token, clock=clock, stop=stop)
    interval = cfg.daemon.interval_s if interval_s is None else interval_s
    from agent.loop import install_stop_handlers

    installed = install_stop_handlers(stop)
    store = Store.open(cfg.store_path)
    passes = 0
    try:
        while not stop.is_set():
            try:
                report = shipper.run_pass(store, None if once else max(interval, MIN_DRAIN_BUDGET_S))
            except Refused as exc:
                if once:
                    raise
                report = ShipReport(errors=[str(exc)], pending=shipper.outbox.pending())
            passes += 1
            busy = report.sensed or report.queued or report.batches or report.rejected
            level = logging.WARNING if report.errors else logging.INFO if busy else logging.DEBUG
            log.log(level, "ship", extra={"event": "ship", "url": shipper.url, **report.as_dict()})
            if on_pass:
                on_pass(report)
            if once:
                if report.pending:
                    raise SelfhealError(f"{report.pending} signals kept in {shipper.outbox.dir}: "
                                        f"{report.errors[-1] if report.errors else 'not shipped'}")
                break
            if report.more:
                continue  # a backlog is draining: sense again and go on sending, without the pause
            store.pause()
            try:
                stop.wait(interval)
            finally:
                store.resume()
    finally:
        shipper.close()
        store.close()
        for sig, previous in installed:
            signals_mod.signal(sig, previous)
    return passes
