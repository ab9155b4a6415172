"""Where an eval case runs: a temporary state dir, a copy of the incident's fixtures/ as the only remedy root,
and the config derived from the user's.

Fix params that name a file the action edits (`file`, `value_from`, `dir`, `path`) by an absolute path, as
live probes name configured files (/etc/app/app.ini), are mapped onto the fixture copy: the longest trailing
part of the path that exists in the copy wins (etc/app/app.ini, then app/app.ini, then app.ini), then a file of
that name anywhere in the copy when there is exactly one; a path matching nothing lands at its own path inside
the copy (a file the fix creates, such as a logrotate rule). Relative params already resolve under the root.
Other params (log paths inside a logrotate rule, a command's arguments) are text, never mapped.

The other way round, verification reads the changed files back from the copy under the names the incident's
own probes gave them: a fixture at `logrotate.d/orders-api` that the probes called /etc/logrotate.d/orders-api
stands for that file, so a postcondition naming /etc/logrotate.d/orders-api is checked against the copy.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from agent.config import Config, ModelConfig, ProbeConfig, RemedyConfig
from agent.models import Chain, Signal

FILE_PARAMS = ("file", "value_from", "dir", "path")
SANDBOX_FILE = Path(__file__).with_name("sandbox.yaml")


@lru_cache(maxsize=1)
def sandbox_commands() -> dict[str, list[str]]:
    data = yaml.safe_load(SANDBOX_FILE.read_text(encoding="utf-8")) or {}
    return {str(k): [str(a) for a in v] for k, v in ((data.get("remedy") or {}).get("commands") or {}).items()}


def eval_config(base: Config, home: Path, root: Path, *, model: ModelConfig | None = None) -> Config:
    """The user's triage and analysis settings (rules_dirs, failure_threshold, gate, analysis, redact) on a fresh
    state dir; no maintenance windows, sensors, probes, services or mitigations; the fixture copy as remedy root."""
    cfg = base.model_copy(deep=True)
    cfg.home = home
    cfg.mode = "dry-run"
    cfg.maintenance = []
    cfg.sensors = {}
    cfg.openclaw = None
    cfg.probes = ProbeConfig(timeout_s=base.probes.timeout_s)
    commands = dict(sandbox_commands())
    commands.update(base.remedy.commands)
    cfg.remedy = RemedyConfig(roots=[str(root)], commands=commands, backup_dir=str(home / "backups"),
                              watch_window_s=base.remedy.watch_window_s,
                              command_timeout_s=base.remedy.command_timeout_s)
    cfg.analysis = base.analysis.model_copy(update={"model": model})
    return cfg


@dataclass
class Sandbox:
    """A temporary directory holding the case's state dir (home/) and the fixture copy (root/)."""

    dir: Path

    @property
    def home(self) -> Path:
        return self.dir / "home"

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @classmethod
    def create(cls, fixtures: Path | None, parent: Path | None = None) -> "Sandbox":
        box = cls(Path(tempfile.mkdtemp(prefix="selfheal-eval-", dir=parent)))
        box.home.mkdir()
        if fixtures is not None:
            shutil.copytree(fixtures, box.root, symlinks=True)
        else:
            box.root.mkdir()
        return box

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def map_path(raw: str, root: Path) -> str | None:
    """The fixture-copy path (relative to the root) an absolute path stands for; None when `raw` is not absolute."""
    p = PurePosixPath(raw)
    if not p.is_absolute():
        return None
    parts = p.parts[1:]
    if not parts or ".." in parts:
        return None  # left as it is: the remedy refuses it with its own reason
    for k in range(len(parts), 0, -1):
        rel = PurePosixPath(*parts[-k:])
        if os.path.lexists(root / rel):
            return str(rel)
    hits = [q for q in root.rglob(parts[-1]) if q.is_file()]
    if len(hits) == 1:
        return hits[0].relative_to(root).as_posix()
    return str(PurePosixPath(*parts))


def map_params(params: dict[str, Any], root: Path) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """(params with absolute file paths mapped onto the copy, {param: (given, mapped)})."""
    out = dict(params)
    mapped: dict[str, tuple[str, str]] = {}
    for key in FILE_PARAMS:
        value = out.get(key)
        if isinstance(value, str):
            new = map_path(value, root)
            if new is not None and new != value:
                out[key] = new
                mapped[key] = (value, new)
    return out, mapped


def sandboxed(chain: Chain, root: Path) -> tuple[Chain, dict[str, tuple[str, str]]]:
    """The chain with its fix's file params mapped onto the fixture copy (the same chain when nothing maps)."""
    if chain.fix is None:
        return chain, {}
    params, mapped = map_params(chain.fix.params, root)
    if not mapped:
        return chain, {}
    fix = chain.fix.model_copy(update={"params": params})
    return chain.model_copy(update={"fix": fix}), mapped


# --------------------------------------------------------------------------- names the incident gave the files


def fixture_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def virtual_prefixes(root: Path, signals: list[Signal]) -> list[str]:
    """The directories the incident's probes read the fixture files in ("/etc/" for a fixture logrotate.d/x
    that a probe called /etc/logrotate.d/x), longest first."""
    files = fixture_files(root)
    if not files:
        return []
    found: set[str] = set()
    texts = [s.message for s in signals if s.source == "probe"]
    for rel in files:
        pattern = re.compile(r"(?<![\w./-])(/(?:[\w.@+-]+/)*)" + re.escape(rel) + r"(?![\w./-])")
        for text in texts:
            found.update(m.group(1) for m in pattern.finditer(text))
    return sorted(found, key=lambda v: (-len(v), v))


class SandboxProbe:
    """Verification's probe runner in the sandbox: the fix action's own reading of what it changed in the copy,
    each fact also named as the incident named the file (see `virtual_prefixes`)."""

    def __init__(self, root: Path, prefixes: list[str], context: object):
        self.root = root.resolve()
        self.prefixes = prefixes
        self.context = context

    def run(self, spec: dict) -> list[Signal]:
        from agent.remedy.catalog import get_action

        found = get_action(spec["action"]).probe(spec["params"], self.context)
        out = list(found)
        for s in found:
            for alias in self.aliases(s.message):
                out.append(s.model_copy(update={"id": None, "message": alias}))
        return out

    def aliases(self, message: str) -> list[str]:
        label, sep, rest = message.partition(": ")
        if not sep or not label or any(c.isspace() for c in label):
            return []
        path = Path(label) if label.startswith("/") else self.root / label
        try:
            rel = path.resolve().relative_to(self.root).as_posix()
        except (ValueError, OSError):
            return []
        return [f"{v}{rel}: {rest}" for v in self.prefixes if f"{v}{rel}" != label]
