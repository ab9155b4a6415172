"""Where an OpenClaw installation keeps things, read from its own files (no OpenClaw process needed).

Layout (openclaw/openclaw, src/config, src/cron/store.ts, src/state/openclaw-state-db.paths.ts,
src/logging/logger.ts):

- state dir: `$OPENCLAW_STATE_DIR` or `~/.openclaw` (a profile uses `~/.openclaw-<profile>`);
- config: `<state>/openclaw.json` (`$OPENCLAW_CONFIG_PATH` overrides), JSON5;
- cron, up to 2026.5.x: `<state>/cron/jobs.json` (`cron.store` overrides), runtime state in
  `jobs-state.json` next to it, run history in `runs/<jobId>.jsonl`;
- cron, 2026.6.1 and later: tables of `<state>/state/openclaw.sqlite`; the legacy files renamed `*.migrated`;
- gateway log: `/tmp/openclaw/openclaw-YYYY-MM-DD.log` (`logging.file` overrides), archives `...YYYY-MM-DD.N.log`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = "~/.openclaw"
DEFAULT_LOG_DIR = "/tmp/openclaw"
DEFAULT_HEARTBEAT_S = 30 * 60.0  # OpenClaw's default agents.defaults.heartbeat.every ("30m")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.I)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    raw = env.get("OPENCLAW_STATE_DIR") or DEFAULT_STATE_DIR
    return Path(os.path.expandvars(raw)).expanduser()


def looks_installed(state_dir: Path) -> bool:
    """An OpenClaw state dir: it holds the config, a cron store or the state database."""
    return state_dir.is_dir() and any(
        (state_dir / p).exists() for p in ("openclaw.json", "cron", "state/openclaw.sqlite", "agents"))


# --------------------------------------------------------------------------- JSON5 (openclaw.json)


def loads_json5(text: str) -> Any:
    """OpenClaw's config is JSON5: plain JSON first, else comments, trailing commas, unquoted keys and
    single-quoted strings are rewritten to JSON. Raises ValueError when it still does not parse."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    return json.loads(_json5_to_json(text))


def _json5_to_json(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            buf: list[str] = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    if text[j + 1] == "\n":  # JSON5 line continuation
                        j += 2
                        continue
                    buf.append(text[j:j + 2] if text[j + 1] != "'" else "'")
                    j += 2
                    continue
                buf.append('\\"' if text[j] == '"' else text[j])
                j += 1
            out.append('"' + "".join(buf) + '"')
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == ",":
            j = i + 1
            while j < n and (text[j].isspace() or text.startswith("//", j) or text.startswith("/*", j)):
                if text.startswith("//", j):
                    k = text.find("\n", j)
                    j = n if k < 0 else k
                elif text.startswith("/*", j):
                    k = text.find("*/", j + 2)
                    j = n if k < 0 else k + 2
                else:
                    j += 1
            if j < n and text[j] in "}]":
                i += 1  # a trailing comma
            else:
                out.append(c)
                i += 1
        elif c.isalpha() or c in "_$":
            m = re.match(r"[A-Za-z_$][\w$]*", text[i:])
            word = m.group(0) if m else c
            rest = text[i + len(word):].lstrip()
            if rest.startswith(":") and word not in ("true", "false", "null"):
                out.append(json.dumps(word))
            else:
                out.append({"Infinity": "1e999", "NaN": "null"}.get(word, word))
            i += len(word)
        else:
            out.append(c)
            i += 1
    return "".join(out)


def dig(data: Any, dotted: str, default: Any = None) -> Any:
    cur = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def duration_s(value: Any, default_unit: str = "m") -> float | None:
    """'30m', '1h', '45s', 90 (minutes) -> seconds; None when it is not a duration."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) * _UNIT_S[default_unit]
    m = _DURATION.match(str(value))
    if not m:
        return None
    return float(m.group(1)) * _UNIT_S[(m.group(2) or default_unit).lower()]


# --------------------------------------------------------------------------- the installation


class OpenClawInstall:
    """Paths of one installation, and its openclaw.json (re-read when the file changes)."""

    def __init__(self, state_dir: Path, config_file: Path | None = None, log: str | None = None):
        self.state_dir = state_dir
        self.config_file = config_file or self._default_config()
        self.log_override = log
        self._config: dict[str, Any] = {}
        self._config_sig: tuple[int, int] | None = None
        self.config_error: str | None = None

    def _default_config(self) -> Path:
        env = os.environ.get("OPENCLAW_CONFIG_PATH")
        return Path(env).expanduser() if env else self.state_dir / "openclaw.json"

    # ---------------------------------------------------------------- openclaw.json

    def config(self) -> dict[str, Any]:
        """The parsed openclaw.json ({} when absent or unreadable; the reason is in config_error)."""
        try:
            st = self.config_file.stat()
        except OSError:
            self._config, self._config_sig, self.config_error = {}, None, None
            return self._config
        sig = (st.st_mtime_ns, st.st_size)
        if sig != self._config_sig:
            self._config_sig = sig
            try:
                data = loads_json5(self.config_file.read_text(encoding="utf-8"))
                self._config = data if isinstance(data, dict) else {}
                self.config_error = None if isinstance(data, dict) else "not a JSON object"
            except (OSError, ValueError) as exc:
                self._config = {}
                self.config_error = f"{self.config_file}: cannot read: {exc}"
        return self._config

    # ---------------------------------------------------------------- cron

    @property
    def sqlite_path(self) -> Path:
        return self.state_dir / "state" / "openclaw.sqlite"

    @property
    def cron_store(self) -> Path:
        """jobs.json: `cron.store` from the config, else <state>/cron/jobs.json (also the SQLite store key)."""
        raw = dig(self.config(), "cron.store")
        if isinstance(raw, str) and raw.strip():
            p = Path(os.path.expandvars(raw.strip())).expanduser()
            return p if p.is_absolute() else (self.state_dir / p)
        return self.state_dir / "cron" / "jobs.json"

    @property
    def cron_state_file(self) -> Path:
        """jobs-state.json: the store path with '.json' replaced by '-state.json' (or '-state.json' appended)."""
        store = str(self.cron_store)
        return Path(store[:-5] + "-state.json" if store.endswith(".json") else store + "-state.json")

    @property
    def runs_dir(self) -> Path:
        return self.cron_store.parent / "runs"

    def cron_enabled_in_config(self) -> bool | None:
        value = dig(self.config(), "cron.enabled")
        return value if isinstance(value, bool) else None

    # ---------------------------------------------------------------- gateway log

    def log_pattern(self) -> str:
        """The gateway log to follow: the configured path, `logging.file`, else the dated default (a glob)."""
        if self.log_override:
            return self.log_override
        configured = dig(self.config(), "logging.file")
        if isinstance(configured, str) and configured.strip():
            return str(Path(os.path.expandvars(configured.strip())).expanduser())
        name = self.state_dir.name
        profile = name[len(".openclaw-"):] if name.startswith(".openclaw-") else ""
        prefix = f"openclaw-{profile}-" if profile else "openclaw-"
        # The date starts with a digit: another profile's openclaw-<name>-DATE.log does not match.
        return f"{DEFAULT_LOG_DIR}/{prefix}[0-9]*.log"

    # ---------------------------------------------------------------- heartbeat

    def heartbeat_every_s(self) -> float | None:
        """agents.defaults.heartbeat.every (else the shortest per-agent one, else 30 minutes); None = disabled."""
        cfg = self.config()
        raw = dig(cfg, "agents.defaults.heartbeat.every")
        if raw is None:
            agents = dig(cfg, "agents.list")
            found = [duration_s(dig(a, "heartbeat.every")) for a in agents or [] if isinstance(a, dict)]
            found = [f for f in found if f is not None]
            if found:
                positive = [f for f in found if f > 0]
                return min(positive) if positive else None
            return DEFAULT_HEARTBEAT_S
        every = duration_s(raw)
        if every is None:
            return DEFAULT_HEARTBEAT_S
        return every if every > 0 else None
