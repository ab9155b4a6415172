"""set_crontab and set_env: a crontab FILE's jobs and environment, and a variable of an environment file.

Crontab files are edited as files under the remedy roots; the `crontab`
command is never run. A user's crontab without an explicit `file` is
`crontabs/<user>` under the roots (Debian's /var/spool/cron/crontabs/<user>
when /var/spool/cron is a root).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.models import check_regex, Observe, Signal
from agent.remedy.actions.common import crontab_probe, edited, file_probe, services_for
from agent.remedy.backup import read_text
from agent.remedy.base import Action, ActionContext, FileChange, Plan, RefusedError, StrictParams
from agent.remedy.editors import crontab, envfile

_USER = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"


def user_crontab(user: str) -> str:
    return f"crontabs/{user}"


def _valid_user(v: str | None) -> str | None:
    if v is not None and not re.fullmatch(_USER, v):
        raise ValueError("not a valid user name")
    return v


class SetCrontabParams(StrictParams):
    file: str | None = Field(default=None, description="the crontab file; default crontabs/<user> under the roots")
    user: str | None = Field(default=None, description="whose crontab (and a new job's user field in a system crontab)")
    match: str | None = Field(default=None, description="regex searched in the command of the job to change")
    schedule: str | None = None
    command: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    system: bool | None = Field(default=None, description="system format (a user field per job); "
                                                          "default: when the file is in a cron.d or named crontab")

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        return _valid_user(v)

    @field_validator("match")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return check_regex(v)

    @model_validator(mode="after")
    def _whose(self) -> "SetCrontabParams":
        if self.file is None and self.user is None:
            raise ValueError("give the crontab file or the user whose crontab it is")
        return self

    @property
    def target(self) -> str:
        return self.file or user_crontab(self.user or "")


def _system(p: SetCrontabParams, path: Path) -> bool:
    if p.system is not None:
        return p.system
    return path.parent.name == "cron.d" or path.name == "crontab"


def _owner(user: str | None, path: Path) -> str:
    return user or path.name


class SetCrontab(Action):
    name = "set_crontab"
    Params = SetCrontabParams
    description = "add or change a job (schedule, command, its environment) or a variable in a crontab file"

    def plan(self, params, ctx: ActionContext) -> Plan:
        p: SetCrontabParams = self.validate(params)  # type: ignore[assignment]
        path = ctx.confine(p.target, what="crontab file")
        label = ctx.label(path)
        before = read_text(path, label)
        system = _system(p, path)
        after = edited(crontab.edit, before or "", system=system, match=p.match, schedule=p.schedule,
                       command=p.command, user=p.user if system else None, env=p.env, label=label)
        what = []
        if p.schedule:
            what.append(f"schedule {p.schedule}")
        if p.command:
            what.append(f"command {p.command!r}")
        if p.env:
            what.append("env " + " ".join(f"{k}={v}" for k, v in p.env.items()))
        job = f"the job matching {p.match!r}" if p.match else ("the job" if p.command else "crontab-wide")
        return Plan(action=self.name, params=p.model_dump(exclude_none=True),
                    summary=f"set {', '.join(what)} for {job} in {label}",
                    changes=[FileChange(path=str(path), label=label, before=before, after=after, mode=0o600)],
                    services=services_for(path, ctx) if before != after else [])

    def postcondition(self, params) -> Observe | None:
        p: SetCrontabParams = self.validate(params)  # type: ignore[assignment]
        parts = []
        if p.schedule:
            parts.append(r"\s+".join(re.escape(f) for f in p.schedule.split()))
        for k, v in p.env.items():
            parts.append(re.escape(f"{k}=") + r"['\"]?" + re.escape(v.replace("%", "\\%")))
        if p.command:
            parts.append(re.escape(p.command))
        elif p.match:
            parts.append(f"(?:{p.match})")
        return Observe(source="probe", match=".*".join(parts)) if parts else None

    def probe(self, params, ctx: ActionContext) -> list[Signal]:
        p: SetCrontabParams = self.validate(params)  # type: ignore[assignment]
        path = ctx.confine(p.target, what="crontab file")
        return crontab_probe(ctx, path, _owner(p.user, path)) + file_probe(ctx, path, p.target)

    def probe_spec(self, params, ctx: ActionContext) -> dict[str, Any] | None:
        p: SetCrontabParams = self.validate(params)  # type: ignore[assignment]
        path = ctx.confine(p.target, what="crontab file")
        return {"kind": "crontab", "file": p.target, "user": _owner(p.user, path)}


class SetEnvParams(StrictParams):
    key: str | None = None
    name: str | None = Field(default=None, description="same as key")
    value: str | None = None
    value_from: str | None = Field(default=None, description="an environment file under the roots to copy the value from")
    target: Literal["file", "crontab"] = "file"
    file: str | None = None
    user: str | None = Field(default=None, description="target crontab: whose crontab (default file crontabs/<user>)")
    export: bool | None = None

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        return _valid_user(v)

    @model_validator(mode="after")
    def _complete(self) -> "SetEnvParams":
        if self.key is not None and self.name is not None and self.key != self.name:
            raise ValueError("give key (or name), not both")
        if self.variable is None:
            raise ValueError("missing the variable: give key")
        if (self.value is None) == (self.value_from is None):
            raise ValueError("give exactly one of value and value_from")
        if self.target == "file" and self.file is None:
            raise ValueError("give the environment file (file)")
        if self.target == "crontab" and self.file is None and self.user is None:
            raise ValueError("target crontab needs the crontab file or the user whose crontab it is")
        return self

    @property
    def variable(self) -> str | None:
        return self.key or self.name

    @property
    def where(self) -> str:
        return self.file or user_crontab(self.user or "")


class SetEnv(Action):
    name = "set_env"
    Params = SetEnvParams
    description = ("set a variable in an environment file (created when absent, mode 0600), or crontab-wide in a "
                   "crontab (target crontab); the value given or copied from another environment file")

    def _value(self, p: SetEnvParams, ctx: ActionContext) -> str:
        if p.value is not None:
            return p.value
        assert p.value_from is not None and p.variable is not None
        source = ctx.confine(p.value_from, what="value_from file")
        text = read_text(source, p.value_from)
        if text is None:
            raise RefusedError(f"set_env: {p.value_from}: no such file, so there is no value to copy")
        value = envfile.get_value(text, p.variable)
        if value is None:
            raise RefusedError(f"set_env: {p.value_from} does not define {p.variable}")
        return value

    def plan(self, params, ctx: ActionContext) -> Plan:
        p: SetEnvParams = self.validate(params)  # type: ignore[assignment]
        assert p.variable is not None
        value = self._value(p, ctx)
        path = ctx.confine(p.where, what="crontab file" if p.target == "crontab" else "file")
        label = ctx.label(path)
        before = read_text(path, label)
        if p.target == "crontab":
            after = edited(crontab.edit, before or "", system=path.parent.name == "cron.d" or path.name == "crontab",
                           env={p.variable: value}, label=label)
        else:
            after = edited(envfile.set_value, before or "", p.variable, value, export=p.export, label=label)
        origin = f" (from {p.value_from})" if p.value_from else ""
        shown = "<hidden>" if p.value_from else value
        return Plan(action=self.name, params=p.model_dump(exclude_none=True),
                    summary=f"set {p.variable}={shown}{origin} in {label}",
                    changes=[FileChange(path=str(path), label=label, before=before, after=after, mode=0o600)],
                    services=services_for(path, ctx) if before != after else [])

    def postcondition(self, params) -> Observe | None:
        p: SetEnvParams = self.validate(params)  # type: ignore[assignment]
        if p.target == "crontab":
            return Observe(source="probe", match=rf"environment: .*\b{re.escape(p.variable or '')}=")
        if p.value is None:
            return Observe(source="probe", match=rf"{re.escape(p.variable or '')} = \S")
        return Observe(source="probe", match=rf"{re.escape(p.variable or '')}\s*=\s*{re.escape(p.value)}$")

    def probe(self, params, ctx: ActionContext) -> list[Signal]:
        from agent.remedy.actions.config import key_probe

        p: SetEnvParams = self.validate(params)  # type: ignore[assignment]
        path = ctx.confine(p.where)
        if p.target == "crontab":
            return crontab_probe(ctx, path, _owner(p.user, path)) + file_probe(ctx, path, p.where)
        return key_probe(ctx, path, p.where, "env", p.variable or "")

    def probe_spec(self, params, ctx: ActionContext) -> dict[str, Any] | None:
        p: SetEnvParams = self.validate(params)  # type: ignore[assignment]
        if p.target == "crontab":
            return {"kind": "crontab", "file": p.where, "user": _owner(p.user, ctx.confine(p.where))}
        return {"kind": "config_key", "file": p.where, "key": p.variable}
