"""Applying a unified diff to one file's text, strictly: every hunk's context must be found, or nothing applies.

A hunk is looked for at its stated line first, then at the nearest place its
old lines occur (after the previous hunk), like `patch` without fuzz.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.remedy.editors import EditError, newline_of

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class _HunkLine:
    tag: str       # ' ', '-', '+'
    text: str      # without the line ending
    eol: bool = True


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: list[_HunkLine] = field(default_factory=list)

    @property
    def old(self) -> list[str]:
        return [ln.text for ln in self.lines if ln.tag in " -"]


def _strip_eol(line: str) -> str:
    return line.rstrip("\r\n") if line.endswith(("\n", "\r")) else line


def parse(diff: str) -> list[Hunk]:
    hunks: list[Hunk] = []
    files = 0
    current: Hunk | None = None
    old_left = new_left = 0
    for raw in diff.splitlines():
        line = raw.rstrip("\r")
        if current is not None and (old_left > 0 or new_left > 0):
            if line.startswith("\\"):
                if current.lines:
                    current.lines[-1].eol = False
                continue
            tag, text = (line[:1], line[1:]) if line else (" ", "")
            if tag not in " -+":
                raise EditError(f"malformed hunk line in the diff: {line[:60]!r}")
            current.lines.append(_HunkLine(tag, text))
            if tag in " -":
                old_left -= 1
            if tag in " +":
                new_left -= 1
            if old_left < 0 or new_left < 0:
                raise EditError("a hunk in the diff has more lines than its @@ header says")
            continue
        if line.startswith("\\") and current is not None and current.lines:
            current.lines[-1].eol = False
            continue
        if line.startswith("+++ "):
            files += 1
            if files > 1:
                raise EditError("the diff changes more than one file; give one patch_file per file")
            continue
        m = _HUNK.match(line)
        if m:
            old_len = int(m.group(2)) if m.group(2) is not None else 1
            new_len = int(m.group(4)) if m.group(4) is not None else 1
            current = Hunk(int(m.group(1)), old_len, int(m.group(3)), new_len)
            hunks.append(current)
            old_left, new_left = old_len, new_len
    if not hunks:
        raise EditError("the diff has no hunks (@@ ... @@)")
    if current is not None and (old_left > 0 or new_left > 0):
        raise EditError("the diff ends in the middle of a hunk")
    return hunks


def apply(text: str, diff: str) -> str:
    hunks = parse(diff)
    nl = newline_of(text) if text else "\n"
    lines = text.splitlines(keepends=True)
    keys = [_strip_eol(ln) for ln in lines]
    out: list[str] = []
    pos = 0
    offset = 0
    for n, hunk in enumerate(hunks, start=1):
        old = hunk.old
        expected = max(hunk.old_start - 1 if hunk.old_len else hunk.old_start, 0) + offset
        at = _locate(keys, old, expected, pos)
        if at is None:
            raise EditError(f"hunk {n} (@@ -{hunk.old_start},{hunk.old_len}) does not apply: its lines are not in the file")
        out += lines[pos:at]
        k = at
        for ln in hunk.lines:
            if ln.tag == " ":
                out.append(lines[k])
                k += 1
            elif ln.tag == "-":
                k += 1
            else:
                out.append(ln.text + (nl if ln.eol else ""))
        pos = at + len(old)
        offset = at - (hunk.old_start - 1 if hunk.old_len else hunk.old_start)
    out += lines[pos:]
    # A line that lost its ending because it was the last one needs it back when something now follows it.
    for i in range(len(out) - 1):
        if not out[i].endswith(("\n", "\r")):
            out[i] += nl
    return "".join(out)


def _locate(keys: list[str], old: list[str], expected: int, floor: int) -> int | None:
    n = len(old)
    limit = len(keys) - n
    if limit < floor:
        return None
    candidates = sorted(range(floor, limit + 1), key=lambda p: (abs(p - expected), p))
    for p in candidates:
        if keys[p:p + n] == old:
            return p
    return None
