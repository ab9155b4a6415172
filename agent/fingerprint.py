"""Log fingerprints: mask what varies, then mine templates Drain-style.

One strategy for every log format, no per-format configuration:

1. `mask()` replaces with `<*>` every chunk of a message (between spaces and
   structural punctuation `=,;()[]{}"'<>`) that holds a digit: numbers, hex,
   ids, uuids, IPs with ports, versions, timestamps, paths and URLs with ids.
   A key prefix stays ("lr:00045" -> "lr:<*>"). Then a quantity with its unit
   ("30 s", "18846 bytes (18.4 KB)", "<1 sec") and a date ("Fri Jun 17 <*>")
   become one `<*>`, and variables joined by spaces or a little punctuation
   collapse into one, so id lists of any length align.
2. Mining groups masked messages by (source, service, token count, first
   token), like Drain's prefix tree. A message joins a cluster when each token
   equals the template's, meets a `<*>` there, or differs only inside a
   variable part (the same letters around a `<*>`, two paths). At most one
   plain word may stand where the cluster holds a masked value (a user name
   where others had "test9") if at least `ANCHORS` constant words agree.
   Otherwise a differing constant word founds a new cluster: "connection
   refused" and "permission denied" never share a fingerprint. A position
   becomes a variable only when clusters that agree everywhere else (with
   `ANCHORS` constant words in common) have shown `CARDINALITY` distinct
   lower/mixed-case words there: three user names are a variable,
   "startup"/"shutdown" are two events, and ALL-CAPS words (states, methods,
   protocols: FAILED, GET, HTTPS) are never generalised.

Stability: a cluster's fingerprint is "f1:" + sha256(source, service, its
founding masked message), fixed at creation, so it does not change when the
template later gains a `<*>`. Every masked message remembers the cluster it
first joined, so the same message keeps its fingerprint as history grows
(hashlib only: the same in every process). When a position becomes a variable,
the clusters of the words seen there before are linked to the one that now
covers them (their "root"): `fingerprint()` keeps giving their messages their
own fingerprint, with the root's template; `fingerprint_many()` (a whole file
mined at once, as `selfheal fingerprint` prints it) gives every line its
root's fingerprint and final template.

State: `export_state()` returns one JSON-ready dict per cluster
(fingerprint, seq, source, service, founding, template, root, keys, v);
`Fingerprinter(state=rows)` restores them, so a new process gives the same
fingerprints and keeps mining alike. `take_changes()` returns only the
clusters created or changed since its last call (upsert them by
"fingerprint"); triage stores them (agent/store/triage_state.py).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable, Sequence

VERSION = "f1"
WILD = "<*>"
STATE_VERSION = 1

# A differing word becomes a variable once this many distinct words were seen
# at one position of otherwise identical clusters...
CARDINALITY = 3
# ...which share at least this many constant words (short messages such as
# "connect: connection refused" never generalise a word).
ANCHORS = 3
# A shape (source, service, length, first token) holding more than this many
# clusters has unmasked variables: there, a position that has shown
# OPEN_VALUES distinct words takes any word (keeps mining linear, as Drain's
# similarity would).
CROWDED = 32
OPEN_VALUES = 8
# Masked messages remembered per cluster in exported state.
STATE_KEYS_PER_CLUSTER = 500
# In-memory caches are dropped (not the clusters) past these sizes.
RAW_CACHE_MAX = 200_000
MASK_CACHE_MAX = 500_000

_UNITS = r"(?:[kKMGT]i?[bB]|B|bytes?|ms|us|µs|ns|s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?|days?)"
_STRUCT = r"\s=,;()\[\]{}\"'<>"  # what separates the chunks of a message
# a chunk holding a digit: numbers, hex, ids, uuids, IPs with ports, versions,
# timestamps, paths and URLs with ids
_DIGIT_CHUNK = re.compile(rf"(?<![^{_STRUCT}])[^{_STRUCT}\d]*+\d[^{_STRUCT}]*+")
_KEY_PREFIX = re.compile(r"[A-Za-z_]+(?::(?!//)|\.{2,})(?=.)")
# after masking: a quantity with its unit ("30 s", "18846 bytes (18.4 KB)",
# "<1 sec") and a date ("Fri Jun 17 07:07:00 2005") are one variable, and so is
# the name an id is given in parentheses ("process 4121 (gunicorn)")
_MASKED_UNITS_DATES = re.compile(
    rf"[<>~]?<\*>\s?{_UNITS}(?:\s+\(<\*>\s?{_UNITS}\))?(?!\w)"
    r"|(?<=[A-Za-z] <\*> \()[^\s()]+(?=\))"
    r"|\b(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s+)?"
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t|tember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?\s+<\*>"
)
# variables joined by spaces or a little punctuation ("<*>:<*>", "<*>, <*>") are one
_WILD_RUN = re.compile(r"<\*>(?:[\s,:;.\-/>|@#+]{1,3}<\*>)+")

# identifiers that name things: paths, URLs, Windows paths
_PATH = re.compile(r"(?:^|[^\w.])\.{0,2}/\w|://|^[A-Za-z]:\\|\w\\\w")
_NON_LETTER = re.compile(r"[^A-Za-z]+")
_LETTER = re.compile(r"[A-Za-z]")


def _mask_chunk(m: re.Match) -> str:
    chunk = m.group()
    if chunk[0].isalpha():
        key = _KEY_PREFIX.match(chunk)  # keep "lr:" of "lr:00045" so that lr and cr stay apart
        if key:
            return key.group() + WILD
    return WILD


def mask(message: str) -> str:
    """The message with its variable parts replaced by `<*>`."""
    text = _DIGIT_CHUNK.sub(_mask_chunk, message)
    if WILD in text:
        text = _MASKED_UNITS_DATES.sub(WILD, text)
    if text.count(WILD) > 1:
        text = _WILD_RUN.sub(WILD, text)
    return text


def _digest(*parts: str) -> str:
    data = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:20]


def fingerprint_of(source: str, service: str, template: str) -> str:
    """The fingerprint of a cluster founded by `template` (a masked message)."""
    return f"{VERSION}:{_digest(VERSION, source, service, template)}"


class _Token:
    """Matching properties of one template or message token."""

    __slots__ = ("text", "wild", "varlike", "path", "letters", "anchor", "caps", "word")

    def __init__(self, text: str):
        self.text = text
        self.wild = text == WILD
        self.path = _PATH.search(text) is not None
        self.varlike = WILD in text or self.path
        self.letters = _NON_LETTER.sub("", text)
        self.anchor = not self.varlike and _LETTER.search(text) is not None
        # a word that may turn out to be a variable; ALL-CAPS words are states,
        # levels, methods, protocols (LOOKING, FAILED, GET, HTTPS): constants
        self.caps = self.anchor and text.isupper() and len(self.letters) > 1
        self.word = self.anchor and not self.caps


def _compare(template: Sequence[_Token], toks: Sequence[_Token], open_: frozenset[int] | set[int] = frozenset(),
             ) -> tuple[int, int, int, int]:
    """How tokens fit a template: (exact matches, constant words among them, hard, semi).

    hard is -1 when no position needs a new variable, the position when one
    word differs, -2 when more differ; semi counts the positions where a word
    stands and the other side holds a masked value (a variable that happened
    to have no digit there, such as a user or host name).
    """
    exact = anchors = 0
    hard = -1
    semi = 0
    for i, (a, b) in enumerate(zip(template, toks)):
        if a.text == b.text:
            exact += 1
            anchors += a.anchor
        elif a.wild:
            continue
        elif (a.varlike or b.varlike) and a.letters == b.letters or (a.varlike and b.varlike and (a.path or b.path)):
            continue  # the same words around a variable part, or two paths
        elif i in open_:
            continue
        elif a.varlike != b.varlike and not (a.caps or b.caps):
            semi += 1
        elif hard == -1:
            hard = i
        else:
            return exact, anchors, -2, semi
    return exact, anchors, hard, semi


_WILD_TOKEN = _Token(WILD)


class _Cluster:
    __slots__ = ("fp", "seq", "source", "service", "founding", "tokens", "props", "root", "keys", "group", "_text")

    def __init__(self, fp: str, seq: int, source: str, service: str, founding: str, tokens: list[str]):
        self.fp = fp
        self.seq = seq
        self.source = source
        self.service = service
        self.founding = founding
        self.tokens = tokens
        self.props = [_Token(t) for t in tokens]
        self.root: _Cluster | None = None  # the cluster whose template came to cover this one
        self.keys: list[str] = []
        self.group: _Group | None = None
        self._text: str | None = None

    def top(self) -> "_Cluster":
        c = self
        while c.root is not None:
            c = c.root
        return c

    def own_template(self) -> str:
        if self._text is None:
            self._text = " ".join(self.tokens)
        return self._text

    def template(self) -> str:
        return self.top().own_template()

    def widen(self, position: int) -> None:
        self.tokens[position] = WILD
        self.props[position] = _WILD_TOKEN
        self._text = None


class _Group:
    """Clusters of one shape: (token count, first token) within a scope."""

    __slots__ = ("clusters", "values", "open")

    def __init__(self, n: int):
        self.clusters: list[_Cluster] = []
        self.values: list[set[str]] = [set() for _ in range(n)]  # words founding clusters had, per position
        self.open: set[int] = set()

    def add(self, c: _Cluster) -> None:
        self.clusters.append(c)
        for i, t in enumerate(_Token(x) for x in c.founding.split()):
            if t.anchor and len(self.values[i]) < OPEN_VALUES:
                self.values[i].add(t.text)
        if len(self.clusters) > CROWDED:
            self.open = {i for i, v in enumerate(self.values) if len(v) >= OPEN_VALUES}


class _Scope:
    """Clusters of one (source, service)."""

    __slots__ = ("source", "service", "raw", "masked", "groups")

    def __init__(self, source: str, service: str):
        self.source = source
        self.service = service
        self.raw: dict[str, _Cluster] = {}
        self.masked: dict[str, _Cluster] = {}
        self.groups: dict[tuple[int, str], _Group] = {}


class Fingerprinter:
    """Masks and mines messages into clusters; see the module docstring.

    `state` is what `export_state()` returned (possibly by another process).
    """

    def __init__(self, state: Iterable[dict] | None = None):
        self._scopes: dict[tuple[str, str], _Scope] = {}
        self._by_fp: dict[str, _Cluster] = {}
        self._seq = 0
        self._changed: dict[str, _Cluster] = {}
        if state:
            self._load(state)

    # ------------------------------------------------------------------ public

    def fingerprint(self, message: str, source: str = "", service: str | None = None) -> tuple[str, str]:
        """(fingerprint, template) of one message, mined into the history so far.

        The fingerprint of a message never changes as history grows; the
        template may gain `<*>`.
        """
        cluster = self._cluster(self._scope(source or "", service or ""), message)
        return cluster.fp, cluster.template()

    def fingerprint_many(self, messages: Iterable[str], source: str = "", service: str | None = None) -> list[tuple[str, str]]:
        """Mine all messages, then give each its cluster's final (fingerprint, template)."""
        scope = self._scope(source or "", service or "")
        find = self._cluster
        seen = scope.raw.get
        clusters = []
        add = clusters.append
        for m in messages:
            c = seen(m)
            add(c if c is not None else find(scope, m))
        final: dict[int, tuple[str, str]] = {}
        out = []
        for c in clusters:
            r = final.get(id(c))
            if r is None:
                top = c.top()
                r = final[id(c)] = (top.fp, top.own_template())
            out.append(r)
        return out

    def template(self, fingerprint: str) -> str | None:
        c = self._by_fp.get(fingerprint)
        return c.template() if c else None

    def export_state(self) -> list[dict[str, Any]]:
        """Every cluster as a JSON-ready dict, oldest first (input of `Fingerprinter(state=...)`)."""
        return [self._dump(c) for c in sorted(self._by_fp.values(), key=lambda c: c.seq)]

    def take_changes(self) -> list[dict[str, Any]]:
        """Clusters created or changed since the last call (upsert them by "fingerprint")."""
        changed = sorted(self._changed.values(), key=lambda c: c.seq)
        self._changed = {}
        return [self._dump(c) for c in changed]

    def __len__(self) -> int:
        return len(self._by_fp)

    # ------------------------------------------------------------------ mining

    def _scope(self, source: str, service: str) -> _Scope:
        scope = self._scopes.get((source, service))
        if scope is None:
            scope = self._scopes[(source, service)] = _Scope(source, service)
        return scope

    def _cluster(self, scope: _Scope, message: str) -> _Cluster:
        c = scope.raw.get(message)
        if c is not None:
            return c
        masked = mask(message)
        c = scope.masked.get(masked)
        if c is None:
            c = self._mine(scope, masked)
            if len(scope.masked) >= MASK_CACHE_MAX:
                scope.masked.clear()
            scope.masked[masked] = c
            if len(c.keys) < STATE_KEYS_PER_CLUSTER and masked != c.founding and masked not in c.keys:
                c.keys.append(masked)
                self._changed[c.fp] = c
        if len(scope.raw) >= RAW_CACHE_MAX:
            scope.raw.clear()
        scope.raw[message] = c
        return c

    def _mine(self, scope: _Scope, masked: str) -> _Cluster:
        texts = masked.split()
        toks = [_Token(t) for t in texts]
        first = toks[0] if toks else None
        route = WILD if first is None or first.varlike else first.text
        group = scope.groups.get((len(toks), route))
        if group is None:
            group = scope.groups[(len(toks), route)] = _Group(len(toks))
        open_ = group.open

        best: _Cluster | None = None
        best_score = (-1, 0)
        near: dict[int, list[_Cluster]] = {}  # position -> clusters differing only there, by a word
        for c in group.clusters:
            exact, anchors, hard, semi = _compare(c.props, toks, open_)
            if hard == -1 and (not semi or anchors >= max(ANCHORS, semi)):
                score = (exact, -c.seq)
                if score > best_score:
                    best, best_score = c, score
            elif hard >= 0 and not semi and anchors >= ANCHORS and c.root is None \
                    and toks[hard].word and c.props[hard].word:
                near.setdefault(hard, []).append(c)

        if best is not None:
            self._absorb(best, toks)
            return best
        for position in sorted(near, key=lambda p: (-len(near[p]), p)):
            members = near[position]
            if len({m.tokens[position] for m in members}) + 1 >= CARDINALITY:
                root = min(members, key=lambda m: m.seq)
                root.widen(position)
                for m in members:
                    if m is not root:
                        m.root = root
                        self._changed[m.fp] = m
                self._absorb(root, toks)
                self._link(root)
                return root
        return self._found(scope, group, masked, texts)

    def _absorb(self, c: _Cluster, toks: Sequence[_Token]) -> None:
        widened = False
        for i, (a, b) in enumerate(zip(c.props, toks)):
            if a.text != b.text and not a.wild:
                c.widen(i)
                widened = True
        self._changed[c.fp] = c
        if widened:
            self._link(c)

    def _link(self, c: _Cluster) -> None:
        """Link the clusters that c's template now covers (words seen where it has a <*>) to c."""
        ancestors = set()
        a: _Cluster | None = c
        while a is not None:
            ancestors.add(id(a))
            a = a.root
        group = c.group
        if group is None:
            return
        for other in group.clusters:
            if other.root is None and id(other) not in ancestors:
                _, _, hard, semi = _compare(c.props, other.props, group.open)
                if hard == -1 and not semi:
                    other.root = c
                    self._changed[other.fp] = other

    def _found(self, scope: _Scope, group: _Group, masked: str, texts: list[str]) -> _Cluster:
        self._seq += 1
        c = _Cluster(fingerprint_of(scope.source, scope.service, masked), self._seq,
                     scope.source, scope.service, masked, texts)
        c.group = group
        group.add(c)
        self._by_fp[c.fp] = c
        self._changed[c.fp] = c
        return c

    # ------------------------------------------------------------------ state

    @staticmethod
    def _dump(c: _Cluster) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "fingerprint": c.fp,
            "seq": c.seq,
            "source": c.source,
            "service": c.service,
            "founding": c.founding,
            "template": c.own_template(),
            "root": c.root.fp if c.root else None,
            "keys": list(c.keys),
        }

    def _load(self, state: Iterable[dict]) -> None:
        try:
            rows = sorted(state, key=lambda r: int(r["seq"]))
            for r in rows:
                self._load_row(r)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"fingerprint state: malformed row ({type(exc).__name__}: {exc})") from None
        for r in rows:
            if r.get("root"):
                self._by_fp[r["fingerprint"]].root = self._by_fp.get(r["root"])

    def _load_row(self, r: dict) -> None:
        if r.get("v", STATE_VERSION) != STATE_VERSION:
            raise ValueError(f"fingerprint state version {r.get('v')!r} is not {STATE_VERSION}")
        scope = self._scope(r["source"] or "", r["service"] or "")
        founding = r["founding"]
        c = _Cluster(r["fingerprint"], int(r["seq"]), scope.source, scope.service, founding, r["template"].split())
        ftoks = founding.split()
        route = WILD if not ftoks or _Token(ftoks[0]).varlike else ftoks[0]
        group = scope.groups.get((len(ftoks), route))
        if group is None:
            group = scope.groups[(len(ftoks), route)] = _Group(len(ftoks))
        c.group = group
        group.add(c)
        c.keys = list(r.get("keys") or ())
        self._by_fp[c.fp] = c
        self._seq = max(self._seq, c.seq)
        scope.masked[founding] = c
        for k in c.keys:
            scope.masked[k] = c
