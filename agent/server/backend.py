"""The server's hold on the store: the single writer, readers that never wait for it, and the background work.

The server process is the store's writer (Store.open takes the lock file for the process's life). Every write
goes through `writer()`, one thread at a time (a lock around the one writer connection): ingest, triage and,
with `--loop`, the loop's passes. Reads (`reader()`) use their own cursors on the same database and see
committed data only, so a long report never holds up ingest.

After ingest a background thread triages the new signals (agent.triage) in small batches, releasing the writer
between batches so ingest interleaves. With `loop_interval_s`, another thread runs the loop's passes
(agent.loop.run_pass: sense this host's sensors, triage, analyse, gate, fix, verify, learn) in one daemon cycle;
a pass holds the writer for its duration, ingest waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.models import Signal, TriageResult, rfc3339
from agent.store import Store

log = logging.getLogger("selfheal.server")
TRIAGE_BATCH = 1000
INGEST_FIRST_S = 2.0  # the longest triage waits for a stream of ingest batches before it takes a turn
IDLE_POLL_S = 2.0  # the triage thread also looks for signals stored by others (the loop's sensors, the spool)


class TriageFailed(Exception):
    """The batch was stored, but judging it failed (it stays pending for the background triage)."""

    def __init__(self, stored: int, reason: str):
        super().__init__(reason)
        self.stored = stored


@dataclass
class _Pending:
    signals: list[Signal]
    new: int = 0
    done: bool = False
    error: BaseException | None = None


@dataclass
class WorkerState:
    running: bool = False
    last_run: str | None = None
    last_error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"running": self.running, "last_run": self.last_run, "last_error": self.last_error, **self.detail}


class Backend:
    def __init__(self, cfg: Config, store: Store, *, clock: Clock | None = None, triage: bool = True,
                 triage_batch: int = TRIAGE_BATCH, loop_interval_s: float | None = None,
                 on_verdicts: Callable[[Sequence[TriageResult]], None] | None = None):
        self.cfg = cfg
        self.store = store
        self.clock = clock or SystemClock()
        self.triage_enabled = triage
        self.triage_batch = max(1, int(triage_batch))
        self.loop_interval_s = loop_interval_s
        self.on_verdicts = on_verdicts
        self._lock = threading.RLock()
        self._pending_lock = threading.Lock()
        self._pending: list[_Pending] = []
        # Readers' cursors are spawned from a connection of their own: the writer's is never touched off its lock.
        self._spawn_lock = threading.Lock()
        self._spawner = store.con.cursor()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._triage: Any = None
        self.triage_state = WorkerState()
        self.loop_state = WorkerState()

    @classmethod
    def open(cls, cfg: Config, **kw: Any) -> "Backend":
        """Take the store as its writer (LockedError, one line, when another selfheal holds it)."""
        return cls(cfg, Store.open(cfg.store_path), **kw)

    # ------------------------------------------------------------------ access

    @contextmanager
    def writer(self) -> Iterator[Store]:
        with self._lock:
            yield self.store

    @contextmanager
    def reader(self) -> Iterator[Store]:
        with self._spawn_lock:
            cursor = self._spawner.cursor()
        try:
            yield Store(cursor, self.store.path, None, True)
        finally:
            cursor.close()

    # ------------------------------------------------------------------ writes

    def ingest(self, signals: Sequence[Signal], *, wait: bool = False) -> tuple[int, list[TriageResult]]:
        """Store the batch (all or nothing, idempotent by id); with `wait`, triage it before returning.

        Group commit: batches that arrive while the writer is busy are stored together, in one transaction,
        by whichever request takes the writer next; each still learns how many of its own signals were new.
        """
        entry = _Pending(list(signals))
        with self._pending_lock:
            self._pending.append(entry)
        results: list[TriageResult] = []
        with self.writer():
            if not entry.done:
                with self._pending_lock:
                    group, self._pending = self._pending, []
                self._store_group(group)
            if entry.error is None and wait and self.triage_enabled:
                try:
                    results = self._triage_pending_locked()
                except Exception as exc:  # stored all the same; the background triage retries them
                    self._triage = None
                    self.triage_state.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("triage after ingest failed")
                    self._wake.set()
                    raise TriageFailed(entry.new, str(exc)) from exc
        if entry.error is not None:
            raise entry.error
        if entry.new and not wait:
            self._wake.set()
        return entry.new, results

    def _store_group(self, group: list["_Pending"]) -> None:
        from agent.store.signals import existing_ids, insert_signals

        try:
            if len(group) == 1:
                group[0].new = insert_signals(self.store, group[0].signals)
            else:
                combined = [s for e in group for s in e.signals]
                seen = existing_ids(self.store, [s.id for s in combined])
                insert_signals(self.store, combined)
                for e in group:
                    n = 0
                    for s in e.signals:
                        if s.id not in seen:
                            seen.add(s.id)
                            n += 1
                    e.new = n
        except Exception as exc:  # the one transaction rolled back: nothing of any batch in the group is stored
            for e in group:
                e.error = exc
        finally:
            for e in group:
                e.done = True

    def triage_now(self) -> list[TriageResult]:
        """Judge every stored signal without a verdict, now (the writer held throughout)."""
        with self.writer():
            return self._triage_pending_locked()

    def _triage_pending_locked(self) -> list[TriageResult]:
        from agent.store import triage_state as tstore

        out: list[TriageResult] = []
        while True:
            batch = tstore.pending_signals(self.store, self.triage_batch)
            if not batch:
                return out
            out += self._judge(batch)

    def _judge(self, batch: list[Signal]) -> list[TriageResult]:
        from agent.triage import Triage

        if self._triage is None:
            self._triage = Triage(self.store, self.cfg, self.clock)
        results = self._triage.judge(batch)
        if self.on_verdicts:
            self.on_verdicts(results)
        return results

    # ------------------------------------------------------------------ background work

    def start(self) -> None:
        if self._threads:
            return
        if self.triage_enabled:
            self._threads.append(threading.Thread(target=self._triage_worker, name="selfheal-triage", daemon=True))
        if self.loop_interval_s is not None:
            self._threads.append(threading.Thread(target=self._loop_worker, name="selfheal-loop", daemon=True))
        for t in self._threads:
            t.start()
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=60)
        self._threads = []
        with self._lock:
            self._spawner.close()
            self.store.close()

    def _triage_worker(self) -> None:
        from agent.store import triage_state as tstore

        self.triage_state.running = True
        while not self._stop.is_set():
            self._wake.wait(IDLE_POLL_S)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                if self._triage is not None:
                    error = self._triage.reload()  # rules files edited while serving take effect
                    if error:
                        log.warning("triage rules not reloaded, the previous rules stay active: %s", error)
                judged = 0
                while not self._stop.is_set():
                    self._yield_to_ingest()
                    with self.writer():
                        batch = tstore.pending_signals(self.store, self.triage_batch)
                        if not batch:
                            break
                        judged += len(self._judge(batch))
                self.triage_state.last_error = None
                if judged:
                    self.triage_state.last_run = rfc3339(self.clock.now())
                    self.triage_state.detail["judged"] = self.triage_state.detail.get("judged", 0) + judged
            except Exception as exc:  # kept for /healthz and the log; the signals stay pending and are retried
                self.triage_state.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("triage failed; retrying")
                self._triage = None
                self._stop.wait(IDLE_POLL_S)
        self.triage_state.running = False

    def _yield_to_ingest(self) -> None:
        """Ingest is what clients wait for, triage is not: batches waiting for the writer go first (for a while)."""
        deadline = time.monotonic() + INGEST_FIRST_S
        while self._pending and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.002)

    def _loop_worker(self) -> None:
        from agent.loop import run_pass
        from agent.store import state as state_store

        self.loop_state.running = True
        try:
            with self.writer() as store:
                cycle_id = state_store.start_cycle(store, "serve", self.clock.now())
            passes = 0
            self.loop_state.detail.update(cycle=cycle_id, passes=passes)
            while not self._stop.is_set():
                started = time.perf_counter()
                with self.writer() as store:
                    report = run_pass(store, self.cfg, self.clock, cycle_id=cycle_id, stop=self._stop)
                passes += 1
                self.loop_state.last_run = rfc3339(self.clock.now())
                self.loop_state.last_error = "; ".join(report.errors) or None
                self.loop_state.detail.update(passes=passes, last_pass=report.as_dict(),
                                              last_pass_s=round(time.perf_counter() - started, 3))
                log.info("pass", extra={"event": "pass", **report.as_dict()})
                if not report.busy:
                    self._stop.wait(self.loop_interval_s or 0)
            with self.writer() as store:
                state_store.end_cycle(store, cycle_id, self.clock.now())
        except Exception as exc:
            self.loop_state.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("the loop stopped")
        finally:
            self.loop_state.running = False
