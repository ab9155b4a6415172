"""write_file, patch_file and add_logrotate: whole files, patches and logrotate rules under the remedy roots."""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.models import Observe, Signal
from agent.remedy.actions.common import edited, existing_text, file_probe, services_for
from agent.remedy.backup import read_text
from agent.remedy.base import Action, ActionContext, FileChange, Plan, RefusedError, StrictParams
from agent.remedy.editors import unidiff


def _mode(v: str | None) -> str | None:
    if v is None:
        return v
    if not re.fullmatch(r"0?[0-7]{3}", v):
        raise ValueError("must be octal permission bits like '0644'")
    return v


# --------------------------------------------------------------------------- write_file


class WriteFileParams(StrictParams):
    file: str
    content: str
    mode: str | None = Field(default=None, description="permission bits of a created file, e.g. '0644'")

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str | None) -> str | None:
        return _mode(v)


class WriteFile(Action):
    name = "write_file"
    Params = WriteFileParams
    description = "write a whole file (created or replaced) under the remedy roots"

    def plan(self, params, ctx: ActionContext) -> Plan:
        p: WriteFileParams = self.validate(params)  # type: ignore[assignment]
        path = ctx.confine(p.file)
        label = ctx.label(path)
        before = read_text(path, label)
        verb = "create" if before is None else "replace"
        return Plan(action=self.name, params=p.model_dump(exclude_none=True),
                    summary=f"{verb} {label} ({len(p.content.encode())} bytes)",
                    changes=[FileChange(path=str(path), label=label, before=before, after=p.content,
                                        mode=int(p.mode, 8) if p.mode else None)],
                    services=services_for(path, ctx) if before != p.content else [])

    def postcondition(self, params) -> Observe | None:
        p: WriteFileParams = self.validate(params)  # type: ignore[assignment]
        return Observe(source="probe", match=re.escape(f"sha256 {hashlib.sha256(p.content.encode()).hexdigest()}"))

    def probe(self, params, ctx: ActionContext) -> list[Signal]:
        p: WriteFileParams = self.validate(params)  # type: ignore[assignment]
        return file_probe(ctx, ctx.confine(p.file), p.file)

    def probe_spec(self, params, ctx: ActionContext) -> dict | None:
        p = self.validate(params)
        return {"kind": "stat", "path": p.file}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- patch_file


class PatchFileParams(StrictParams):
    file: str
    diff: str | None = None
    search: str | None = None
    replace: str | None = None
    count: int = Field(default=1, ge=1, description="how many times `search` must occur (all are replaced)")

    @model_validator(mode="after")
    def _one_way(self) -> "PatchFileParams":
        if self.diff is not None and (self.search is not None or self.replace is not None):
            raise ValueError("give either diff or search+replace, not both")
        if self.diff is None and (self.search is None or self.replace is None):
            raise ValueError("give a unified diff, or search and replace")
        if self.search is not None and not self.search:
            raise ValueError("search must not be empty")
        return self


class PatchFile(Action):
    name = "patch_file"
    Params = PatchFileParams
    description = "patch an existing file with a unified diff or an exact search/replace"

    def plan(self, params, ctx: ActionContext) -> Plan:
        p: PatchFileParams = self.validate(params)  # type: ignore[assignment]
        path = ctx.confine(p.file)
        label = ctx.label(path)
        before = existing_text(path, label)
        if p.diff is not None:
            after = edited(unidiff.apply, before, p.diff, label=label)
            summary = f"apply a {len(unidiff.parse(p.diff))}-hunk patch to {label}"
        else:
            assert p.search is not None and p.replace is not None
            found = before.count(p.search)
            if found != p.count:
                raise RefusedError(f"{label}: the search text occurs {found} time(s), expected {p.count}")
            after = before.replace(p.search, p.replace)
            summary = f"replace {p.count} occurrence(s) of the search text in {label}"
        return Plan(action=self.name, params=p.model_dump(exclude_none=True), summary=summary,
                    changes=[FileChange(path=str(path), label=label, before=before, after=after)],
                    services=services_for(path, ctx) if before != after else [])

    def postcondition(self, params) -> Observe | None:
        p: PatchFileParams = self.validate(params)  # type: ignore[assignment]
        if p.diff is not None:
            added = [ln.text for h in unidiff.parse(p.diff) for ln in h.lines if ln.tag == "+"]
        else:
            added = (p.replace or "").splitlines()
        for line in added:
            if line.strip():
                return Observe(source="probe", match=re.escape(line.strip()))
        return None

    def probe(self, params, ctx: ActionContext) -> list[Signal]:
        p: PatchFileParams = self.validate(params)  # type: ignore[assignment]
        return file_probe(ctx, ctx.confine(p.file), p.file)

    def probe_spec(self, params, ctx: ActionContext) -> dict | None:
        p = self.validate(params)
        return {"kind": "stat", "path": p.file}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- add_logrotate


class LogrotateParams(StrictParams):
    name: str
    paths: list[str] = Field(min_length=1)
    dir: str = "logrotate.d"
    frequency: Literal["hourly", "daily", "weekly", "monthly", "yearly"] = "daily"
    rotate: int = Field(default=7, ge=0, le=10000)
    size: str | None = None
    maxsize: str | None = None
    compress: bool = True
    delaycompress: bool = False
    missingok: bool = True
    notifempty: bool = True
    copytruncate: bool = False
    dateext: bool = False
    create: str | None = None
    su: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("letters, digits, '.', '_' and '-' only (it becomes a file name)")
        return v

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for path in v:
            if not path.startswith("/") or re.search(r"[\s{}\"'#]", path):
                raise ValueError(f"{path!r}: logrotate needs absolute paths without spaces, quotes, braces or '#'")
        return v

    @field_validator("size", "maxsize")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+[kMG]?", v):
            raise ValueError("a size like 100k, 50M or 1G")
        return v

    @field_validator("create")
    @classmethod
    def _create(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-7]{3,4}(\s+[A-Za-z0-9_][A-Za-z0-9_.-]*\s+[A-Za-z0-9_][A-Za-z0-9_.-]*)?", v):
            raise ValueError("'MODE [OWNER GROUP]', e.g. '0640 app adm'")
        return v

    @field_validator("su")
    @classmethod
    def _su(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\s+[A-Za-z0-9_][A-Za-z0-9_.-]*", v):
            raise ValueError("'USER GROUP'")
        return v


def render_logrotate(p: LogrotateParams) -> str:
    lines = [f"# logrotate rule {p.name}, written by selfheal", " ".join(p.paths) + " {", f"    {p.frequency}",
             f"    rotate {p.rotate}"]
    for flag in ("compress", "delaycompress", "missingok", "notifempty", "copytruncate", "dateext"):
        if getattr(p, flag):
            lines.append(f"    {flag}")
    for opt in ("size", "maxsize", "create", "su"):
        value = getattr(p, opt)
        if value is not None:
            lines.append(f"    {opt} {' '.join(value.split())}")
    lines.append("}")
    return "\n".join(lines) + "\n"


class AddLogrotate(Action):
    name = "add_logrotate"
    Params = LogrotateParams
    description = "write a logrotate rule file (e.g. into a logrotate.d directory under the roots)"

    def _given(self, p: LogrotateParams) -> str:
        return f"{p.dir.rstrip('/')}/{p.name}"

    def _target(self, p: LogrotateParams, ctx: ActionContext):
        # Only the rule file is written; the log paths are text in it (logrotate acts on them later).
        return ctx.confine(self._given(p), what="logrotate rule")

    def plan(self, params, ctx: ActionContext) -> Plan:
        p: LogrotateParams = self.validate(params)  # type: ignore[assignment]
        path = self._target(p, ctx)
        label = ctx.label(path)
        before = read_text(path, label)
        after = render_logrotate(p)
        return Plan(action=self.name, params=p.model_dump(exclude_none=True),
                    summary=f"{'add' if before is None else 'replace'} logrotate rule {label} for {', '.join(p.paths)} "
                            f"({p.frequency}, keep {p.rotate})",
                    changes=[FileChange(path=str(path), label=label, before=before, after=after, mode=0o644)])

    def postcondition(self, params) -> Observe | None:
        p: LogrotateParams = self.validate(params)  # type: ignore[assignment]
        return Observe(source="probe", match=re.escape(" ".join(p.paths)) + r"\s*\{")

    def probe(self, params, ctx: ActionContext) -> list[Signal]:
        p: LogrotateParams = self.validate(params)  # type: ignore[assignment]
        return file_probe(ctx, self._target(p, ctx), self._given(p))

    def probe_spec(self, params, ctx: ActionContext) -> dict | None:
        p: LogrotateParams = self.validate(params)  # type: ignore[assignment]
        return {"kind": "stat", "path": str(self._target(p, ctx))}
