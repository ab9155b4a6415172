"""Crontab files (user format `m h dom mon dow command`, or system format with a user field) edited line by line.

- a job is chosen by `match` (a regex searched in its command) or by its exact command;
- its schedule and/or command change in place, or a new line is added;
- `env` either prefixes the chosen job's command with `VAR=value` (the job's own
  environment) or, with no job given, sets crontab-wide `VAR=value` lines before
  the first job.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from agent.remedy.editors import EditError, newline_of, one_line

SPECIAL = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_ENV_LINE = re.compile(r"^(?P<indent>[ \t]*)(?P<key>[A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*(?P<value>.*)$")
_JOB = re.compile(r"^(?P<sched>[ \t]*(?:@[A-Za-z]+|\S+[ \t]+\S+[ \t]+\S+[ \t]+\S+[ \t]+\S+))(?P<sep>[ \t]+)(?P<rest>.*)$")
_PREFIX_ASSIGN = re.compile(r"""[ \t]*(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>'[^']*'|"(?:[^"\\]|\\.)*"|[^ \t'"]*)(?=[ \t])""")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Job:
    index: int
    schedule: str          # as written (leading whitespace included)
    sep: str
    user: str | None
    user_sep: str
    command: str
    eol: str


def valid_schedule(schedule: str) -> bool:
    s = schedule.strip()
    if s.startswith("@"):
        return s in SPECIAL
    from croniter import croniter

    return len(s.split()) == 5 and croniter.is_valid(s)


def _split(line: str) -> tuple[str, str]:
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith(("\n", "\r")):
        return line[:-1], line[-1]
    return line, ""


def jobs(text: str, system: bool) -> list[Job]:
    found = []
    for i, raw in enumerate(text.splitlines(keepends=True)):
        body, eol = _split(raw)
        if not body.strip() or body.lstrip().startswith("#") or _ENV_LINE.match(body):
            continue
        m = _JOB.match(body)
        if not m or not valid_schedule(m.group("sched")):
            continue
        rest = m.group("rest")
        user, user_sep = None, ""
        if system:
            um = re.match(r"(\S+)([ \t]+)(.*)$", rest)
            if not um:
                continue
            user, user_sep, rest = um.group(1), um.group(2), um.group(3)
        found.append(Job(i, m.group("sched"), m.group("sep"), user, user_sep, rest, eol))
    return found


def _quote(value: str) -> str:
    # `%` ends a cron command unless escaped.
    return shlex.quote(value).replace("%", "\\%")


def _with_env(command: str, env: dict[str, str]) -> str:
    """The command with its leading VAR=value assignments set to `env` (others kept, new ones appended to them)."""
    assigns: list[tuple[str, str]] = []
    pos = 0
    while True:
        m = _PREFIX_ASSIGN.match(command, pos)
        if not m:
            break
        assigns.append((m.group("key"), m.group("value")))
        pos = m.end()
    body = command[pos:].lstrip(" \t")
    seen = set()
    out = []
    for key, value in assigns:
        if key in env:
            out.append(f"{key}={_quote(env[key])}")
            seen.add(key)
        else:
            out.append(f"{key}={value}")
    out += [f"{k}={_quote(v)}" for k, v in env.items() if k not in seen]
    return " ".join(out + [body])


def edit(text: str, *, system: bool, match: str | None = None, schedule: str | None = None,
         command: str | None = None, user: str | None = None, env: dict[str, str] | None = None) -> str:
    env = dict(env or {})
    for value, what in ((schedule, "schedule"), (command, "command"), (user, "user"), (match, "match")):
        if value is not None:
            one_line(value, what)
    for k, v in env.items():
        if not _VAR.match(k):
            raise EditError(f"not a valid environment variable name: {k!r}")
        one_line(v, f"env.{k}")
    if schedule is not None and not valid_schedule(schedule):
        raise EditError(f"not a valid cron schedule: {schedule!r}")
    if user is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", user):
        raise EditError(f"not a valid user name: {user!r}")
    if schedule is None and command is None and not env:
        raise EditError("nothing to change: give schedule, command or env")
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom):]
    nl = newline_of(body)
    lines = body.splitlines(keepends=True)
    all_jobs = jobs(body, system)

    chosen: list[Job] = []
    if match is not None:
        try:
            rx = re.compile(match)
        except re.error as exc:
            raise EditError(f"match is not a valid regular expression: {exc}") from None
        chosen = [j for j in all_jobs if rx.search(j.command)]
        if len(chosen) > 1:
            raise EditError(f"match {match!r} selects {len(chosen)} jobs (lines "
                            f"{', '.join(str(j.index + 1) for j in chosen)}); make it specific to one")
    elif command is not None:
        chosen = [j for j in all_jobs if _with_env(j.command, {}) == _with_env(command, {})
                  or j.command.strip() == command.strip()][-1:]

    if chosen:
        job = chosen[0]
        sched = (schedule if schedule is not None else job.schedule)
        sep = job.sep if schedule is None else " "
        new_user = user if user is not None else job.user
        cmd = command if command is not None else job.command
        if env:
            cmd = _with_env(cmd, env)
        user_part = f"{new_user}{job.user_sep or ' '}" if system and new_user else ""
        lines[job.index] = f"{sched}{sep}{user_part}{cmd}{job.eol or nl}"
        return bom + "".join(lines)

    if match is not None and (schedule is None or command is None):
        raise EditError(f"no job's command matches {match!r}; to add one give schedule and command")
    if command is not None:
        if schedule is None:
            raise EditError("a new job needs a schedule")
        if system and user is None:
            raise EditError("this is a system crontab (a user field per job); give params.user")
        cmd = _with_env(command, env) if env else command
        out = list(lines)
        if out and not _split(out[-1])[1]:
            out[-1] += nl
        out.append(f"{schedule} {user + ' ' if system else ''}{cmd}{nl}")
        return bom + "".join(out)
    return bom + _set_globals(lines, all_jobs, env, nl)


def _set_globals(lines: list[str], all_jobs: list[Job], env: dict[str, str], nl: str) -> str:
    """Crontab-wide VAR=value lines: rewritten where they are, new ones just before the first job."""
    out = list(lines)
    first_job = all_jobs[0].index if all_jobs else len(out)
    done = set()
    insert_at = first_job
    last_env = -1
    for i, raw in enumerate(out[:first_job]):
        body, eol = _split(raw)
        m = _ENV_LINE.match(body)
        if m:
            last_env = i
            if m.group("key") in env:
                out[i] = f"{m.group('indent')}{m.group('key')}={env[m.group('key')]}{eol or nl}"
                done.add(m.group("key"))
    if last_env >= 0:
        insert_at = last_env + 1
    new = [f"{k}={v}{nl}" for k, v in env.items() if k not in done]
    if new:
        if insert_at > 0 and not _split(out[insert_at - 1])[1]:
            out[insert_at - 1] += nl
        out[insert_at:insert_at] = new
    return "".join(out)
