"""How the demo breaks its host: real changes of the environment, the way production breaks.

Each trigger changes something real (traffic, a deploy, time passing for a certificate, a
concurrent task, a new job version) and never writes a signal: what selfheal sees comes only
from its sensors. Each `check_*` re-creates the same conditions briefly and reports whether
the symptom's own check passes, which is how a fix is verified.
"""

from __future__ import annotations

import configparser
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import httpx

from agent.demo.ops import deploy
from agent.demo.sandbox import Sandbox


def _in_parallel(client: Callable[[], None], clients: int) -> None:
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _hammer(url: str, clients: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                try:
                    http.get(url)
                except httpx.HTTPError:
                    time.sleep(0.05)

    _in_parallel(client, clients)


def _healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _under(load: Callable[[], None], probe: Callable[[], bool], samples: int = 6, every: float = 0.25) -> bool:
    """Run `load` in the background and require the probe to pass at every sample."""
    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    ok = True
    for _ in range(samples):
        time.sleep(every)
        ok = probe() and ok
    worker.join()
    return ok and probe()


def set_ini(path: Path, section: str, key: str, value: str) -> None:
    parser = configparser.ConfigParser()
    parser.read(path)
    parser[section][key] = value
    with open(path, "w") as fh:
        parser.write(fh)


# --------------------------------------------------------------------------- the shop


def traffic_surge(box: Sandbox, clients: int = 16, seconds: float = 4.0) -> None:
    """A marketing e-mail goes out: 16 clients check out at once."""
    _hammer(box.url("shop", "/checkout"), clients, seconds)


def check_traffic_surge(box: Sandbox) -> bool:
    return _under(lambda: traffic_surge(box, seconds=1.5), lambda: _healthy(box.url("shop")))


def catalogue_crawl(box: Sandbox, images: int = 1400, clients: int = 2) -> None:
    """A crawler walks the whole catalogue: every product image once."""
    ids = iter(range(images))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=2.0) as http:
            while True:
                with lock:
                    n = next(ids, None)
                if n is None:
                    return
                try:
                    http.get(box.url("shop", f"/image/{n}"))
                except httpx.HTTPError:
                    time.sleep(0.02)

    _in_parallel(client, clients)


def check_catalogue_crawl(box: Sandbox) -> bool:
    catalogue_crawl(box)
    time.sleep(0.3)
    return _healthy(box.url("shop"))


def redeploy(box: Sandbox) -> None:
    """A release goes out: the deploy renders shop.ini from its template again."""
    deploy(box.root)


def long_poll_clients(box: Sandbox, connections: int = 80, seconds: float = 5.0) -> None:
    """A mobile release starts long-polling: 80 clients hold a connection open each."""
    socks = []
    try:
        for _ in range(connections):
            try:
                socks.append(socket.create_connection(("127.0.0.1", box.ports["shop"]), timeout=1))
            except OSError:
                break
        time.sleep(seconds)
    finally:
        for s in socks:
            s.close()


def check_long_poll_clients(box: Sandbox) -> bool:
    return _under(lambda: long_poll_clients(box, seconds=1.5), lambda: _healthy(box.url("shop")), samples=4)


# --------------------------------------------------------------------------- the worker


def restock(box: Sandbox) -> None:
    """The warehouse sends a restock while orders are being processed."""
    stamp = datetime.now(timezone.utc).strftime("%H%M%S%f")
    (box.path("run/inbox") / f"warehouse-{stamp}.restock").write_text("sku=all\n")


def check_restock(box: Sandbox) -> bool:
    restock(box)
    beat = box.path("run/worker.beat")
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        time.sleep(0.25)
        if not any(box.path("run/inbox").glob("*.restock")):
            break
    time.sleep(0.5)
    return beat.exists() and time.time() - beat.stat().st_mtime < 1.5


# --------------------------------------------------------------------------- the TLS endpoint


def pass_days(box: Sandbox, days: float = 2) -> None:
    """Two days pass for the edge certificate (its validity window moves two days into the past)."""
    subprocess.run([sys.executable, "-m", "agent.demo.services.renew_cert", "--cert", str(box.cert),
                    "--key", str(box.key), "--shift-days", str(days)], check=True, capture_output=True)


def check_pass_days(box: Sandbox) -> bool:
    pass_days(box)
    time.sleep(0.5)
    probe = subprocess.run([sys.executable, "-m", "agent.demo.services.tls_probe", "127.0.0.1",
                            str(box.ports["tls"]), str(box.cert)], capture_output=True, text=True)
    return probe.returncode == 0


# --------------------------------------------------------------------------- the nightly job


def _crontab_env(crontab: Path) -> dict[str, str]:
    env = {}
    for line in crontab.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line.split()[0]:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip().strip('"')
    return env


def run_nightly_job(box: Sandbox, home: Path) -> int:
    """cron starts the nightly report as root, with the crontab's environment (and nothing else)."""
    env = {"HOME": str(box.root), "LOGNAME": "root", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
    env.update(_crontab_env(box.path("crontabs/root")))
    env["SELFHEAL_HOME"] = str(home)  # where `selfheal cron` records the run (not part of the job's story)
    job = [sys.executable, "-m", "agent.demo.services.report_job", "--config", str(box.path("etc/report/job.ini")),
           "--out", str(box.path("var/reports"))]
    argv = [sys.executable, "-m", "agent", "cron", "--name", "nightly-report", "--", *job]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    with open(box.path("var/log/cron.log"), "a") as fh:
        fh.write(f"{stamp} INFO CRON[{os.getpid()}]: (root) CMD (selfheal cron --name nightly-report -- {' '.join(job)})\n")
    return subprocess.run(argv, env=env, cwd=box.root, capture_output=True).returncode


def release_job_v2(box: Sandbox, home: Path) -> None:
    """Version 2 of the nightly report is released (it uploads to REPORT_BUCKET), and cron runs it."""
    set_ini(box.path("etc/report/job.ini"), "job", "version", "2")
    run_nightly_job(box, home)


def check_release_job_v2(box: Sandbox, home: Path) -> bool:
    return run_nightly_job(box, home) == 0


# --------------------------------------------------------------------------- environmental noise


def payments_blip(stop: Callable[[], None], start: Callable[[], None], seconds: float = 0.4) -> None:
    """The payments dependency restarts: its health check fails briefly, then recovers."""
    stop()
    time.sleep(seconds)
    start()
