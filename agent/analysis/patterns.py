"""Regexes built from real messages: the symptom node's `observe` must match the symptom and its repeats.

The constant words of the message are kept (escaped) so the pattern names
this failure and not a neighbour; the parts that vary between repeats (pids,
addresses, timestamps, sizes, durations, ids) are masked. Small numbers that
carry meaning (HTTP statuses, errno values, signal numbers, exit codes) stay
literal unless their context says they are an id.
"""

from __future__ import annotations

import re

_MAX_LEN = 240

# Order matters: the first alternative that matches at a position wins.
_VARIABLE = re.compile(
    r"""
    (?P<ts>\d{4}[-/]\d{2}[-/]\d{2}[T\ ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:\ ?(?:Z|[+-]\d{2}:?\d{2}))?)
  | (?P<date>\b\d{4}[-/]\d{1,2}[-/]\d{1,2}\b)
  | (?P<clock>\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b)
  | (?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)
  | (?P<ip>\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?::\d+)?\b)
  | (?P<hex>\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b)
  | (?P<unit>\b\d+(?:\.\d+)?\s?(?:ms|us|µs|ns|s|sec|secs|seconds|min|m|h|KB|kB|MB|GB|TB|KiB|MiB|GiB|TiB|B|bytes|%)(?![A-Za-z]))
  | (?P<decimal>\b\d+\.\d+\b)
  | (?P<idnum>(?:(?<=pid[:=\ ])|(?<=pid)|(?<=process\ )|(?<=\[)|(?<=\#)|(?<=port\ )|(?<=line\ )|(?<=task\ )|(?<=job\ )|(?<=id[:=\ ])|(?<=uid[:=\ ]))\d+)
  | (?P<long>\b\d{4,}\b)
    """,
    re.VERBOSE,
)

_MASKS = {
    "ts": r"\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?: ?(?:Z|[+-]\d{2}:?\d{2}))?",
    "date": r"\d{4}[-/]\d{1,2}[-/]\d{1,2}",
    "clock": r"[\d:.,]+",
    "uuid": r"[0-9a-fA-F-]{36}",
    "ip": r"\d+\.\d+\.\d+\.\d+(?::\d+)?",
    "hex": r"(?:0x)?[0-9a-fA-F]+",
    "unit": None,  # built from the match: number masked, unit kept
    "decimal": r"\d+(?:\.\d+)?",
    "idnum": r"\d+",
    "long": r"\d+",
}


def _first_line(message: str) -> str:
    for line in message.splitlines():
        if line.strip():
            return line.strip()
    return message.strip()


def _literal(text: str) -> str:
    """Escape constant text; any run of whitespace matches any whitespace."""
    parts = re.split(r"(\s+)", text)
    return "".join(r"\s+" if p and p.isspace() else re.escape(p) for p in parts)


def message_regex(message: str) -> str:
    """A regex that matches `message` and its repeats (same words, different variable parts)."""
    line = _first_line(message)
    if len(line) > _MAX_LEN:
        cut = line.rfind(" ", 0, _MAX_LEN)
        line = line[: cut if cut > _MAX_LEN // 2 else _MAX_LEN]
    out: list[str] = []
    pos = 0
    for m in _VARIABLE.finditer(line):
        out.append(_literal(line[pos : m.start()]))
        kind = m.lastgroup or "long"
        if kind == "unit":
            unit = re.sub(r"^[\d.]+\s?", "", m.group(0))
            out.append(r"\d+(?:\.\d+)?\s?" + re.escape(unit))
        else:
            out.append(_MASKS[kind] or r"\S+")
        pos = m.end()
    out.append(_literal(line[pos:]))
    regex = "".join(out)
    try:
        if re.search(regex, message):
            return regex
    except re.error:
        pass
    return re.escape(line)


def _group_spans(regex: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each outermost named group `(?P<name>...)` in a regex."""
    spans: list[tuple[int, int, str]] = []
    stack: list[tuple[int, str | None]] = []
    i, n, in_class = 0, len(regex), False
    while i < n:
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            if regex[i + 1 : i + 2] == "]" or regex[i + 1 : i + 3] == "^]":
                i += 2 if regex[i + 1] == "]" else 3
                continue
        elif c == "(":
            m = re.match(r"\(\?P<([A-Za-z_]\w*)>", regex[i:])
            stack.append((i, m.group(1) if m else None))
        elif c == ")" and stack:
            start, name = stack.pop()
            if name is not None and not any(s_name for _, s_name in stack if s_name):
                spans.append((start, i + 1, name))
        i += 1
    return spans


def concretise(regex: str, values: dict[str, str], text: str) -> str:
    """Replace each named group that captured a value with that value, escaped; keep the regex if it then fails
    to match `text` (the signal it was built from)."""
    spans = [sp for sp in _group_spans(regex) if values.get(sp[2]) is not None]
    if not spans:
        return regex
    out, pos = [], 0
    for start, end, name in sorted(spans):
        out.append(regex[pos:start])
        out.append(re.escape(values[name]))
        pos = end
    out.append(regex[pos:])
    candidate = "".join(out)
    try:
        return candidate if re.search(candidate, text) else regex
    except re.error:
        return regex


def required_literals(regex: str) -> tuple[str, ...] | None:
    """Lowercase substrings one of which every match must contain (compare with the lowercased message), or None
    when the regex has no such literal of 3+ characters. A cheap substring search before the regex skips most
    messages; lowercasing only ever admits more candidates, so the prefilter never loses a match."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - Python < 3.11
        import sre_parse  # type: ignore[no-redef]
    try:
        parsed = sre_parse.parse(regex)
    except Exception:
        return None
    items = list(parsed)
    # A whole-pattern group (?:A|B) is the same as A|B.
    while len(items) == 1 and items[0][0] is sre_parse.SUBPATTERN:
        items = list(items[0][1][-1])
    if len(items) == 1 and items[0][0] is sre_parse.BRANCH:
        out = []
        for branch in items[0][1][1]:
            lit = _longest_run(list(branch), sre_parse)
            if lit is None:
                return None
            out.append(lit.lower())
        return tuple(dict.fromkeys(out))
    lit = _longest_run(items, sre_parse)
    return None if lit is None else (lit.lower(),)


def _longest_run(items: list, sre_parse) -> str | None:
    """The longest run of consecutive literal characters every match contains (groups without alternation count)."""
    best, cur = "", []

    def close() -> None:
        nonlocal best, cur
        if len(cur) > len(best):
            best = "".join(cur)
        cur = []

    for op, arg in items:
        if op is sre_parse.LITERAL:
            cur.append(chr(arg))
        elif op is sre_parse.SUBPATTERN and not any(o is sre_parse.BRANCH for o, _ in arg[-1]):
            close()
            inner = _longest_run(list(arg[-1]), sre_parse)
            if inner and len(inner) > len(best):
                best = inner
        elif op is sre_parse.AT:
            continue  # \b, ^, $ take no characters
        else:
            close()
    close()
    return best if len(best) >= 3 else None
