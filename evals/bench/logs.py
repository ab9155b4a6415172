"""Log sensor throughput: lines per second on a 1M-line file.

    python evals/bench/logs.py [--lines 1000000] [--store memory|file]

Writes a realistic log (ISO and syslog timestamps, levels, an access log
line, a Python or Java stack trace every 500 lines) to a temporary directory,
then reads it with the log sensor from the start, twice:

- parse: the sensor's rounds alone (read, split, group multi-line entries,
  level and time of each, signal objects; cursor state in the store);
- store: the same plus storing every signal (what `selfheal sense` does).

Prints lines/s and entries/s for each.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.clock import FakeClock  # noqa: E402
from agent.sensors.base import SensorContext  # noqa: E402
from agent.sensors.config import LogSensorConfig  # noqa: E402
from agent.sensors.logs import LogSensor  # noqa: E402
from agent.store import Store  # noqa: E402
from agent.store.signals import insert_signals  # noqa: E402

PY_TRACE = [
    "Traceback (most recent call last):",
    '  File "/srv/app/views.py", line 88, in cart',
    "    total = cart_total(cart_id)",
    '  File "/srv/app/cart.py", line 41, in cart_total',
    "    return sum(i.price for i in items)",
    "AttributeError: 'dict' object has no attribute 'price'",
]
JAVA_TRACE = [
    "java.lang.IllegalStateException: pool exhausted",
    "\tat com.example.db.Pool.acquire(Pool.java:112)",
    "\tat com.example.api.CartController.get(CartController.java:57)",
    "\t... 23 more",
]
MESSAGES = [
    "INFO checkout-api: GET /cart/{n} 200 in {ms}ms",
    "INFO worker-{w}: processed job {n} in {ms}ms",
    "DEBUG cache: hit ratio 0.{ms}",
    "WARNING checkout-api: slow query on orders ({ms}ms)",
    "ERROR checkout-api: upstream payment timed out after {ms}ms (order {n})",
]


def write_log(path: Path, lines: int, seed: int = 7) -> int:
    """Write about `lines` physical lines; returns the number of entries (signals) expected."""
    rnd = random.Random(seed)
    t = datetime(2026, 11, 30, tzinfo=timezone.utc)
    written = entries = 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < lines:
            t += timedelta(milliseconds=rnd.randint(1, 40))
            n, ms, w = rnd.randint(1, 99999), rnd.randint(1, 999), rnd.randint(1, 8)
            if written % 500 == 499:
                trace = PY_TRACE if rnd.random() < 0.5 else JAVA_TRACE
                fh.write(f"{t:%Y-%m-%dT%H:%M:%S.%f}Z ERROR checkout-api: request failed (order {n})\n")
                fh.write("\n".join(trace) + "\n")
                written += 1 + len(trace)
            elif written % 97 == 0:
                fh.write(f'10.0.{w}.{n % 255} - - [{t:%d/%b/%Y:%H:%M:%S} +0000] "GET /cart/{n} HTTP/1.1" 200 {ms} "-" "curl/8"\n')
                written += 1
            elif written % 31 == 0:
                fh.write(f"{t:%b %d %H:%M:%S} web-1 kernel: [{n}.{ms}] eth0: link up\n")
                written += 1
            else:
                msg = rnd.choice(MESSAGES).format(n=n, ms=ms, w=w)
                fh.write(f"{t:%Y-%m-%dT%H:%M:%S.%f}Z {msg}\n")
                written += 1
            entries += 1
    return entries


def run(path: Path, store: Store, *, keep: bool) -> tuple[float, int]:
    conf = LogSensorConfig(name="bench", paths=[str(path)], start_at="beginning", multiline_flush_s=0)
    sensor = LogSensor(conf, SensorContext(path.parent, "bench-host"))
    clock = FakeClock(datetime(2026, 12, 1, tzinfo=timezone.utc))
    count = 0
    started = time.perf_counter()
    while True:
        with store.transaction():
            signals = sensor.poll(store, clock)
            if keep:
                insert_signals(store, signals)
        count += len(signals)
        if not sensor.backlog:
            break
    return time.perf_counter() - started, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--store", choices=("memory", "file"), default="file")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="selfheal-bench-logs-"))
    try:
        log = work / "app.log"
        t = time.perf_counter()
        expected = write_log(log, args.lines)
        size_mb = os.path.getsize(log) / 1e6
        print(f"log: {args.lines:,} lines, {expected:,} entries, {size_mb:.0f} MB (written in {time.perf_counter() - t:.1f}s)")

        def open_store(tag: str) -> Store:
            return Store.open(None if args.store == "memory" else work / f"{tag}.duckdb")

        for label, keep in (("parse", False), ("store", True)):
            with open_store(label) as store:
                elapsed, count = run(log, store, keep=keep)
            assert count == expected, f"{label}: {count} signals, expected {expected}"
            print(f"{label:5}: {args.lines / elapsed:>10,.0f} lines/s  {count / elapsed:>10,.0f} entries/s  "
                  f"({elapsed:.2f}s, {args.store} store)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
