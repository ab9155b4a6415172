"""Health checks: HTTP (status, body, latency), TCP connect, and a command's exit code.

Each check is one signal per round: INFO when it passed, ERROR when it failed,
`value` = seconds the check took, `attrs.check` = the check's name (`attrs.url`
for HTTP). A DNS failure, a refused connection and a timeout are failures
with a message that says which.
"""

from __future__ import annotations

import functools
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from agent.clock import Clock
from agent.models import Signal
from agent.sensors.base import MeasuredSensor, SensorContext
from agent.sensors.config import HealthConfig
from agent.store import Store

_BODY_LIMIT = 1024 * 1024


@dataclass
class CheckResult:
    ok: bool
    message: str
    latency_s: float
    attrs: dict[str, Any] = field(default_factory=dict)


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc


def network_reason(exc: BaseException, host: str, timeout_s: float) -> tuple[str, str]:
    """(short kind, one-line explanation) for a failed connection."""
    chain = [exc]
    cur = exc
    while (cur.__cause__ or cur.__context__) is not None and len(chain) < 10:
        cur = cur.__cause__ or cur.__context__
        chain.append(cur)
    for e in chain:
        if isinstance(e, socket.gaierror):
            return "dns", f"DNS lookup of {host} failed ({e.strerror or e})"
    text = " ".join(str(e) for e in chain).lower()
    if any(k in text for k in ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
                               "no address associated", "name resolution")):
        return "dns", f"DNS lookup of {host} failed"
    for e in chain:
        if isinstance(e, ConnectionRefusedError) or "connection refused" in str(e).lower():
            return "refused", f"connection to {host} refused"
    for e in chain:
        if isinstance(e, (socket.timeout, TimeoutError)) or type(e).__name__.endswith("Timeout") or "timed out" in str(e).lower():
            return "timeout", f"timed out after {timeout_s:g}s"
    for e in chain:
        if isinstance(e, ssl.SSLError) or "certificate" in str(e).lower() or "ssl" in type(e).__name__.lower():
            return "tls", f"TLS error: {str(_root_cause(e)) or type(e).__name__}"
    for e in chain:
        if isinstance(e, ConnectionResetError):
            return "reset", f"connection to {host} reset"
        if isinstance(e, OSError) and e.strerror:
            return "network", f"{e.strerror.lower()} ({host})"
    root = _root_cause(exc)
    detail = str(root).splitlines()[0] if str(root) else type(root).__name__
    return "network", f"{type(root).__name__}: {detail}"


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """Loading the CA bundle takes tens of milliseconds: once per process, not once per check."""
    import httpx

    return httpx.create_ssl_context()


def check_http(conf: HealthConfig) -> CheckResult:
    import httpx

    url = conf.url or ""
    host = re.sub(r"^[a-z]+://(?:[^@/]*@)?", "", url).split("/", 1)[0].rsplit(":", 1)[0].strip("[]") or url
    attrs: dict[str, Any] = {"kind": "http", "url": url}
    head = f"http check {conf.name!r} {conf.method} {url}"
    client = httpx.Client(timeout=conf.timeout_s, verify=_tls_context() if conf.verify_tls else False,
                          follow_redirects=conf.follow_redirects, trust_env=conf.use_env_proxy)
    start = time.perf_counter()  # after building the client: its TLS setup is not the service's latency
    try:
        with client:
            with client.stream(conf.method, url, headers=conf.headers) as resp:
                body = b""
                if conf.body_match is not None:
                    for chunk in resp.iter_bytes():
                        body += chunk
                        if len(body) >= _BODY_LIMIT:
                            break
                status = resp.status_code
                encoding = resp.encoding or "utf-8"
    except httpx.InvalidURL as exc:
        latency = time.perf_counter() - start
        return CheckResult(False, f"{head} -> invalid URL: {exc}", latency, dict(attrs, error="config"))
    except (httpx.HTTPError, OSError) as exc:
        latency = time.perf_counter() - start
        kind, why = network_reason(exc, host, conf.timeout_s)
        return CheckResult(False, f"{head} -> failed: {why}", latency, dict(attrs, error=kind))
    latency = time.perf_counter() - start
    attrs.update(status=status, latency_s=round(latency, 6))
    if not conf.status_ok(status):
        return CheckResult(False, f"{head} -> {status} in {latency:.3f}s (expected {conf.expected_text()})", latency,
                           dict(attrs, error="status"))
    if conf.body_match is not None:
        text = body.decode(encoding, errors="replace")
        if not re.search(conf.body_match, text):
            return CheckResult(False, f"{head} -> {status} in {latency:.3f}s but the body does not match "
                                      f"/{conf.body_match}/", latency, dict(attrs, error="body"))
    if conf.max_latency_s is not None and latency > conf.max_latency_s:
        return CheckResult(False, f"{head} -> {status} in {latency:.3f}s, slower than {conf.max_latency_s:g}s", latency,
                           dict(attrs, error="slow"))
    return CheckResult(True, f"{head} -> {status} in {latency:.3f}s", latency, attrs)


def check_tcp(conf: HealthConfig) -> CheckResult:
    host, _, port = (conf.tcp or "").rpartition(":")
    host = host.strip("[]")
    attrs: dict[str, Any] = {"kind": "tcp", "address": conf.tcp}
    head = f"tcp check {conf.name!r} {conf.tcp}"
    start = time.perf_counter()
    try:
        with socket.create_connection((host, int(port)), timeout=conf.timeout_s):
            pass
    except OSError as exc:
        latency = time.perf_counter() - start
        kind, why = network_reason(exc, host, conf.timeout_s)
        return CheckResult(False, f"{head} -> failed: {why}", latency, dict(attrs, error=kind))
    latency = time.perf_counter() - start
    if conf.max_latency_s is not None and latency > conf.max_latency_s:
        return CheckResult(False, f"{head} -> connected in {latency:.3f}s, slower than {conf.max_latency_s:g}s",
                           latency, dict(attrs, error="slow"))
    return CheckResult(True, f"{head} -> connected in {latency:.3f}s", latency, attrs)


def check_command(conf: HealthConfig, cwd: Any) -> CheckResult:
    from agent.sensors import proc

    res = proc.run(conf.command or [], timeout_s=conf.timeout_s, cwd=cwd, tail_lines=5, kill_grace_s=1.0)
    attrs: dict[str, Any] = {"kind": "command", "command": res.argv, "exit_code": res.exit_code}
    if res.timed_out:
        attrs["timed_out"] = True
    head = f"command check {conf.name!r}"
    last = res.last_line()
    suffix = f": {last}" if last else ""
    if res.error:
        return CheckResult(False, f"{head} -> failed: {res.error}", res.duration_s, dict(attrs, error="exec"))
    if res.timed_out:
        return CheckResult(False, f"{head} -> failed: {res.describe()}{suffix}", res.duration_s,
                           dict(attrs, error="timeout"))
    if res.exit_code != conf.expect_exit:
        return CheckResult(False, f"{head} -> failed: {res.describe()} (expected {conf.expect_exit}){suffix}",
                           res.duration_s, dict(attrs, error="exit"))
    return CheckResult(True, f"{head} -> ok in {res.duration_s:.3f}s{suffix}", res.duration_s, attrs)


class HealthSensor(MeasuredSensor):
    kind = "health"

    def __init__(self, conf: HealthConfig, ctx: SensorContext):
        super().__init__(conf, ctx)
        self.conf: HealthConfig = conf

    def target(self) -> str:
        c = self.conf
        return c.url or c.tcp or " ".join(c.command or [])

    def measure(self, clock: Clock) -> tuple[Any, CheckResult]:
        at = clock.now()
        kind = self.conf.kind
        if kind == "http":
            return at, check_http(self.conf)
        if kind == "tcp":
            return at, check_tcp(self.conf)
        return at, check_command(self.conf, self.ctx.base_dir)

    def record(self, store: Store, measurement: tuple[Any, CheckResult], clock: Clock) -> list[Signal]:
        at, res = measurement
        return [self.signal(at, "INFO" if res.ok else "ERROR", res.message, round(res.latency_s, 6),
                            check=self.name, **res.attrs)]
