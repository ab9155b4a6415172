"""set_crontab and set_env: a crontab FILE's jobs and environment, and a key of an environment file.

Crontab files are edited as files under the remedy roots; the `crontab`
command is never run against the system.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from agent.models import Observe, Signal
from agent.remedy.actions.common import edited, file_probe, probe_signal, services_for
from agent.remedy.backup import read_text
from agent.remedy.base import Action, ActionContext, FileChange, Plan, StrictParams
from agent.remedy.editors import crontab, envfile


class SetCrontabParams(StrictParams):
    file: str
    match: str | None = Field(default=None, description="regex searched in the command of the job to change")
    schedule: str | None = None
    command: str | None = None
    user: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    system: bool | None = Field(default=None, description="system format (a user field per job); "
                                                          "default: when user is given or the file is in a cron.d")

    @field_validator("match")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


def _system(p: SetCrontabParams, path: Path) -> bool:
    if p.system is not None:
        return p.system
    return p.user is not None or path.parent.name == "cron.d" or path.name == "crontab"


class SetCrontab(Action):
    name = "set_crontab"
    Params = SetCrontabParams
    description = "add or change a job (schedule, command, its environment) or a variable in a crontab file"

    def plan(self, params, ctx: ActionContext) -> Plan:
        p: SetCrontabParams = self.validate(params)  # type: ignore[assignment]
        path = ctx.confine(p.file, what="crontab file")
        label = ctx.label(path)
        before = read_text(path, label)
        after = edited(crontab.edit, before or "", system=_system(p, path), match=p.match, schedule=p.schedule,
                       command=p.command, user=p.user, env=p.env, label=label)
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
                    changes=[FileChange(path=str(path), label=label, before=before, after=after, mode=0o644)],
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
        return file_probe(ctx, ctx.confine(p.file, what="crontab file"))


class SetEnvParams(StrictParams):
    file: str
    key: str
    value: str
    export: bool | None = None


class SetEnv(Action):
    name = "set_env"
    Params = SetEnvParams
    description = "set a variable in a .env / environment file (created when absent, mode 0600)"

    def plan(self, params, ctx: ActionContext) -> Plan:
        p: SetEnvParams = self.validate(params)  # type: ignore[assignment]
        path = ctx.confine(p.file)
        label = ctx.label(path)
        before = read_text(path, label)
        after = edited(envfile.set_value, before or "", p.key, p.value, export=p.export, label=label)
        return Plan(action=self.name, params=p.model_dump(exclude_none=True),
                    summary=f"set {p.key}={p.value} in {label}",
                    changes=[FileChange(path=str(path), label=label, before=before, after=after, mode=0o600)],
                    services=services_for(path, ctx) if before != after else [])

    def postcondition(self, params) -> Observe | None:
        p: SetEnvParams = self.validate(params)  # type: ignore[assignment]
        return Observe(source="probe", match=rf"{re.escape(p.key)}\s*=\s*{re.escape(p.value)}$")

    def probe(self, params, ctx: ActionContext) -> list[Signal]:
        p: SetEnvParams = self.validate(params)  # type: ignore[assignment]
        path = ctx.confine(p.file)
        label = ctx.label(path)
        text = read_text(path, label)
        if text is None:
            return [probe_signal(ctx, f"{label}: no such file", file=str(path))]
        value = envfile.get_value(text, p.key)
        msg = f"{label}: {p.key} = {value}" if value is not None else f"{label}: {p.key} is not set"
        return [probe_signal(ctx, msg, file=str(path), key=p.key)]
