"""restart_service and run_command: configured argv only (remedy.services / remedy.commands), never a shell."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from agent.remedy.base import Action, ActionContext, Plan, RefusedError, StrictParams


class RestartServiceParams(StrictParams):
    service: str


class RestartService(Action):
    name = "restart_service"
    Params = RestartServiceParams
    description = "restart a service through its configured command (remedy.services.NAME.restart)"

    def plan(self, params, ctx: ActionContext) -> Plan:
        p: RestartServiceParams = self.validate(params)  # type: ignore[assignment]
        svc = ctx.cfg.remedy.services.get(p.service)
        if svc is None or not svc.restart:
            known = sorted(n for n, s in ctx.cfg.remedy.services.items() if s.restart)
            raise RefusedError(f"restart_service: no restart command is configured for {p.service!r} "
                               f"(remedy.services.{p.service}.restart); configured: {', '.join(known) or 'none'}")
        return Plan(action=self.name, params=p.model_dump(), summary=f"restart {p.service}",
                    commands=[list(svc.restart)])


class RunCommandParams(StrictParams):
    command: str | None = Field(default=None, description="a key of remedy.commands")
    name: str | None = Field(default=None, description="same as command")
    args: list[str] = Field(default_factory=list, description="appended to the configured argv, each one literal")

    @model_validator(mode="after")
    def _which(self) -> "RunCommandParams":
        if self.command is None and self.name is None:
            raise ValueError("missing the command: give command (a key of remedy.commands)")
        if self.command is not None and self.name is not None and self.command != self.name:
            raise ValueError("give command (or name), not both")
        self.command = self.command or self.name
        self.name = None
        return self

    @field_validator("args")
    @classmethod
    def _args(cls, v: list[str]) -> list[str]:
        for a in v:
            if "\x00" in a:
                raise ValueError("an argument contains a NUL byte")
        return v


class RunCommand(Action):
    name = "run_command"
    Params = RunCommandParams
    description = "run an allow-listed command by name (remedy.commands.NAME: argv), arguments passed literally"

    def plan(self, params, ctx: ActionContext) -> Plan:
        p: RunCommandParams = self.validate(params)  # type: ignore[assignment]
        assert p.command is not None
        argv = ctx.cfg.remedy.commands.get(p.command)
        if not argv:
            known = sorted(ctx.cfg.remedy.commands)
            raise RefusedError(f"run_command: {p.command!r} is not an allow-listed command (remedy.commands); "
                               f"allowed: {', '.join(known) or 'none'}")
        shown = " ".join([p.command] + [repr(a) if re.search(r"\s", a) else a for a in p.args])
        return Plan(action=self.name, params=p.model_dump(exclude_none=True), summary=f"run {shown}",
                    commands=[list(argv) + p.args])
