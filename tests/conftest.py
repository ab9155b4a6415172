"""Shared fixtures: paths to the contracts, a fresh state dir per test, the CLI as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CONTRACTS = SHARED / "contracts"
EXAMPLES = CONTRACTS / "examples"
LOGHUB = SHARED / "data" / "loghub"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SELFHEAL_HOME for this test (and for subprocesses it starts)."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("SELFHEAL_HOME", str(h))
    return h


def run_cli(*args: str, home: Path | None = None, input: str | None = None, timeout: float = 60,
            cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `selfheal ARGS` as a new process, the way a user does."""
    full_env = dict(os.environ)
    if home is not None:
        full_env["SELFHEAL_HOME"] = str(home)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO, env=full_env,
    )


@pytest.fixture
def cli(home: Path):
    def _run(*args: str, **kw):
        kw.setdefault("home", home)
        return run_cli(*args, **kw)

    return _run


@pytest.fixture(autouse=True)
def _no_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches a model: pydantic-ai refuses every real request unless a test opts in for a local fake."""
    from pydantic_ai import models

    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", False)


def pytest_sessionstart(session: pytest.Session) -> None:
    """The browser tests drive the OS's Chromium: install Debian's package when it is missing and we may
    (root with apt-get). Where that fails, those tests skip and say why. SELFHEAL_INSTALL_CHROMIUM=0 opts out."""
    import shutil

    if os.environ.get("SELFHEAL_INSTALL_CHROMIUM") == "0" or Path("/usr/bin/chromium").exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            if subprocess.run(argv, env=env, capture_output=True, timeout=300).returncode != 0:
                return
        except (OSError, subprocess.TimeoutExpired):
            return
