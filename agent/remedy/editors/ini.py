"""INI files edited line by line: configparser would drop every comment and reorder nothing back.

Understands what configparser reads (sections, `key = value` and `key: value`,
`#`/`;` comment lines, indented continuation lines) plus the inline comments
many dialects use (` ; ...`, ` # ...` after whitespace). Only the line holding
the key changes; a key that is absent is added at the end of its section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.remedy.editors import EditError, newline_of, one_line

_SECTION = re.compile(r"^\s*\[([^\]]*)\]\s*(?:[#;].*)?$")
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[^=:\s#;\[][^=:]*?)(?P<sp1>[ \t]*)(?P<delim>[=:])(?P<sp2>[ \t]*)(?P<rest>.*)$")
_INLINE_COMMENT = re.compile(r"(?P<ws>[ \t]+)(?P<comment>[#;].*)$")


@dataclass
class _Line:
    index: int
    kind: str                  # blank comment section key cont other
    section: str | None        # None: before the first section header
    key: str | None = None
    indent: int = 0
    match: re.Match | None = None


def _body(line: str) -> tuple[str, str]:
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith("\n") or line.endswith("\r"):
        return line[:-1], line[-1]
    return line, ""


def _parse(lines: list[str]) -> list[_Line]:
    out: list[_Line] = []
    section: str | None = None
    last_key: _Line | None = None
    for i, raw in enumerate(lines):
        body, _ = _body(raw)
        stripped = body.strip()
        indent = len(body) - len(body.lstrip())
        if not stripped:
            out.append(_Line(i, "blank", section))
            continue
        if last_key is not None and indent > last_key.indent and not stripped.startswith(("#", ";")):
            out.append(_Line(i, "cont", section, last_key.key))
            continue
        if stripped.startswith(("#", ";")):
            out.append(_Line(i, "comment", section))
            continue
        m = _SECTION.match(body)
        if m:
            section = m.group(1).strip()
            last_key = None
            out.append(_Line(i, "section", section))
            continue
        m = _KEY.match(body)
        if m:
            last_key = _Line(i, "key", section, m.group("key").strip(), indent, m)
            out.append(last_key)
            continue
        last_key = None
        out.append(_Line(i, "other", section))
    return out


def _sections(parsed: list[_Line]) -> list[str]:
    return [p.section for p in parsed if p.kind == "section" and p.section is not None]


def _find(parsed: list[_Line], key: str, section: str | None) -> tuple[str, str | None, list[_Line]]:
    """(key as requested, section, matching key lines); refuses when the key sits in several sections."""
    def hits(k: str, sec: str | None, any_section: bool, fold: bool) -> list[_Line]:
        want = k.lower() if fold else k
        return [p for p in parsed if p.kind == "key"
                and ((p.key or "").lower() if fold else p.key) == want
                and (any_section or p.section == sec)]

    for fold in (False, True):
        found = hits(key, section, section is None, fold)
        if found:
            break
    if not found and section is None and "." in key:
        sec, _, sub = key.partition(".")
        if sec in _sections(parsed):
            return _find(parsed, sub, sec)
    if section is None:
        secs = sorted({p.section or "" for p in found})
        if len(secs) > 1:
            names = ", ".join(f"[{s}]" if s else "(no section)" for s in secs)
            raise EditError(f"key {key!r} is in several sections ({names}); give params.section")
        if found:
            section = found[0].section
    return key, section, found


def get_value(text: str, key: str, section: str | None = None) -> tuple[str | None, str | None]:
    """(section, value) of the key's last occurrence, value None when absent; continuation lines joined with newlines."""
    text = text.removeprefix("\ufeff")
    lines = text.splitlines(keepends=True)
    parsed = _parse(lines)
    _, sec, found = _find(parsed, key, section)
    if not found:
        return sec, None
    last = found[-1]
    value = _value_of(last.match)
    conts = []
    for p in parsed[last.index + 1:]:
        if p.kind == "cont":
            conts.append(_body(lines[p.index])[0].strip())
        elif p.kind in ("blank", "comment"):
            continue
        else:
            break
    return sec, "\n".join([value] + conts) if conts else value


def _value_of(m: re.Match | None) -> str:
    rest = m.group("rest") if m else ""
    cm = _INLINE_COMMENT.search(rest)
    return (rest[: cm.start()] if cm else rest).rstrip()


def set_value(text: str, key: str, value: str, section: str | None = None) -> str:
    """The text with `key` set to `value` (in `section`); every other byte unchanged."""
    one_line(value)
    one_line(key, "key")
    if section is not None:
        one_line(section, "section")
        if "]" in section:
            raise EditError("section name cannot contain ']'")
    if not key.strip() or any(ch in key for ch in "=:[") or key.strip().startswith(("#", ";")):
        raise EditError(f"not a valid INI key: {key!r}")
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body_text = text[len(bom):]
    nl = newline_of(body_text)
    lines = body_text.splitlines(keepends=True)
    parsed = _parse(lines)
    key, section, found = _find(parsed, key, section)
    if found:
        drop: set[int] = set()
        for hit in found:
            lines[hit.index] = _replace(lines[hit.index], hit.match, value)
            for p in parsed[hit.index + 1:]:
                if p.kind == "cont":
                    drop.add(p.index)
                elif p.kind != "blank":
                    break
        lines = [ln for i, ln in enumerate(lines) if i not in drop]
        return bom + "".join(lines)
    return bom + _add(lines, parsed, key.strip(), value, section, nl)


def _replace(line: str, m: re.Match | None, value: str) -> str:
    assert m is not None
    body, eol = _body(line)
    rest = m.group("rest")
    cm = _INLINE_COMMENT.search(rest)
    comment = (cm.group("ws") + cm.group("comment")) if cm else ""
    sp2 = m.group("sp2") or (" " if m.group("sp1") else "")
    if not value:
        sp2 = ""
    return f"{m.group('indent')}{m.group('key')}{m.group('sp1')}{m.group('delim')}{sp2}{value}{comment}{eol}"


def _style(parsed: list[_Line]) -> tuple[str, str, str]:
    """(space before, delimiter, space after) most used by the file's keys; ' = ' when it has none."""
    counts: dict[tuple[str, str, str], int] = {}
    for p in parsed:
        if p.kind == "key" and p.match:
            s = (p.match.group("sp1"), p.match.group("delim"), p.match.group("sp2") or p.match.group("sp1"))
            counts[s] = counts.get(s, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else (" ", "=", " ")


def _add(lines: list[str], parsed: list[_Line], key: str, value: str, section: str | None, nl: str) -> str:
    sp1, delim, sp2 = _style(parsed)
    has_sections = bool(_sections(parsed))
    if section is None and has_sections:
        names = _sections(parsed)
        if len(names) != 1:
            raise EditError(f"key {key!r} is not in the file and it has several sections; give params.section")
        section = names[0]
    if section is not None and section not in _sections(parsed):
        out = list(lines)
        if out and not _body(out[-1])[1]:
            out[-1] += nl
        if out and _body(out[-1])[0].strip():
            out.append(nl)
        out += [f"[{section}]{nl}", f"{key}{sp1}{delim}{sp2}{value}{nl}"]
        return "".join(out)
    in_section = [p for p in parsed if p.section == section]
    if section is not None:
        header = max(p.index for p in parsed if p.kind == "section" and p.section == section)
        in_section = [p for p in in_section if p.index > header]
        anchor = header
    else:
        anchor = -1
    keyed = [p for p in in_section if p.kind in ("key", "cont")]
    indent = ""
    if keyed:
        anchor = keyed[-1].index
        last_key = [p for p in keyed if p.kind == "key"][-1]
        indent = last_key.match.group("indent") if last_key.match else ""
    elif section is None:
        anchor = len(lines) - 1
    new = f"{indent}{key}{sp1}{delim}{sp2}{value}{nl}"
    out = list(lines)
    if anchor >= 0 and not _body(out[anchor])[1]:
        out[anchor] += nl
    out.insert(anchor + 1, new)
    return "".join(out)
