"""Benchmark: ingest throughput and latency of `selfheal serve`, and that nothing is lost.

    .venv/bin/python evals/bench/serve.py [--signals 100000] [--clients 4] [--batch 500] [--gzip]
                                          [--no-triage] [--wait-triage]

Starts a real server (a subprocess on 127.0.0.1, a fresh state dir, a bearer token, background triage on
unless --no-triage), posts N signals as NDJSON batches from C concurrent clients (threads with their own
HTTP connection; bodies are prepared before the clock starts), and prints signals/second over the whole
run and the request latency percentiles. Then it stops the server and counts the signals in its store:
the count must equal what was sent (exit 1 otherwise). With --wait-triage it also reports how long the
background triage took to judge everything.

The signals are a mix of services, hosts and levels (about 2% ERROR), each with a unique id.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.store import Store  # noqa: E402
from tests.data.server.harness import ServerProcess, metric  # noqa: E402

SERVICES = ("checkout-api", "orders-api", "payments", "search", "nginx", "billing-worker", "auth", "inventory")
TEMPLATES = (
    "GET /api/v{v}/items/{n} -> 200 in {ms} ms",
    "POST /api/v{v}/orders -> 201 in {ms} ms",
    "cache hit ratio {pct}% for shard {shard}",
    "worker {shard} processed {n} jobs in {ms} ms",
    "connection pool size {shard} in use {pct}",
)
ERRORS = (
    "upstream timed out after {ms} ms while reading response from {shard}.internal",
    "could not connect to database at 10.0.{shard}.7:5432: connection refused",
)


def make_batches(n: int, batch: int, seed: int = 7) -> list[list[str]]:
    rnd = random.Random(seed)
    lines = []
    for i in range(n):
        err = rnd.random() < 0.02
        tpl = rnd.choice(ERRORS if err else TEMPLATES)
        msg = tpl.format(v=rnd.randint(1, 3), n=rnd.randint(1, 99999), ms=rnd.randint(1, 5000),
                         pct=rnd.randint(0, 100), shard=rnd.randint(1, 16))
        s = {"id": f"bench-{i}", "ts": f"2026-06-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
             "source": "log", "service": rnd.choice(SERVICES), "host": f"web-{rnd.randint(1, 20)}",
             "level": "ERROR" if err else rnd.choice(("INFO", "INFO", "INFO", "DEBUG", "WARNING")), "message": msg,
             "attrs": {"path": "/var/log/app.log", "offset": i * 120}}
        lines.append(json.dumps(s, separators=(",", ":")))
    return [lines[i:i + batch] for i in range(0, n, batch)]


def client(url: str, token: str, bodies: list[bytes], use_gzip: bool, latencies: list[float],
           errors: list[str], sent: list[int], counts: list[int]) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    with httpx.Client(timeout=120, headers=headers) as http:
        for body, count in zip(bodies, counts):
            t0 = time.perf_counter()
            try:
                r = http.post(url, content=body)
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:200]}")
                continue
            sent.append(r.json()["stored"])
            if r.json()["received"] != count:
                errors.append(f"server received {r.json()['received']} of {count}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--signals", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=500, help="signals per request")
    ap.add_argument("--gzip", action="store_true", help="send gzip-compressed bodies")
    ap.add_argument("--no-triage", action="store_true", help="ingest only (no background triage)")
    ap.add_argument("--wait-triage", action="store_true", help="also time the triage of everything")
    args = ap.parse_args()

    batches = make_batches(args.signals, args.batch)
    bodies = [("\n".join(b) + "\n").encode() for b in batches]
    if args.gzip:
        bodies = [gzip.compress(b, 5) for b in bodies]
    counts = [len(b) for b in batches]
    token = "bench-" + os.urandom(8).hex()
    home = Path(tempfile.mkdtemp(prefix="selfheal-bench-serve-"))
    server_args = ("--no-triage",) if args.no_triage else ()
    server = ServerProcess(home / "server", args=server_args, env={"SELFHEAL_TOKEN": token}).start()
    url = server.url + "/v1/signals"
    latencies: list[float] = []
    errors: list[str] = []
    stored: list[int] = []
    threads = [threading.Thread(target=client, args=(url, token, bodies[k::args.clients], args.gzip, latencies,
                                                     errors, stored, counts[k::args.clients]))
               for k in range(args.clients)]
    try:
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        triage_s = None
        if args.wait_triage and not args.no_triage:
            auth = {"Authorization": f"Bearer {token}"}
            while metric(httpx.get(server.url + "/metrics", headers=auth, timeout=60).text,
                         "selfheal_triage_backlog") not in (0, 0.0):
                time.sleep(0.2)
            triage_s = time.perf_counter() - t0
    finally:
        server.stop(timeout=120)

    with Store.open(home / "server" / "store.duckdb", readonly=True) as store:
        in_store = store.scalar("SELECT count(*) FROM signals")
        distinct = store.scalar("SELECT count(DISTINCT id) FROM signals")
    sent = sum(counts)
    ms = [x * 1000 for x in latencies]
    print(f"selfheal serve ingest: {sent} signals, {args.clients} clients, {args.batch} signals/request, "
          f"{'gzip' if args.gzip else 'plain'} NDJSON, triage {'off' if args.no_triage else 'on (background)'}")
    print(f"  throughput      {sent / wall:,.0f} signals/s ({wall:.2f} s wall, {len(latencies)} requests)")
    print(f"  latency ms      p50 {statistics.median(ms):.1f}  p95 {percentile(ms, 95):.1f}  "
          f"p99 {percentile(ms, 99):.1f}  max {max(ms):.1f}")
    if triage_s is not None:
        print(f"  triaged all     {triage_s:.2f} s after the first request")
    lost = sent - in_store
    print(f"  stored          {in_store} in the store ({distinct} distinct ids), sent {sent}, "
          f"answered stored {sum(stored)}: {'nothing lost' if lost == 0 and distinct == in_store else 'MISMATCH'}")
    if errors:
        print(f"  errors          {len(errors)}: {errors[0]}")
    return 0 if lost == 0 and not errors and distinct == in_store else 1


if __name__ == "__main__":
    sys.exit(main())
