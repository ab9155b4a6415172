"""YAML (ruamel round-trip), TOML (tomlkit) and JSON files: set one key, keep comments, order and layout.

`key` is a dotted path (`server.cache.max_items`; list items by index); a key
that itself contains dots is found as is. The new value takes the type of the
value it replaces when it can (`"500"` replacing an integer stays an integer).
When the serializer would re-flow parts of the file it did not need to touch,
only the lines the edit changes are carried over onto the original text.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from agent.remedy.editors import EditError

FORMATS = ("yaml", "json", "toml")


# --------------------------------------------------------------------------- loading and dumping


def _yaml():
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 16
    return y


def _load(text: str, fmt: str) -> tuple[Any, dict[str, Any]]:
    try:
        if fmt == "yaml":
            from ruamel.yaml.util import load_yaml_guess_indent

            _, indent, block_seq_indent = load_yaml_guess_indent(text) if text.strip() else (None, 2, 0)
            y = _yaml()
            data = y.load(text) if text.strip() else None
            if data is None:
                from ruamel.yaml.comments import CommentedMap

                data = CommentedMap()
            return data, {"indent": indent or 2, "offset": block_seq_indent or 0,
                          "explicit_start": text.lstrip().startswith("---")}
        if fmt == "toml":
            import tomlkit

            return tomlkit.parse(text), {}
        if fmt == "json":
            data = json.loads(text) if text.strip() else {}
            return data, _json_style(text)
    except EditError:
        raise
    except Exception as exc:  # each parser has its own error types; all mean "not valid <fmt>"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EditError(f"not valid {fmt.upper()}: {first}") from None
    raise EditError(f"unknown structured format {fmt!r}")


def _dump(data: Any, fmt: str, style: dict[str, Any]) -> str:
    if fmt == "yaml":
        y = _yaml()
        y.indent(mapping=style["indent"], sequence=style["offset"] + 2, offset=style["offset"])
        y.explicit_start = style.get("explicit_start", False)
        buf = io.StringIO()
        y.dump(data, buf)
        return buf.getvalue()
    if fmt == "toml":
        import tomlkit

        return tomlkit.dumps(data)
    text = json.dumps(data, indent=style["indent"], separators=style["separators"], ensure_ascii=style["ascii"])
    return text + style["trailer"]


def _json_style(text: str) -> dict[str, Any]:
    indent: int | str | None = None
    for line in text.splitlines()[1:]:
        ws = line[: len(line) - len(line.lstrip())]
        if ws and line.strip():
            indent = "\t" if ws.startswith("\t") else len(ws)
            break
    if indent is None and "\n" in text.strip():
        indent = 2
    compact_items = indent is None and re.search(r",\S", text) and not re.search(r", ", text)
    compact_keys = re.search(r'":\S', text) and not re.search(r'": ', text)
    separators = ("," if (compact_items or indent is not None) else ", ", ":" if compact_keys else ": ")
    trailer = text[len(text.rstrip()):] if text.strip() else "\n"
    return {"indent": indent, "separators": separators, "ascii": "\\u" in text, "trailer": trailer}


# --------------------------------------------------------------------------- navigating


def _is_map(x: Any) -> bool:
    return hasattr(x, "keys") and hasattr(x, "__getitem__")


def _is_list(x: Any) -> bool:
    return isinstance(x, list)


def _locate(container: Any, key: str) -> tuple[Any, Any] | None:
    """(parent, final key or index) of an existing `key`, preferring the longest literal match at each level."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        head = ".".join(parts[:n])
        rest = ".".join(parts[n:])
        slot: Any = head
        if _is_map(container):
            if head not in container:
                continue
        elif _is_list(container):
            if not re.fullmatch(r"-?\d+", head) or not -len(container) <= int(head) < len(container):
                continue
            slot = int(head)
        else:
            return None
        if not rest:
            return container, slot
        found = _locate(container[slot], rest)
        if found is not None:
            return found
    return None


def _new_map(fmt: str) -> Any:
    if fmt == "yaml":
        from ruamel.yaml.comments import CommentedMap

        return CommentedMap()
    if fmt == "toml":
        import tomlkit

        return tomlkit.table()
    return {}


def _create(root: Any, key: str, fmt: str) -> tuple[Any, str]:
    """Make the missing mappings along `key` (split at dots after the deepest existing part)."""
    parts = key.split(".")
    container = root
    i = 0
    while i < len(parts) - 1:
        found = None
        for n in range(len(parts) - 1, i, -1):
            head = ".".join(parts[i:n])
            if _is_map(container) and head in container and _is_map(container[head]):
                found = (head, n)
                break
        if found is None:
            break
        container = container[found[0]]
        i = found[1]
    for part in parts[i:-1]:
        if not _is_map(container):
            raise EditError(f"cannot create {key!r}: {part!r} would go inside a value that is not a mapping")
        if part in container:
            raise EditError(f"cannot create {key!r}: {part!r} exists and is not a mapping")
        container[part] = _new_map(fmt)
        container = container[part]
    if not _is_map(container):
        raise EditError(f"cannot create {key!r}: its parent is not a mapping")
    return container, parts[-1]


def _coerce(new: Any, old_item: Any) -> Any:
    """Keep the replaced value's type when the new one is its string form (or a number where a string was)."""
    old = _plain(old_item)
    if isinstance(old, bool):
        if isinstance(new, str) and new.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return new.strip().lower() in ("true", "yes", "on", "1")
        return new
    if isinstance(old, int) and isinstance(new, str):
        try:
            return int(new.strip())
        except ValueError:
            try:
                return float(new.strip())
            except ValueError:
                return new
    if isinstance(old, float) and isinstance(new, str):
        try:
            return float(new.strip())
        except ValueError:
            return new
    if isinstance(old, str) and isinstance(new, (int, float)) and not isinstance(new, bool):
        new = str(new)
    if isinstance(new, str):
        from ruamel.yaml.scalarstring import ScalarString

        if isinstance(old_item, ScalarString):
            return type(old_item)(new)  # the quoting style of the value it replaces
    return new


def _plain(value: Any) -> Any:
    """tomlkit/ruamel items as plain Python, for reading back."""
    unwrap = getattr(value, "unwrap", None)
    if callable(unwrap):
        return unwrap()
    return value


# --------------------------------------------------------------------------- public


def get_value(text: str, fmt: str, key: str) -> tuple[bool, Any]:
    data, _ = _load(text, fmt)
    found = _locate(data, key)
    if found is None:
        return False, None
    parent, slot = found
    return True, _plain(parent[slot])


def set_value(text: str, fmt: str, key: str, value: Any) -> str:
    if not key or key.startswith(".") or key.endswith(".") or ".." in key:
        raise EditError(f"not a valid key path: {key!r}")
    data, style = _load(text, fmt)
    if fmt == "json":
        from agent.remedy.editors import jsontext

        current = _locate(data, key)
        spliced = jsontext.splice(text, key, _coerce(value, current[0][current[1]]) if current else value,
                                  style["ascii"])
        if spliced is not None:
            return spliced
    if fmt == "toml" and value is None:
        raise EditError("TOML has no null value")
    original = _dump(data, fmt, style)
    found = _locate(data, key)
    if found is not None:
        parent, slot = found
        parent[slot] = _coerce(value, parent[slot])
    else:
        parent, slot = _create(data, key, fmt)
        parent[slot] = value
    edited = _dump(data, fmt, style)
    return _carry_over(text, original, edited)


def _carry_over(text: str, rt_original: str, rt_edited: str) -> str:
    """The edit as a minimal change of `text`: the serializer's own re-flowing of untouched parts is not kept."""
    if rt_original == text:
        return rt_edited
    from agent.remedy.base import unified_diff
    from agent.remedy.editors import unidiff

    diff = unified_diff(rt_original, rt_edited, "file")
    if not diff:
        return text
    try:
        return unidiff.apply(text, diff)
    except EditError:
        return rt_edited
