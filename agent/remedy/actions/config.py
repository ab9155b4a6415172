"""set_config: one key of an INI, YAML, JSON, TOML or .env file, the rest of the file left as it was."""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import Any, Literal

from pydantic import field_validator

from agent.models import Observe, Signal
from agent.remedy.actions.common import edited, existing_text, labels, probe_signal, scalar_text, services_for
from agent.remedy.base import Action, ActionContext, FileChange, Plan, RefusedError, StrictParams
from agent.remedy.editors import EditError, envfile, ini, structured

Format = Literal["ini", "yaml", "json", "toml", "env"]
_SUFFIX = {".ini": "ini", ".cfg": "ini", ".conf": "ini", ".cnf": "ini", ".properties": "ini",
           ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml", ".env": "env"}


# A deploy template is a file of its target's format with a template suffix (shop.ini.j2).
_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".tmpl", ".tpl", ".template", ".erb", ".in")


def detect_format(path: str | PurePath) -> str | None:
    p = PurePath(path)
    if p.suffix.lower() in _TEMPLATE_SUFFIXES and p.stem:
        p = PurePath(p.stem)
    if p.name == ".env" or p.name.startswith(".env."):
        return "env"
    return _SUFFIX.get(p.suffix.lower())


class SetConfigParams(StrictParams):
    file: str
    key: str
    value: str | bool | int | float | None | list[Any] | dict[str, Any]
    section: str | None = None
    format: Format | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


def read_value(text: str, fmt: str, key: str, section: str | None) -> tuple[bool, Any]:
    """(is set, value) of a key in a file's text."""
    if fmt == "ini":
        _, value = ini.get_value(text, key, section)
        return value is not None, value
    if fmt == "env":
        value = envfile.get_value(text, key)
        return value is not None, value
    return structured.get_value(text, fmt, key)


def write_value(text: str, fmt: str, key: str, value: Any, section: str | None) -> str:
    if fmt in ("ini", "env") and isinstance(value, (dict, list)):
        raise RefusedError(f"set_config: a {fmt} file holds text values, not {type(value).__name__}s")
    if fmt == "ini":
        return ini.set_value(text, key, scalar_text(value), section)
    if fmt == "env":
        return envfile.set_value(text, key, scalar_text(value))
    return structured.set_value(text, fmt, key, value)


class SetConfig(Action):
    name = "set_config"
    Params = SetConfigParams
    description = "set one key in an ini, yaml, json, toml or .env file, keeping comments and everything else"

    def _target(self, p: SetConfigParams, ctx: ActionContext) -> tuple[Path, str, str]:
        path = ctx.confine(p.file)
        label = ctx.label(path)
        fmt = p.format or detect_format(path) or detect_format(p.file)
        if fmt is None:
            raise RefusedError(f"set_config: cannot tell the format of {label}; give params.format "
                               "(ini, yaml, json, toml or env)")
        if p.section is not None and fmt != "ini":
            raise RefusedError(f"set_config: params.section is for ini files; {label} is {fmt} (use a dotted key)")
        return path, label, fmt

    def plan(self, params, ctx: ActionContext) -> Plan:
        p: SetConfigParams = self.validate(params)  # type: ignore[assignment]
        path, label, fmt = self._target(p, ctx)
        before = existing_text(path, label)
        after = edited(write_value, before, fmt, p.key, p.value, p.section, label=label)
        where = f" [{p.section}]" if p.section else ""
        return Plan(action=self.name, params=p.model_dump(exclude_none=True),
                    summary=f"set {p.key} = {scalar_text(p.value)} in {label}{where} ({fmt})",
                    changes=[FileChange(path=str(path), label=label, before=before, after=after)],
                    services=services_for(path, ctx) if before != after else [])

    def postcondition(self, params) -> Observe | None:
        p: SetConfigParams = self.validate(params)  # type: ignore[assignment]
        return Observe(source="probe",
                       match=rf"{re.escape(p.key)}\s*[=:]\s*{re.escape(scalar_text(p.value))}(?:\s|$)")

    def probe(self, params, ctx: ActionContext) -> list[Signal]:
        p: SetConfigParams = self.validate(params)  # type: ignore[assignment]
        path, label, fmt = self._target(p, ctx)
        return key_probe(ctx, path, p.file, fmt, p.key, p.section)

    def probe_spec(self, params, ctx: ActionContext) -> dict[str, Any] | None:
        p: SetConfigParams = self.validate(params)  # type: ignore[assignment]
        key = f"{p.section}.{p.key}" if p.section else p.key
        return {"kind": "config_key", "file": p.file, "key": key}


def key_probe(ctx: ActionContext, path: Path, given: str, fmt: str, key: str, section: str | None = None) -> list[Signal]:
    """The `config_key` probe's wording: `<file>: <key> = <value>` or `<file>: <key> is not set`."""
    from agent.remedy.backup import read_text

    names = labels(path, given)
    try:
        text = read_text(path, given)
    except RefusedError as exc:
        return [probe_signal(ctx, f"{name}: cannot read: {exc}", file=str(path)) for name in names]
    if text is None:
        return [probe_signal(ctx, f"{name}: no such file or directory", file=str(path)) for name in names]
    try:
        found, value = read_value(text, fmt, key, section)
    except (EditError, RefusedError) as exc:  # the file may have been broken since: that is the finding
        return [probe_signal(ctx, f"{name}: cannot read {key}: {exc}", file=str(path), key=key) for name in names]
    return [probe_signal(ctx, f"{name}: {key} = {probe_text(value)}" if found else f"{name}: {key} is not set",
                         file=str(path), key=key) for name in names]


def probe_text(value: Any) -> str:
    """Values as the analysis probes print them (null, true/false, JSON lists)."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        import json

        return json.dumps(value, default=str)
    return scalar_text(value)
