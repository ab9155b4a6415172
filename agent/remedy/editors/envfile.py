"""`.env` / environment files (`KEY=value`, optional `export`, quotes, comments) edited line by line.

Every assignment of the key is rewritten (loaders disagree on whether the first
or the last wins, so all of them get the new value), keeping its `export`, its
quoting style and any trailing comment; an absent key is appended.
"""

from __future__ import annotations

import re

from agent.remedy.editors import EditError, newline_of, one_line

_ASSIGN = re.compile(
    r"^(?P<indent>[ \t]*)(?P<export>export[ \t]+)?(?P<key>[A-Za-z_][A-Za-z0-9_.]*)(?P<sp1>[ \t]*)=(?P<sp2>[ \t]*)(?P<rest>.*)$"
)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_NEEDS_QUOTES = re.compile(r"[\s#\"'$`\\;&|<>()*?\[\]{}~]")


def _split_eol(line: str) -> tuple[str, str]:
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith(("\n", "\r")):
        return line[:-1], line[-1]
    return line, ""


def _closing(text: str, quote: str, start: int) -> int:
    """Index of the quote closing a value opened at start-1, or -1."""
    i = start
    while i < len(text):
        ch = text[i]
        if quote == '"' and ch == "\\":
            i += 2
            continue
        if ch == quote:
            return i
        i += 1
    return -1


def _assignments(lines: list[str]) -> list[tuple[int, int, re.Match]]:
    """(first line, last line, match) of every assignment; quoted values may span lines."""
    found = []
    i = 0
    while i < len(lines):
        body, _ = _split_eol(lines[i])
        m = _ASSIGN.match(body)
        if not m:
            i += 1
            continue
        end = i
        rest = m.group("rest")
        if rest[:1] in ("'", '"') and _closing(rest, rest[0], 1) < 0:
            j = i + 1
            while j < len(lines) and _closing(_split_eol(lines[j])[0], rest[0], 0) < 0:
                j += 1
            end = min(j, len(lines) - 1)
        found.append((i, end, m))
        i = end + 1
    return found


def _parse_value(rest: str, more: list[str]) -> tuple[str, str, str]:
    """(value, quote used, trailing text such as a comment)."""
    if rest[:1] in ("'", '"'):
        q = rest[0]
        whole = "\n".join([rest] + more)
        end = _closing(whole, q, 1)
        if end < 0:
            return whole[1:], q, ""
        raw = whole[1:end]
        if q == '"':
            raw = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), raw)
        return raw, q, whole[end + 1:]
    m = re.search(r"[ \t]+#.*$", rest)
    if m:
        return rest[: m.start()], "", rest[m.start():]
    return rest.rstrip(), "", rest[len(rest.rstrip()):]


def _format(value: str, quote: str) -> str:
    if quote == "'" and "'" not in value:
        return f"'{value}'"
    if quote or _NEEDS_QUOTES.search(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def get_value(text: str, key: str) -> str | None:
    lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    value = None
    for first, last, m in _assignments(lines):
        if m.group("key") == key:
            more = [_split_eol(ln)[0] for ln in lines[first + 1:last + 1]]
            value = _parse_value(m.group("rest"), more)[0]
    return value


def set_value(text: str, key: str, value: str, *, export: bool | None = None) -> str:
    if not _KEY.match(key):
        raise EditError(f"not a valid environment variable name: {key!r}")
    one_line(value)
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom):]
    nl = newline_of(body)
    lines = body.splitlines(keepends=True)
    found = [a for a in _assignments(lines) if a[2].group("key") == key]
    if found:
        out: list[str] = []
        cursor = 0
        for first, last, m in found:
            out += lines[cursor:first]
            eol = _split_eol(lines[last])[1]
            more = [_split_eol(ln)[0] for ln in lines[first + 1:last + 1]]
            _, quote, trailing = _parse_value(m.group("rest"), more)
            prefix = m.group("export") or ""
            if export is True and not prefix:
                prefix = "export "
            elif export is False:
                prefix = ""
            out.append(f"{m.group('indent')}{prefix}{key}{m.group('sp1')}={m.group('sp2')}"
                       f"{_format(value, quote)}{trailing}{eol}")
            cursor = last + 1
        out += lines[cursor:]
        return bom + "".join(out)
    all_assign = _assignments(lines)
    if export is None:
        export = bool(all_assign) and all(m.group("export") for _, _, m in all_assign)
    out = list(lines)
    if out and not _split_eol(out[-1])[1]:
        out[-1] += nl
    out.append(f"{'export ' if export else ''}{key}={_format(value, '')}{nl}")
    return bom + "".join(out)
