"""Prometheus exposition: what this server did (counters, request latency) and what the store holds.

Counters of this process (reset on restart, as Prometheus expects of counters):
  selfheal_signals_ingested_total{endpoint}   signals stored by ingest (new ids)
  selfheal_signals_duplicate_total{endpoint}  signals received again (already stored, by id)
  selfheal_ingest_rejected_total{endpoint,status}  rejected requests (400, 401, 413, 422)
  selfheal_triage_verdicts_total{verdict}     verdicts given by this server's triage
  selfheal_http_request_duration_seconds{method,route,status}  request latency histogram
Read from the store at each scrape (whoever wrote it: this server, a loop pass, the CLI):
  selfheal_store_signals, selfheal_triage_backlog, selfheal_store_verdicts_total{verdict},
  selfheal_gate_results_total{result="passed"|"failed"}, selfheal_fixes{status}, selfheal_issues{status}
Each app has its own registry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.store import Store

log = logging.getLogger("selfheal.server")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class StoreCollector(Collector):
    def __init__(self, reader: Callable[[], AbstractContextManager[Store]]):
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        from agent.store.server import metric_counts

        try:
            with self.reader() as store:
                c = metric_counts(store)
        except Exception as exc:  # a scrape must answer even when the store cannot be read
            log.warning("metrics: cannot read the store: %s", exc)
            return
        yield GaugeMetricFamily("selfheal_store_signals", "Signals in the store.", value=c["signals"])
        yield GaugeMetricFamily("selfheal_triage_backlog", "Stored signals without a verdict yet.", value=c["untriaged"])
        verdicts = CounterMetricFamily("selfheal_store_verdicts", "Triage verdicts in the store.", labels=["verdict"])
        for verdict, n in sorted(c["verdicts"].items()):
            verdicts.add_metric([verdict], n)
        yield verdicts
        gate = CounterMetricFamily("selfheal_gate_results", "Gate judgements in the store.", labels=["result"])
        for result in ("passed", "failed"):
            gate.add_metric([result], c["gate"][result])
        yield gate
        fixes = GaugeMetricFamily("selfheal_fixes", "Fixes by current status.", labels=["status"])
        for status, n in sorted(c["fixes"].items()):
            fixes.add_metric([status], n)
        yield fixes
        issues = GaugeMetricFamily("selfheal_issues", "Issues by current status.", labels=["status"])
        for status, n in sorted(c["issues"].items()):
            issues.add_metric([status], n)
        yield issues


class Metrics:
    def __init__(self, reader: Callable[[], AbstractContextManager[Store]]):
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.ingested = Counter("selfheal_signals_ingested", "Signals stored by ingest (new ids).", ["endpoint"],
                                registry=r)
        self.duplicates = Counter("selfheal_signals_duplicate", "Signals received that were already stored.",
                                  ["endpoint"], registry=r)
        self.rejected = Counter("selfheal_ingest_rejected", "Rejected ingest requests.", ["endpoint", "status"],
                                registry=r)
        self.verdicts = Counter("selfheal_triage_verdicts", "Verdicts given by this server's triage.", ["verdict"],
                                registry=r)
        self.latency = Histogram("selfheal_http_request_duration_seconds", "HTTP request latency.",
                                 ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        r.register(StoreCollector(reader))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class LatencyMiddleware:
    """Pure ASGI (no body buffering): observes every HTTP request by its route template, never its raw path."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def record_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.latency.labels(scope.get("method", "?"), route, str(status[0])).observe(
                time.perf_counter() - started)
