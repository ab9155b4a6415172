"""Pure parsing of log text: a line's level and time, and multi-line entries.

No I/O here: agent/sensors/logs.py feeds it lines with their byte offsets.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo

# ---------------------------------------------------------------------------- levels

_WORD_LEVEL = {
    "emerg": "CRITICAL", "emergency": "CRITICAL", "alert": "CRITICAL", "crit": "CRITICAL", "critical": "CRITICAL",
    "fatal": "CRITICAL", "panic": "CRITICAL",
    "severe": "ERROR", "error": "ERROR", "err": "ERROR", "fail": "ERROR",
    "warn": "WARNING", "warning": "WARNING",
    "notice": "INFO", "info": "INFO", "log": "INFO",
    "debug": "DEBUG", "dbug": "DEBUG", "trace": "DEBUG", "trce": "DEBUG", "fine": "DEBUG", "finer": "DEBUG",
    "finest": "DEBUG",
}
# Syslog severities 0..7 (RFC 5424): emerg alert crit err warning notice info debug.
_SYSLOG_SEVERITY = ("CRITICAL", "CRITICAL", "CRITICAL", "ERROR", "WARNING", "INFO", "INFO", "DEBUG")
_GLOG = {"I": "INFO", "W": "WARNING", "E": "ERROR", "F": "CRITICAL"}

_PRI = re.compile(r"<(\d{1,3})>")
_GLOG_RE = re.compile(r"([IWEF])\d{4} \d\d:\d\d:\d\d")
_DOTNET = re.compile(r"(fail|crit|warn|info|dbug|trce): ", re.I)
# An uppercase level word anywhere near the start (Python logging, PostgreSQL, log4j, ...).
_UPPER = re.compile(
    r"(?<![\w/.-])(EMERG(?:ENCY)?|ALERT|CRIT(?:ICAL)?|FATAL|PANIC|SEVERE|ERROR|ERR|WARN(?:ING)?|NOTICE|INFO|LOG"
    r"|DEBUG[1-5]?|TRACE|FINE(?:R|ST)?)(?![\w/-])"
)
# A level in any case when it is tagged as one: [error], [core:error], level=warn, "level":"info", <crit>.
# Searched in the lowercased line, each only when its marker is present (cheap on lines without one).
_LEVEL_WORDS = r"(emerg(?:ency)?|alert|crit(?:ical)?|fatal|panic|severe|error|err|warn(?:ing)?|notice|info|debug|trace)"
_BRACKETED = re.compile(r"\[(?:\w+:)?" + _LEVEL_WORDS + r"\]")
_ANGLED = re.compile(r"<" + _LEVEL_WORDS + r">")
_KEYED = re.compile(r"(?<![\w-])(?:level|lvl|severity)[\"']?\s*[=:]\s*[\"']?" + _LEVEL_WORDS + r"\b")
# Without a level word, what the words say (kernel, systemd and many daemons log no level).
_INFER_ERROR = re.compile(
    r"(?<![/\w])(?:error|failed|failure|fatal|panic|panicked|exception|traceback|segfault|segmentation fault"
    r"|out of memory|oom-killer|oom_kill|killed process|core dumped|refused|denied|unreachable|timed out"
    r"|unable to|cannot|could not|not responding|reset by peer|broken pipe)(?![\w/]|\.\w)",
    re.I,
)
# An access-log request line ("GET /x HTTP/1.1" 503 ...): the status code says how it went.
_ACCESS_STATUS = re.compile(r'"(?:GET|POST|PUT|DELETE|HEAD|PATCH|OPTIONS|CONNECT|TRACE) [^"]*" ([1-5]\d\d) ')
_INFER_EXC = re.compile(r"\b[A-Z]\w*(?:Exception|Error)\b")
_INFER_WARNING = re.compile(r"\b(?:warn|warning|deprecated)\b", re.I)

LEVEL_RANK = {"DEBUG": 0, "INFO": 1, "WARNING": 2, "ERROR": 3, "CRITICAL": 4}
_HEAD = 200


_UPPER_TOKENS = {w: _WORD_LEVEL.get(w.lower().rstrip("12345"), "DEBUG") for w in (
    "EMERG", "EMERGENCY", "ALERT", "CRIT", "CRITICAL", "FATAL", "PANIC", "SEVERE", "ERROR", "ERR", "WARN", "WARNING",
    "NOTICE", "INFO", "LOG", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3", "DEBUG4", "DEBUG5", "TRACE", "FINE", "FINER",
    "FINEST")}
_UPPER_HINTS = ("EMERG", "ALERT", "CRIT", "FATAL", "PANIC", "SEVERE", "ERR", "WARN", "NOTICE", "INFO", "LOG", "DEBUG",
                "TRACE", "FINE")
_TOKEN_STRIP = "[]()<>{}|,;\"'"
_KV_PREFIXES = ("level=", "lvl=", "severity=")


def _token_level(head: str) -> str | None:
    """Fast path: a level as one of the first whitespace-separated tokens ('ERROR', '[error]', 'level=warn', 'ERROR:')."""
    for tok in head.split(None, 5)[:5]:
        core = tok.strip(_TOKEN_STRIP)
        word = core.split(":", 1)[0] if ":" in core else core
        level = _UPPER_TOKENS.get(word)
        if level is not None:
            return level
        if tok[0] == "[":
            inner = core.rsplit(":", 1)[-1].lower()
            if inner in _WORD_LEVEL and inner not in ("log", "fail", "dbug", "trce"):
                return _WORD_LEVEL[inner]
        elif core.startswith(_KV_PREFIXES):
            value = core.split("=", 1)[1].strip("\"'").lower()
            if value in _WORD_LEVEL:
                return _WORD_LEVEL[value]
    return None


def explicit_level(line: str) -> str | None:
    """The level the line itself states, or None."""
    head = line[:_HEAD]
    first = head[:1]
    if first == "<":
        m = _PRI.match(head)
        if m and int(m.group(1)) < 192:
            return _SYSLOG_SEVERITY[int(m.group(1)) % 8]
    elif first in "IWEF" and head[1:2].isdigit():
        m = _GLOG_RE.match(head)
        if m:
            return _GLOG[m.group(1)]
    m = _DOTNET.match(head)
    if m:
        return _WORD_LEVEL[m.group(1).lower()]
    level = _token_level(head)
    if level is not None:
        return level
    # Slow path: a level word further in, or tagged inside a token (JSON, key=value without spaces).
    up = _UPPER.search(head) if any(h in head for h in _UPPER_HINTS) else None
    low = head.lower()
    end = up.start() + 1 if up else _HEAD
    tag = None
    for marker, rx in (("[", _BRACKETED), ("<", _ANGLED)):
        if marker in head:
            m = rx.search(low, 0, end + 24)
            if m and m.start() < end and (tag is None or m.start() < tag.start()):
                tag = m
    if "level" in low or "lvl" in low or "severity" in low:
        m = _KEYED.search(low, 0, end + 24)
        if m and m.start() < end and (tag is None or m.start() < tag.start()):
            tag = m
    if tag is not None:
        return _WORD_LEVEL[tag.group(1)]
    if up:
        word = up.group(1).lower()
        return _WORD_LEVEL.get(word.rstrip("12345"), "DEBUG")
    return None


_INFER_HINTS = (
    "error", "fail", "fatal", "panic", "exception", "traceback", "segfault", "segmentation", "out of memory", "oom",
    "killed process", "core dumped", "refused", "denied", "unreachable", "timed out", "unable to", "cannot",
    "could not", "not responding", "reset by peer", "broken pipe", "warn", "deprecated",
)


def inferred_level(text: str) -> str | None:
    head = text[:2000]
    if '"' in head and "HTTP/" in head:
        m = _ACCESS_STATUS.search(head, 0, 1000)
        if m:
            status = m.group(1)
            return "ERROR" if status[0] == "5" else "WARNING" if status[0] == "4" else "INFO"
    low = head.lower()
    if not any(h in low for h in _INFER_HINTS):
        return None
    if _INFER_ERROR.search(head) or _INFER_EXC.search(head):
        return "ERROR"
    if _INFER_WARNING.search(head):
        return "WARNING"
    return None


def entry_level(lines: list[str], default: str = "INFO", infer: bool = True) -> str:
    """The first line's stated level; else (if `infer`) what the entry's words say; else `default`."""
    level = explicit_level(lines[0])
    if level is None and infer:
        level = inferred_level("\n".join(lines[:20]) if len(lines) > 1 else lines[0])
    return level or default


# ---------------------------------------------------------------------------- timestamps

_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?[ ]?(Z|z|[+-]\d\d(?::?\d\d)?|UTC|GMT)?(?!\d)"
)
_SLASH = re.compile(r"(\d{4})/(\d\d)/(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?")
_CLF = re.compile(r"\[(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-]\d{4})\]")
_SYSLOG_TS = re.compile(r"(?:<\d{1,3}>)?([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?!\d)")
_APACHE = re.compile(r"\[[A-Z][a-z]{2} ([A-Z][a-z]{2}) (\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))? (\d{4})\]")


def resolve_tz(name: str | None) -> tzinfo | None:
    """A zone for naive timestamps; None means the machine's local time (DST-aware via the C library)."""
    if not name or name.lower() == "local":
        return None
    if name.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", name)
    if m:
        delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        return timezone(delta if m.group(1) == "+" else -delta)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def local_zone_name() -> str | None:
    """IANA name of the machine's zone when it can be found ($TZ, /etc/timezone, /etc/localtime)."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and "/" in tz and not tz.startswith("/"):
        return tz
    try:
        with open("/etc/timezone", encoding="utf-8") as fh:
            name = fh.read().strip()
            if name:
                return name
    except OSError:
        pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return None


def _offset(text: str) -> tzinfo:
    if text in ("Z", "z", "UTC", "GMT"):
        return timezone.utc
    sign = 1 if text[0] == "+" else -1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _micro(frac: str | None) -> int:
    return int((frac or "0")[:6].ljust(6, "0"))


_LOCAL_OFFSETS: dict[tuple[int, int, int, int], timedelta] = {}


def _aware(naive: datetime, tz: tzinfo | None) -> datetime:
    if tz is None:
        # A naive time is local time. Asking the C library costs microseconds per line; zones change
        # their offset on the hour, so one answer per hour serves every line in it.
        key = (naive.year, naive.month, naive.day, naive.hour)
        offset = _LOCAL_OFFSETS.get(key)
        if offset is None:
            if len(_LOCAL_OFFSETS) > 4096:
                _LOCAL_OFFSETS.clear()
            offset = naive.replace(minute=0, second=0, microsecond=0).astimezone().utcoffset() or timedelta(0)
            _LOCAL_OFFSETS[key] = offset
        return (naive - offset).replace(tzinfo=timezone.utc)
    return naive.replace(tzinfo=tz).astimezone(timezone.utc)


def _iso(m: re.Match, tz: tzinfo | None) -> datetime:
    zone = m.group(8)
    text = m.group(0)
    if zone is None or zone in ("Z", "z") or zone[0] in "+-":
        try:
            dt = datetime.fromisoformat(text.replace(" Z", "Z").replace(" +", "+").replace(" -", "-")
                                        if " " in text[19:] else text)
        except ValueError:
            dt = None
        if dt is not None:
            return dt.astimezone(timezone.utc) if dt.tzinfo else _aware(dt, tz)
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    naive = datetime(y, mo, d, h, mi, s, _micro(m.group(7)))
    if zone:
        return naive.replace(tzinfo=_offset(zone)).astimezone(timezone.utc)
    return _aware(naive, tz)


def line_time(line: str, now: datetime, tz: tzinfo | None = None) -> datetime | None:
    """The time a line states near its start (ISO 8601, syslog, nginx, Apache, common log format), in UTC."""
    head = line[:120]
    try:
        # The common cases first, anchored at the start (cheap): ISO 8601 and syslog.
        m = _ISO.match(head) or (_ISO.match(head, 1) if head[:1] == "[" else None)
        if m:
            return _iso(m, tz)
        m = _SYSLOG_TS.match(head)
        if m and m.group(1).lower() in _MONTHS:
            mo = _MONTHS[m.group(1).lower()]
            naive = datetime(now.year, mo, int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)),
                             _micro(m.group(6)))
            ts = _aware(naive, tz)
            if ts - now > timedelta(days=1):  # syslog has no year: December lines read in January
                ts = _aware(naive.replace(year=now.year - 1), tz)
            return ts
        if "/" in head:
            m = _CLF.search(head) if "[" in head else None
            if m and m.group(2).lower() in _MONTHS:
                naive = datetime(int(m.group(3)), _MONTHS[m.group(2).lower()], int(m.group(1)),
                                 int(m.group(4)), int(m.group(5)), int(m.group(6)))
                return naive.replace(tzinfo=_offset(m.group(7))).astimezone(timezone.utc)
            m = _SLASH.search(head, 0, 70)
            if m and m.start() < 48:
                y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
                return _aware(datetime(y, mo, d, h, mi, s, _micro(m.group(7))), tz)
        if "-" in head[:60]:
            m = _ISO.search(head)
            if m and m.start() < 48:
                return _iso(m, tz)
        if head[:1] == "[":
            m = _APACHE.match(head)
            if m and m.group(1).lower() in _MONTHS:
                naive = datetime(int(m.group(7)), _MONTHS[m.group(1).lower()], int(m.group(2)), int(m.group(3)),
                                 int(m.group(4)), int(m.group(5)), _micro(m.group(6)))
                return _aware(naive, tz)
    except (ValueError, OverflowError):
        return None  # digits that look like a time but are not one (month 13, ...)
    return None


# ---------------------------------------------------------------------------- multi-line entries

# Lines that continue the entry above them: indented frames, Python and Java trace markers.
_CONT = re.compile(
    r"[ \t]|Traceback \(most recent call last\)|Caused by:|Suppressed:|at [\w$.<]"
    r"|\.\.\. \d+ (?:more|common frames omitted)|During handling of the above exception"
    r"|The above exception was the direct cause"
)
_PY_EXC_LINE = re.compile(r"[A-Za-z_][\w.]*(?::|$)")  # 'ValueError: bad' after a Python trace's frames
_JAVA_EXC_LINE = re.compile(r"(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable)\b")


@dataclass
class Entry:
    offset: int  # byte offset of the entry's first line
    lines: list[str] = field(default_factory=list)
    dropped: int = 0  # continuation lines beyond max_entry_lines
    py_trace: bool = False
    _prev_indented: bool = False

    def text(self) -> str:
        lines = self.lines
        end = len(lines)
        while end > 1 and not lines[end - 1].strip():
            end -= 1
        body = "\n".join(lines[:end]) if end > 1 else lines[0]
        if self.dropped:
            body += f"\n... {self.dropped} more lines"
        return body

    def may_continue(self) -> bool:
        """Could the next bytes written still belong to this entry (a trace cut mid-way)?"""
        last = ""
        for line in reversed(self.lines):
            if line.strip():
                last = line
                break
        if len(self.lines) > 1 and self.py_trace and not last[:1].isspace() and _PY_EXC_LINE.match(last):
            return False  # a Python trace ends with its exception line
        return bool(_CONT.match(last)) or last.rstrip().endswith(":") or bool(_JAVA_EXC_LINE.match(last))


class Grouper:
    """Groups lines into entries; continuation lines join the entry that started them."""

    def __init__(self, multiline: bool = True, max_lines: int = 500):
        self.multiline = multiline
        self.max_lines = max_lines

    def group(self, lines: list[tuple[int, str]]) -> list[Entry]:
        entries: list[Entry] = []
        cur: Entry | None = None
        multiline, max_lines, cont = self.multiline, self.max_lines, _CONT.match
        for off, text in lines:
            if not text or text.isspace():
                if cur is not None and multiline and len(cur.lines) > 1:
                    self._add(cur, text, max_lines)
                continue
            if multiline and cur is not None:
                if (
                    cont(text)
                    or (cur.py_trace and cur._prev_indented and _PY_EXC_LINE.match(text))
                    or (_JAVA_EXC_LINE.match(text) and cur.lines[-1].strip())
                ):
                    self._add(cur, text, max_lines)
                    continue
            cur = Entry(off, [text])
            if text.startswith("Traceback (most recent call last)"):
                cur.py_trace = True
            entries.append(cur)
        return entries

    @staticmethod
    def _add(cur: Entry, text: str, max_lines: int) -> None:
        if text.startswith("Traceback (") or text.lstrip().startswith("Traceback ("):
            cur.py_trace = True
        cur._prev_indented = text[:1] in (" ", "\t")
        if len(cur.lines) >= max_lines:
            cur.dropped += 1
        else:
            cur.lines.append(text)
