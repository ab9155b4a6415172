"""Real processes for the server tests: `selfheal serve` and `selfheal run --ship-to` on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SELFHEAL_TOKEN"}
    env["SELFHEAL_HOME"] = str(home)
    env.update(extra or {})
    return env


class ServerProcess:
    """`selfheal serve` in a subprocess; restartable on the same port."""

    def __init__(self, home: Path, port: int | None = None, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None):
        self.home = Path(home)
        self.port = port or free_port()
        self.args = args
        self.env = _env(self.home, env)
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.home / "serve.log"
        self.starts = 0

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        self.home.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--port", str(self.port), *self.args],
                                     cwd=REPO, env=self.env, stdout=out, stderr=out)
        out.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"selfheal serve exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"selfheal serve did not answer within {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def start_shipper(home: Path, url: str, *, token: str | None = None, env: dict[str, str] | None = None,
                  log: Path | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "agent", "run", "--ship-to", url]
    if token:
        args += ["--token", token]
    out = open(log or (Path(home) / "ship.log"), "ab")
    try:
        return subprocess.Popen(args, cwd=REPO, env=_env(Path(home), env), stdout=out, stderr=out)
    finally:
        out.close()


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def metric(text: str, name: str) -> float | None:
    """The value of an unlabelled sample in a Prometheus exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
