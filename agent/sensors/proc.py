"""Run a program (argv, never a shell) with a timeout, keeping the last lines of its output.

The child gets its own process group, so a timeout kills everything it
started (SIGTERM, then SIGKILL after a grace period) and a hung grandchild
cannot keep us waiting on its pipes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence

TIMEOUT_EXIT = 124  # what GNU timeout(1) returns, so cron wrappers read alike


@dataclass
class ProcResult:
    argv: list[str]
    exit_code: int  # the job's own code; 128+N when killed by signal N; 124 on timeout; 126/127 when it could not start
    duration_s: float
    timed_out: bool = False
    signal: str | None = None  # name of the killing signal, when killed
    error: str | None = None  # why it could not start
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    timeout_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and self.signal is None and self.exit_code == 0

    def last_line(self) -> str:
        for tail in (self.stderr_tail, self.stdout_tail):
            for line in reversed(tail):
                if line.strip():
                    return line.strip()
        return ""

    def describe(self) -> str:
        """'exit code 2', 'killed by SIGKILL', 'timed out after 5s', 'command not found: foo'."""
        if self.error:
            return self.error
        if self.timed_out:
            return f"timed out after {self.timeout_s or self.duration_s:g}s and was killed"
        if self.signal:
            return f"killed by {self.signal}"
        return f"exit code {self.exit_code}"


def _pump(stream: BinaryIO, tail: deque, tee: BinaryIO | None) -> None:
    try:
        for raw in iter(stream.readline, b""):
            if tee is not None:
                try:
                    tee.write(raw)
                    tee.flush()
                except (OSError, ValueError):
                    tee = None
            tail.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    except (OSError, ValueError):
        pass
    finally:
        try:
            stream.close()
        except OSError:
            pass


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except (ProcessLookupError, OSError):
            pass


def run(
    argv: Sequence[str],
    *,
    timeout_s: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    tail_lines: int = 20,
    kill_grace_s: float = 2.0,
    tee: bool = False,
    env: dict[str, str] | None = None,
    reap_group: bool = True,
) -> ProcResult:
    """Run argv to completion (or timeout); output is read as it comes, so a chatty job never blocks.

    `reap_group` ends whatever the program left running in its process group
    (right for checks; a cron job's deliberate background children are left alone).
    """
    import sys

    argv = [str(a) for a in argv]
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(cwd) if cwd else None,
            env=env,
            start_new_session=True,
            shell=False,
        )
    except FileNotFoundError:
        where = f" (in {cwd})" if cwd and not Path(argv[0]).is_absolute() and "/" in argv[0] else ""
        return ProcResult(argv, 127, time.monotonic() - start, error=f"command not found: {argv[0]}{where}")
    except PermissionError:
        return ProcResult(argv, 126, time.monotonic() - start, error=f"permission denied: {argv[0]}")
    except OSError as exc:
        return ProcResult(argv, 126, time.monotonic() - start, error=f"cannot run {argv[0]}: {exc.strerror or exc}")
    out: deque[str] = deque(maxlen=tail_lines)
    err: deque[str] = deque(maxlen=tail_lines)
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, out, sys.stdout.buffer if tee else None), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, sys.stderr.buffer if tee else None), daemon=True),
    ]
    for t in pumps:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=kill_grace_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
    except KeyboardInterrupt:
        _kill_group(proc, signal.SIGTERM)
        proc.wait()
        raise
    duration = time.monotonic() - start
    if not timed_out and reap_group:
        # A grandchild may still hold the pipes open; end the whole group before collecting output.
        _kill_group(proc, signal.SIGKILL)
    for t in pumps:
        t.join(timeout=1.0)
    code = proc.returncode
    sig_name = None
    if timed_out:
        exit_code = TIMEOUT_EXIT
    elif code < 0:
        exit_code = 128 - code
        try:
            sig_name = signal.Signals(-code).name
        except ValueError:
            sig_name = f"signal {-code}"
    else:
        exit_code = code
    return ProcResult(argv, exit_code, duration, timed_out=timed_out, signal=sig_name,
                      stdout_tail=list(out), stderr_tail=list(err), timeout_s=timeout_s)
