"""Running a configured command: argv only, never a shell, always a timeout."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Sequence

from agent.remedy.base import CommandRun

DEFAULT_TIMEOUT_S = 120.0
_TAIL = 4000


def command_timeout(cfg) -> float:
    """`remedy.command_timeout_s` when the config has it, else the default."""
    return float(getattr(cfg.remedy, "command_timeout_s", None) or DEFAULT_TIMEOUT_S)


def run_argv(argv: Sequence[str], timeout_s: float, cwd: str | None = None) -> CommandRun:
    """Run argv with shell=False; the outcome (exit code, output tails, timeout) is data, never an exception."""
    argv = [str(a) for a in argv]
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, shell=False, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout_s,
                              cwd=cwd, text=True, errors="replace", env=os.environ.copy())
    except subprocess.TimeoutExpired as exc:
        return CommandRun(argv=argv, timed_out=True, elapsed_s=time.monotonic() - start,
                          stdout=_tail(exc.stdout), stderr=_tail(exc.stderr))
    except FileNotFoundError:
        return CommandRun(argv=argv, error=f"command not found: {argv[0]}", elapsed_s=time.monotonic() - start)
    except PermissionError:
        return CommandRun(argv=argv, error=f"permission denied: {argv[0]}", elapsed_s=time.monotonic() - start)
    except OSError as exc:
        return CommandRun(argv=argv, error=f"cannot run {argv[0]}: {exc.strerror or exc}",
                          elapsed_s=time.monotonic() - start)
    return CommandRun(argv=argv, returncode=proc.returncode, stdout=_tail(proc.stdout), stderr=_tail(proc.stderr),
                      elapsed_s=time.monotonic() - start)


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text[-_TAIL:]
