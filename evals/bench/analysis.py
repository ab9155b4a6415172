"""Benchmark: offline analysis of one issue (knowledge-base walk + gate), with and without a store.

    .venv/bin/python evals/bench/analysis.py [--background 1000,10000,50000] [--runs 20]

The recorded contract incident (tests/data/analysis/contract-analysis-case.json)
is buried in background signals from other services and hosts (INFO log lines,
metrics, health checks) spread over the 24 h before the failure. Figures:

* case: analyze_case() on the whole signal list (the `selfheal analyze --case` path
  after the file is read): every candidate mode walked, drafts gated;
* issue: analyze_issue() on a DuckDB store holding the same signals (evidence
  gathered from the store, probes run on a real config file, chain and gate
  result stored, the issue's state moved) — the live path, probe time included.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.analysis import analyze_case, analyze_issue  # noqa: E402
from agent.clock import FakeClock  # noqa: E402
from agent.config import Config  # noqa: E402
from agent.models import AnalysisCase, Signal  # noqa: E402

CASE = ROOT / "tests" / "data" / "analysis" / "contract-analysis-case.json"
FAILURE = datetime(2026, 11, 30, 3, 12, 15, tzinfo=timezone.utc)


def background(n: int, rng: random.Random) -> list[dict]:
    services = [f"svc-{i:02d}" for i in range(40)]
    out = []
    for i in range(n):
        ts = FAILURE - timedelta(seconds=rng.uniform(0, 24 * 3600))
        svc = rng.choice(services)
        kind = rng.random()
        if kind < 0.6:
            out.append({"id": f"b{i}", "ts": ts, "source": "log", "service": svc, "host": f"web-{i % 7}",
                        "message": f"GET /api/items/{rng.randint(1, 99999)} 200 {rng.randint(2, 90)}ms"})
        elif kind < 0.85:
            out.append({"id": f"b{i}", "ts": ts, "source": "metric", "service": svc, "value": rng.uniform(100, 400),
                        "message": "worker_rss_mb", "attrs": {"metric": "worker_rss_mb"}})
        else:
            out.append({"id": f"b{i}", "ts": ts, "source": "health", "service": svc, "value": 0.003,
                        "message": f"GET http://127.0.0.1:{8000 + i % 50}/health -> 200"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--background", default="1000,10000,50000")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    base = json.loads(CASE.read_text())
    rng = random.Random(7)
    print(f"{'background':>10}  {'case p50 ms':>11}  {'case p95 ms':>11}  {'issue p50 ms':>12}  {'issue p95 ms':>12}")
    for n in (int(x) for x in args.background.split(",")):
        signals = [Signal.model_validate(s) for s in base["signals"] + background(n, rng)]
        case = AnalysisCase(issue=base["issue"], signals=signals, archive=[])
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            result = analyze_case(case)
            times.append((time.perf_counter() - t) * 1000)
            assert not result.escalated, result.reason
        issue_times = _issue_runs(signals, max(3, args.runs // 4))
        print(f"{n:>10}  {statistics.median(times):>11.1f}  {_p95(times):>11.1f}  "
              f"{statistics.median(issue_times):>12.1f}  {_p95(issue_times):>12.1f}")


def _issue_runs(signals: list[Signal], runs: int) -> list[float]:
    from agent.store import Store
    from agent.store.issues import add_occurrence, open_issue
    from agent.store.signals import insert_signals

    events = [s for s in signals if s.source != "probe"]
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "srv"
            root.mkdir()
            (root / "checkout.ini").write_text("[cache]\nimage_cache_max_items = 0\nworkers = 4\n")
            cfg = Config(probes={"roots": [str(root)]},
                         remedy={"services": {"checkout-api": {"config_files": ["checkout.ini"]}}})
            cfg.home = Path(tmp)
            store = Store.open(cfg.store_path)
            insert_signals(store, events)
            sym = next(s for s in events if s.id == "s4")
            issue = open_issue(store, fingerprint="f1:bench", title=sym.message, ts=sym.ts, service=sym.service,
                               signal_id=sym.id)
            add_occurrence(store, issue, sym.id, sym.ts, "new")
            t = time.perf_counter()
            result = analyze_issue(store, cfg, issue, FakeClock(FAILURE + timedelta(minutes=8)))
            out.append((time.perf_counter() - t) * 1000)
            store.close()
            assert not result.escalated, result.reason
    return out


def _p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(len(xs) * 0.95) - 1)]


if __name__ == "__main__":
    main()
