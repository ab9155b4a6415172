"""The demo worker: processes order batches under two locks and touches a heartbeat file while it makes progress.

`lock_order` in worker.ini decides how tasks take the locks: `per-task` lets each task take
them in its own order (checkout: orders then inventory; restock: inventory then orders),
which deadlocks as soon as a restock runs beside a checkout; `global` makes every task take
them in one order, so no cycle of waits can form. A watchdog logs who waits on whom, the
way lock-debugging runtimes report a deadlock. The worker re-executes itself when its
config changes (a reload that also clears a deadlock).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from agent.demo.services.common import LiveConfig, configure_logging

LOCK_NAMES = ("orders_lock", "inventory_lock")


class TrackedLock:
    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self.owner: str | None = None

    def acquire(self, who: str, waiting: dict[str, str]) -> None:
        waiting[who] = self.name
        self._lock.acquire()
        waiting.pop(who, None)
        self.owner = who

    def release(self) -> None:
        self.owner = None
        self._lock.release()


class Worker:
    def __init__(self, config: str, log_path: str):
        self.cfg = LiveConfig(config, "worker")
        self.cfg.refresh()
        self.log = configure_logging("worker", log_path)
        self.locks = {n: TrackedLock(n) for n in LOCK_NAMES}
        self.waiting: dict[str, str] = {}
        self.batches = 0
        self.stop = threading.Event()

    def order_for(self, task: str) -> tuple[str, str]:
        if self.cfg.str("lock_order", "global") == "per-task" and task == "restock":
            return ("inventory_lock", "orders_lock")
        return ("orders_lock", "inventory_lock")

    def run_task(self, task: str) -> None:
        first, second = self.order_for(task)
        self.locks[first].acquire(task, self.waiting)
        try:
            time.sleep(0.05)  # work under the first lock
            self.locks[second].acquire(task, self.waiting)
            try:
                time.sleep(0.02)
                self.batches += 1
            finally:
                self.locks[second].release()
        finally:
            self.locks[first].release()

    def checkout_loop(self) -> None:
        while not self.stop.is_set():
            self.run_task("checkout")
            time.sleep(0.01)

    def restock_loop(self, inbox: Path) -> None:
        while not self.stop.is_set():
            requests = sorted(inbox.glob("*.restock")) if inbox.is_dir() else []
            if not requests:
                time.sleep(0.1)
                continue
            self.log.info("restock requested by %s", requests[0].name)
            for _ in range(20):
                self.run_task("restock")
            requests[0].unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    worker = Worker(args.config, args.log)
    beat = Path(worker.cfg.str("beat_file", "worker.beat"))
    inbox = Path(worker.cfg.str("inbox", "inbox"))
    stall_s = worker.cfg.float("stall_warning_s", 1.0)
    worker.log.info("worker started (pid %d, lock_order=%s)", os.getpid(), worker.cfg.str("lock_order", "global"))
    threading.Thread(target=worker.checkout_loop, daemon=True).start()
    threading.Thread(target=worker.restock_loop, args=(inbox,), daemon=True).start()
    last, last_progress, warned = -1, time.monotonic(), False
    try:
        while True:
            time.sleep(0.2)
            if worker.cfg.refresh():
                worker.log.info("configuration changed (lock_order=%s); restarting", worker.cfg.str("lock_order", "global"))
                for h in worker.log.handlers:
                    h.flush()
                os.execv(sys.executable, [sys.executable, "-m", "agent.demo.services.worker", *sys.argv[1:]])
            if worker.batches != last:
                last, last_progress, warned = worker.batches, time.monotonic(), False
                beat.touch()
            elif not warned and time.monotonic() - last_progress > stall_s:
                waits = dict(worker.waiting)
                owners = {n: lk.owner for n, lk in worker.locks.items()}
                detail = "; ".join(f"thread {who} waits for {lock} held by {owners.get(lock)}" for who, lock in sorted(waits.items()))
                worker.log.warning("worker made no progress for %ds", round(stall_s))
                worker.log.error("deadlock detected: %s", detail or "no thread is waiting on a lock")
                warned = True
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
