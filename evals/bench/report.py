"""Benchmark: the report, the HTML report, `status` and offline chat answers on a large store.

    .venv/bin/python evals/bench/report.py [--signals 500000] [--issues 1000] [--days 60] [--runs 3]

Builds a DuckDB store in a temporary directory through the store functions:
--signals signals over --days days (90% info, 8% noise, 2% genuine verdicts),
--issues issues each with a full life (open, analysing, a chain and a gate
result, fixing, a fix, verifying, verification steps, resolved, archived; one
in ten recurs and is re-analysed, one in twenty is escalated to a human) in
one cycle per day. Prints the build time, then best-of---runs timings of
compute_report, render_html, compute_status and each offline question.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.models import Chain, CheckResult, GateChecks, GateResult, Signal  # noqa: E402
from agent.store import Store  # noqa: E402
from agent.store import chains as chains_store  # noqa: E402
from agent.store import fixes as fixes_store  # noqa: E402
from agent.store import issues as issues_store  # noqa: E402
from agent.store import state as state_store  # noqa: E402
from agent.store.signals import insert_signals  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
CHAIN = Path(__file__).resolve().parents[2] / "tests" / "data" / "report" / "chains" / "c1.json"


def _gate(passed: bool, escalated: bool = False) -> GateResult:
    ok = CheckResult(passed=True, reason="ok")
    bad = CheckResult(passed=False, reason="root n3 is not necessary")
    return GateResult(passed=passed, elapsed_ms=1.0, checks=GateChecks(
        reproduce=ok, archive=CheckResult(passed=True, reason="archive", escalated=escalated), completeness=ok,
        counterfactual=ok if passed else bad))


def build(store: Store, n_signals: int, n_issues: int, days: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    span = days * 86400
    batch = 100_000
    verdicts = []
    for start in range(0, n_signals, batch):
        sigs = []
        for k in range(start, min(n_signals, start + batch)):
            ts = START + timedelta(seconds=span * k / n_signals)
            roll = rnd.random()
            level, verdict = ("INFO", "info") if roll < 0.9 else ("ERROR", "noise") if roll < 0.98 else ("ERROR", "new")
            src = rnd.choice(("log", "log", "log", "health", "metric", "cron"))
            sigs.append(Signal(id=f"s{k}", ts=ts, source=src, service=f"svc-{k % 40}", level=level,
                               message=f"event {k % 500} on svc-{k % 40}"))
            verdicts.append(dict(signal_id=f"s{k}", fingerprint=f"f1:{k % 500}", template=f"event {k % 500}",
                                 verdict=verdict if verdict != "new" else rnd.choice(("new", "ongoing")),
                                 issue=None, rule="bench", reason="", ts=ts))
        insert_signals(store, sigs)
        issues_store.insert_triage_results(store, verdicts)
        verdicts = []
    chain = Chain.model_validate(json.loads(CHAIN.read_text()))
    cycles = [state_store.start_cycle(store, "daemon", at=START + timedelta(days=d)) for d in range(days)]
    for d, cid in enumerate(cycles):
        state_store.end_cycle(store, cid, at=START + timedelta(days=d, hours=23))
    for n in range(n_issues):
        t0 = START + timedelta(seconds=rnd.uniform(0, span - 86400))
        cyc = cycles[min(days - 1, int((t0 - START).total_seconds() // 86400))]
        iid = issues_store.open_issue(store, fingerprint=f"f1:{n % 500}", title=f"event {n % 500}", ts=t0, cycle_id=cyc)
        issues_store.add_occurrence(store, iid, f"s{n}", t0, "new")
        t = t0 + timedelta(minutes=rnd.uniform(1, 30))
        issues_store.add_event(store, iid, "analysing", "analysing", t, cycle_id=cyc)
        escalate = n % 20 == 0
        c = chains_store.save_chain(store, chain, issue_id=iid, analyst="offline", mode=f"mode-{n % 30}", at=t)
        chains_store.save_gate_result(store, c, iid, _gate(not escalate), at=t)
        if escalate:
            issues_store.add_event(store, iid, "needs-human", "escalated", t, chain_id=c, cycle_id=cyc)
            continue
        issues_store.add_event(store, iid, "fixing", "analysed", t, chain_id=c, cycle_id=cyc)
        f = fixes_store.create_fix(store, issue_id=iid, chain_id=c, action="set_config", params={"k": n},
                                   kind="eliminate", plan="p", at=t)
        t += timedelta(minutes=5)
        fixes_store.add_fix_event(store, f, "applied", at=t)
        issues_store.add_event(store, iid, "verifying", "fixed", t, fix_id=f, cycle_id=cyc)
        for step in ("postcondition", "symptom", "watch"):
            t += timedelta(minutes=5)
            fixes_store.add_verification(store, fix_id=f, issue_id=iid, step=step, passed=True, at=t)
        fixes_store.add_fix_event(store, f, "verified", at=t)
        issues_store.resolve(store, iid, t, event="verified", chain_id=c, fix_id=f, cycle_id=cyc)
        chains_store.archive_chain(store, c, outcome="resolved", resolved_at=t, at=t)
        if n % 10 == 0:
            t += timedelta(hours=rnd.uniform(1, 48))
            issues_store.add_event(store, iid, "open", "recurrence", t)
            issues_store.add_occurrence(store, iid, f"s{n + 1}", t, "recurrence")
            c2 = chains_store.save_chain(store, chain, issue_id=iid, analyst="offline", mode=f"mode-{n % 30}", at=t)
            chains_store.save_gate_result(store, c2, iid, _gate(True, escalated=True), at=t)


def best(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--signals", type=int, default=500_000)
    ap.add_argument("--issues", type=int, default=1000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from agent.chat import OfflineAnswerer
    from agent.report import compute_report, compute_status
    from agent.report_html import render_html

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.duckdb"
        t = time.perf_counter()
        with Store.open(path) as store:
            build(store, args.signals, args.issues, args.days)
        print(f"build: {args.signals} signals, {args.issues} issues, {args.days} days in {time.perf_counter() - t:.1f} s")
        with Store.open(path, readonly=True) as store:
            rows = []
            report = compute_report(store)
            rows.append(("compute_report", best(lambda: compute_report(store), args.runs)))
            rows.append(("render_html", best(lambda: render_html(store, report=report), args.runs)))
            rows.append(("compute_status", best(lambda: compute_status(store), args.runs)))
            size = len(render_html(store, report=report))
            for question in ("what is open?", "what happened to ISS-0002 and why?", "what broke in the last 6 hours?",
                             "which failure modes recur?", "what is the MTTR?", "what changed before ISS-0011?",
                             "which rules were learned?", "what is noise and how much?"):
                rows.append((f"ask: {question}", best(lambda: OfflineAnswerer(store).answer(question), args.runs)))
        width = max(len(r[0]) for r in rows)
        for name, secs in rows:
            print(f"{name:<{width}}  {secs * 1000:9.1f} ms")
        print(f"HTML size: {size / 1024:.0f} KiB; headline: "
              + ", ".join(f"{k}={report[k]}" for k in ("issues_tracked", "active_issues", "repeat_issues",
                                                         "mttr_hours_latest_cycle", "learning_velocity_per_week")))


if __name__ == "__main__":
    main()
