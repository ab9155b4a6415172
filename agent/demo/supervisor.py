"""Starts the demo's processes, restarts the ones that die (like systemd's Restart=on-failure), and stops
them all on exit, on Ctrl-C and on failure. It writes the journal lines a service manager writes,
so a process dying is evidence in the logs like on a real host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path


@dataclass
class Unit:
    name: str
    argv: list[str]
    restart: bool = True
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    restarts: int = 0
    enabled: bool = True


class Supervisor:
    def __init__(self, journal: Path, cwd: Path, control: Path | None = None):
        self.units: dict[str, Unit] = {}
        self.journal = journal
        self.cwd = cwd
        self.control = control  # `<unit>.restart` files dropped here are restart requests
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _log(self, text: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        with open(self.journal, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} INFO systemd[1]: {text}\n")

    def add(self, name: str, argv: list[str], *, restart: bool = True, env: dict[str, str] | None = None) -> None:
        self.units[name] = Unit(name, argv, restart, env or {})

    def start(self, name: str) -> None:
        with self._lock:
            unit = self.units[name]
            env = dict(os.environ, PYTHONUNBUFFERED="1", MALLOC_ARENA_MAX="1", **unit.env)
            unit.proc = subprocess.Popen(unit.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
            unit.enabled = True
            self._log(f"Started {name}.service (pid {unit.proc.pid}).")

    def stop(self, name: str, *, disable: bool = True) -> None:
        with self._lock:
            unit = self.units[name]
            unit.enabled = not disable
            if unit.proc and unit.proc.poll() is None:
                _terminate(unit.proc)
                self._log(f"Stopped {name}.service.")

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)

    def start_all(self) -> None:
        for name in self.units:
            self.start(name)
        self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._watcher.start()

    def _serve_requests(self) -> None:
        if self.control is None or not self.control.is_dir():
            return
        for request in sorted(self.control.glob("*.restart")):
            name = request.name[: -len(".restart")]
            if name in self.units:
                self._log(f"Stopping {name}.service...")
                self.restart(name)
            request.unlink(missing_ok=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            self._serve_requests()
            with self._lock:
                for unit in self.units.values():
                    if not unit.enabled or unit.proc is None:
                        continue
                    code = unit.proc.poll()
                    if code is None:
                        continue
                    how = f"code=killed, status={-code}/{signal.Signals(-code).name[3:]}" if code < 0 else \
                        f"code=exited, status={code}/{'SUCCESS' if code == 0 else 'FAILURE'}"
                    self._log(f"{unit.name}.service: Main process exited, {how}")
                    if code != 0:
                        self._log(f"{unit.name}.service: Failed with result 'exit-code'.")
                    if unit.restart and code != 0:
                        unit.restarts += 1
                        self._log(f"{unit.name}.service: Scheduled restart job, restart counter is at {unit.restarts}.")
                        self.start(unit.name)
                    else:
                        unit.enabled = False

    def wait_ready(self, probes: dict[str, callable], timeout: float = 15.0) -> None:
        """Wait until each named readiness probe returns True."""
        deadline = time.monotonic() + timeout
        pending = dict(probes)
        while pending and time.monotonic() < deadline:
            for name, probe in list(pending.items()):
                if probe():
                    pending.pop(name)
            time.sleep(0.05)
        if pending:
            raise RuntimeError(f"demo services did not become ready: {', '.join(sorted(pending))}")

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            for unit in self.units.values():
                unit.enabled = False
                if unit.proc and unit.proc.poll() is None:
                    _terminate(unit.proc)


def _terminate(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=3)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
