"""JSON edited in place: the value at a key path is replaced where it stands in the text.

A small scanner records where every value starts and ends, so an edit changes
those characters only and the file keeps its own layout (compact arrays,
spacing, key order, trailing newline). Returns None when the edit needs more
than a splice (e.g. new nested objects); the caller then re-dumps the document.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from json.decoder import scanstring
from typing import Any

from agent.remedy.editors import EditError

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass
class _Node:
    start: int
    end: int = 0
    kind: str = "scalar"                                              # object array scalar
    members: list[tuple[str, int, str, "_Node"]] = field(default_factory=list)  # (key, key start, ': ', value)
    items: list["_Node"] = field(default_factory=list)


def _ws(s: str, i: int) -> int:
    return _WS.match(s, i).end()


def _value(s: str, i: int) -> _Node:
    i = _ws(s, i)
    if i >= len(s):
        raise EditError("not valid JSON: unexpected end of file")
    ch = s[i]
    node = _Node(i)
    if ch == "{":
        node.kind = "object"
        j = _ws(s, i + 1)
        if s.startswith("}", j):
            node.end = j + 1
            return node
        while True:
            j = _ws(s, j)
            if not s.startswith('"', j):
                raise EditError(f"not valid JSON: expected a key at offset {j}")
            key, after = scanstring(s, j + 1)
            k = _ws(s, after)
            if not s.startswith(":", k):
                raise EditError(f"not valid JSON: expected ':' at offset {k}")
            child = _value(s, k + 1)
            node.members.append((key, j, s[after:child.start], child))
            j = _ws(s, child.end)
            if s.startswith(",", j):
                j += 1
                continue
            if s.startswith("}", j):
                node.end = j + 1
                return node
            raise EditError(f"not valid JSON: expected ',' or '}}' at offset {j}")
    if ch == "[":
        node.kind = "array"
        j = _ws(s, i + 1)
        if s.startswith("]", j):
            node.end = j + 1
            return node
        while True:
            child = _value(s, j)
            node.items.append(child)
            j = _ws(s, child.end)
            if s.startswith(",", j):
                j += 1
                continue
            if s.startswith("]", j):
                node.end = j + 1
                return node
            raise EditError(f"not valid JSON: expected ',' or ']' at offset {j}")
    if ch == '"':
        _, node.end = scanstring(s, i + 1)
        return node
    for lit in ("true", "false", "null"):
        if s.startswith(lit, i):
            node.end = i + len(lit)
            return node
    m = _NUMBER.match(s, i)
    if m:
        node.end = m.end()
        return node
    raise EditError(f"not valid JSON: unexpected {ch!r} at offset {i}")


def _find(node: _Node, key: str) -> tuple[_Node, str | int] | None:
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        head, rest = ".".join(parts[:n]), ".".join(parts[n:])
        child: _Node | None = None
        slot: str | int = head
        if node.kind == "object":
            hits = [v for k, _, _, v in node.members if k == head]
            child = hits[-1] if hits else None
        elif node.kind == "array" and re.fullmatch(r"\d+", head) and int(head) < len(node.items):
            child = node.items[int(head)]
            slot = int(head)
        if child is None:
            continue
        if not rest:
            return node, slot
        found = _find(child, rest)
        if found is not None:
            return found
    return None


def _node_at(root: _Node, key: str) -> _Node | None:
    if not key:
        return root
    hit = _find(root, key)
    if hit is None:
        return None
    holder, slot = hit
    if holder.kind == "object":
        return [v for k, _, _, v in holder.members if k == slot][-1]
    return holder.items[slot]  # type: ignore[index]


def splice(text: str, key: str, value: Any, ascii_only: bool) -> str | None:
    """The text with the value at `key` replaced, or a member added to an existing object; None if neither fits."""
    root = _value(text, 0)
    if _ws(text, root.end) != len(text):
        raise EditError(f"not valid JSON: extra data at offset {_ws(text, root.end)}")
    if _find(root, key) is not None:
        target = _node_at(root, key)
        assert target is not None
        return text[: target.start] + json.dumps(value, ensure_ascii=ascii_only) + text[target.end:]
    parts = key.split(".")
    for i in range(len(parts) - 1, -1, -1):
        parent = _node_at(root, ".".join(parts[:i]))
        if parent is None:
            continue
        if parent.kind != "object" or not parent.members:
            return None
        nested: Any = value
        for part in reversed(parts[i + 1:]):
            nested = {part: nested}
        return _add_member(text, parent, parts[i], nested, ascii_only)
    return None


def _add_member(text: str, parent: _Node, key: str, value: Any, ascii_only: bool) -> str:
    _, prev_key_start, colon, prev_value = parent.members[-1]
    line_start = text.rfind("\n", 0, prev_key_start) + 1
    indent = text[line_start:prev_key_start]
    multiline = "\n" in text[parent.start:parent.members[0][1]]
    if multiline and not indent.strip():
        eol = "\r\n" if text[:line_start].endswith("\r\n") else "\n"
        sep = "," + eol + indent
    else:
        sep = ", " if colon.endswith(" ") else ","
    member = json.dumps(key, ensure_ascii=ascii_only) + colon + json.dumps(value, ensure_ascii=ascii_only)
    return text[: prev_value.end] + sep + member + text[prev_value.end:]
