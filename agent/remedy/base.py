"""What every action shares: the plan and backup records, the context, and the Action base class.

An action is a small class: `plan(params, ctx)` says what it would do (a
unified diff for file changes) without touching anything; `apply(plan, ctx)`
backs up first, then changes things, and returns the Backup; `rollback(backup,
ctx)` restores it byte for byte; `postcondition(params)` is the observe that
holds once the action took effect (used when the chain's fix gives none);
`probe(params, ctx)` reads the state that postcondition observes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import SelfhealError
from agent.models import Observe, Signal

if TYPE_CHECKING:
    from agent.clock import Clock
    from agent.config import Config
    from agent.store import Store


class RemedyError(SelfhealError):
    """A fix could not be planned, applied, rolled back or verified."""


class RefusedError(RemedyError):
    """The request is outside what the catalog allows (unknown action, bad params, path outside the roots...)."""


class ApplyError(RemedyError):
    """Applying failed part way; whatever had changed was restored. `backup` holds what ran."""

    def __init__(self, message: str, backup: "Backup | None" = None):
        super().__init__(message)
        self.backup = backup


# --------------------------------------------------------------------------- records


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileChange(_Record):
    path: str                 # resolved absolute path
    label: str                # as shown to the user (relative to its root)
    before: str | None        # None: the file does not exist yet
    after: str
    mode: int | None = None   # permission bits for a created file

    @property
    def created(self) -> bool:
        return self.before is None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        return unified_diff(self.before, self.after, self.label)


class Plan(_Record):
    action: str
    params: dict[str, Any]
    summary: str
    changes: list[FileChange] = Field(default_factory=list)
    commands: list[list[str]] = Field(default_factory=list)   # argv, run in order after the file changes
    services: list[str] = Field(default_factory=list)         # services restarted after their config changed

    @property
    def noop(self) -> bool:
        return not self.commands and not any(c.changed for c in self.changes)

    def diff(self) -> str:
        return "".join(c.diff() for c in self.changes if c.changed)

    def render(self) -> str:
        """The plan as text: deterministic, so re-planning the same change yields the same text."""
        lines = [f"{self.action}: {self.summary}"]
        if self.noop:
            lines.append("nothing to change: already in place")
        for argv in self.commands:
            lines.append("run: " + " ".join(_quote(a) for a in argv))
        text = "\n".join(lines) + "\n"
        return text + self.diff()

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "params": self.params,
            "summary": self.summary,
            "noop": self.noop,
            "changes": [{"path": c.path, "file": c.label, "created": c.created, "changed": c.changed, "diff": c.diff()}
                        for c in self.changes],
            "commands": self.commands,
            "services": self.services,
            "diff": self.diff(),
        }


class FileBackup(_Record):
    path: str
    existed: bool
    sha256: str | None = None          # of the original bytes
    size: int | None = None
    mode: int | None = None
    saved: str | None = None           # where the original bytes are kept
    after_sha256: str | None = None    # of what the fix wrote
    created_dirs: list[str] = Field(default_factory=list)


class CommandRun(_Record):
    argv: list[str]
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.error is None

    def describe(self) -> str:
        cmd = " ".join(_quote(a) for a in self.argv)
        if self.error:
            return f"{cmd}: {self.error}"
        if self.timed_out:
            return f"{cmd}: timed out after {self.elapsed_s:.1f}s"
        tail = (self.stderr or self.stdout).strip().splitlines()[-1:] or [""]
        return f"{cmd}: exit {self.returncode}" + (f" ({tail[0][:200]})" if self.returncode and tail[0] else "")


class Backup(_Record):
    action: str
    fix_id: str | None = None
    dir: str | None = None
    files: list[FileBackup] = Field(default_factory=list)
    commands: list[CommandRun] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- context


@dataclass
class ActionContext:
    cfg: "Config"
    clock: "Clock"
    store: "Store | None" = None
    fix_id: str | None = None
    backup_dir: Path | None = None
    # Called once the originals are copied and before anything changes, so the
    # backup is on record before the first write (a crash can then be undone).
    on_backup: Callable[[Backup], None] | None = None
    _roots: list[Path] | None = field(default=None, repr=False)

    @property
    def roots(self) -> list[Path]:
        if self._roots is None:
            from agent.remedy.paths import configured_roots

            self._roots = configured_roots(self.cfg)
        return self._roots

    def confine(self, raw: str, what: str = "file") -> Path:
        from agent.remedy.paths import confine

        return confine(raw, self.roots, what=what)

    def label(self, path: Path) -> str:
        from agent.remedy.paths import display

        return display(path, self.roots)


# --------------------------------------------------------------------------- actions


class Action:
    """Base of every catalog entry; subclasses set `name`, `Params` and `plan`."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    description: ClassVar[str] = ""

    def validate(self, params: dict[str, Any] | BaseModel) -> BaseModel:
        if isinstance(params, self.Params):
            return params
        if not isinstance(params, dict):
            raise RefusedError(f"{self.name}: params must be an object, got {type(params).__name__}")
        try:
            return self.Params.model_validate(params)
        except ValidationError as exc:
            raise RefusedError(f"{self.name}: {_describe(exc)}") from None

    def plan(self, params: dict[str, Any] | BaseModel, ctx: ActionContext) -> Plan:
        raise RemedyError(f"{self.name}: no plan")  # every catalog entry overrides this

    def apply(self, plan: Plan, ctx: ActionContext) -> Backup:
        from agent.remedy.backup import apply_plan

        return apply_plan(plan, ctx)

    def rollback(self, backup: Backup, ctx: ActionContext) -> list[str]:
        """Restore what `apply` changed; returns one line per thing done."""
        from agent.remedy.backup import restore

        return restore(backup, ctx)

    def postcondition(self, params: dict[str, Any] | BaseModel) -> Observe | None:
        return None

    def probe(self, params: dict[str, Any] | BaseModel, ctx: ActionContext) -> list[Signal]:
        """Read the state the postcondition observes, as probe signals (nothing to read by default)."""
        return []

    def probe_spec(self, params: dict[str, Any] | BaseModel, ctx: ActionContext) -> dict[str, Any] | None:
        """The analysis ProbeRunner spec that reads the same state, for a caller-supplied probe runner."""
        return None


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "missing":
        return f"missing required param '{loc}'"
    if err.get("type") == "extra_forbidden":
        return f"unknown param '{loc}'"
    return f"param '{loc}': {msg}" if loc else msg


class StrictParams(BaseModel):
    """Params reject unknown keys: a typo must not silently do something else."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- text helpers


def unified_diff(before: str | None, after: str, label: str) -> str:
    a = (before or "").splitlines(keepends=True)
    b = after.splitlines(keepends=True)
    out = []
    for line in difflib.unified_diff(a, b, fromfile="/dev/null" if before is None else f"a/{label}",
                                     tofile=f"b/{label}"):
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        out.append(line)
    return "".join(out)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
