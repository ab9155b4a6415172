"""The allow-list: the only actions a fix may name. Anything else is refused."""

from __future__ import annotations

from agent.remedy.actions.config import SetConfig
from agent.remedy.actions.cron import SetCrontab, SetEnv
from agent.remedy.actions.files import AddLogrotate, PatchFile, WriteFile
from agent.remedy.actions.service import RestartService, RunCommand
from agent.remedy.base import Action, RefusedError

ACTIONS: dict[str, Action] = {a.name: a for a in (
    SetConfig(), WriteFile(), PatchFile(), AddLogrotate(), SetCrontab(), SetEnv(), RestartService(), RunCommand(),
)}


def names() -> list[str]:
    return list(ACTIONS)


def get_action(name: str) -> Action:
    action = ACTIONS.get(name)
    if action is None:
        raise RefusedError(f"unknown action {name!r}: only {', '.join(ACTIONS)} are allowed")
    return action
