"""Check 2, archive: has this failure been "fixed" before, and does the candidate only repeat that fix?

Similarity
----------
Two chains can only be the same failure when their symptoms are observed the
same way: equal symptom `observe` source and service (the contract's gate).
Among those, similarity is the larger of two Jaccard indices:

* the contract's: lowercase word sets (runs of letters, digits, '_') of all
  node statements; and
* a paraphrase-aware one over normalised features: statement words without
  stopwords (rules/gate.yaml) and lightly stemmed ("kills", "killed" ->
  "kill"), plus one feature per node observe (source, service, regex or metric
  comparison). Two analysts who word the same causal path differently still
  write the same observes and the same content words, so this index stays high
  where the raw word sets drift apart.

Taking the larger index means every pair the contract calls similar (>= 0.5)
is similar here too, and a reworded repeat of an archived chain is caught as
well. Identical chains score 1.0 under both.

Repeats and depth
-----------------
A similar archived chain means its fix did not hold: the case is escalated.
The candidate fails when its root is the archived root (same normalised
statement, same content words however ordered or inflected, or the same root
observe) or its fix is the archived fix (same action, equal params); and it
passes only when it goes deeper: the archived root reappears as a non-root
node of the candidate (by the same tests) or the candidate has more links.
Every similar archived chain is held to this, most similar first.

Speed
-----
`ArchiveIndex` is built once per store. Archived chains are bucketed by
symptom (source, service) and each bucket holds a prefix-filter index
(AllPairs/PPJoin) for both token spaces: tokens ordered rarest first, each
chain indexed under the first |S| - ceil(t*|S|) + 1 of its tokens. Any chain
with Jaccard >= t shares one of those prefix tokens with the candidate's own
prefix, so only chains sharing a rare token are compared exactly: no false
negatives, and a few dozen comparisons instead of a scan of the bucket.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain as concat
from typing import Any, Collection, Iterable, Mapping, NamedTuple, Sequence

from agent.gate.matching import _get, has_condition, observe_key
from agent.gate.settings import GateSettings
from agent.models import CheckResult

_WORD = re.compile(r"\w+")
_SUFFIXES = ("ing", "ed", "es", "s", "er", "ly")


# --------------------------------------------------------------------------- features


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """Crude and consistent: strip one common inflection, then a final 'e' (cache, caches, cached -> cach)."""
    if len(word) > 4 and not word.isdigit():
        for suf in _SUFFIXES:
            if word.endswith(suf) and len(word) - len(suf) >= 3 and not (suf == "s" and word.endswith("ss")):
                word = word[: -len(suf)]
                break
        if word.endswith("e") and len(word) > 3:
            word = word[:-1]
    return word


def raw_words(statements: Iterable[str]) -> frozenset[str]:
    """The contract's word set: lowercase words of all node statements."""
    out: set[str] = set()
    for text in statements:
        out.update(_WORD.findall(text.lower()))
    return frozenset(out)


@lru_cache(maxsize=1 << 14)
def content_words(text: str, stopwords: frozenset[str]) -> tuple[str, ...]:
    """Sorted distinct stems of the statement's words that are not stopwords."""
    return tuple(sorted({stem(w) for w in _WORD.findall(text.lower()) if w not in stopwords}))


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


def _obs_feature(observe: Any) -> str | None:
    if observe is None or not has_condition(observe):
        return None
    return "\x00obs:" + "\x00".join(map(str, observe_key(observe)))


def fix_key(fix: Any) -> tuple[str, str] | None:
    if fix is None:
        return None
    return (str(_get(fix, "action") or "").strip(), json.dumps(_canon(_get(fix, "params") or {}), sort_keys=True))


def _canon(value: Any) -> Any:
    """Params compare by meaning: 500 and "500" are the same value, key order does not matter."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if type(value) is dict or isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    return str(value).strip()


class Root(NamedTuple):
    id: str
    statement: str
    norm: str
    content: tuple[str, ...]  # sorted distinct content stems
    obs: tuple  # () when the node has no usable observe


def _root_of(node: Any, stopwords: frozenset[str]) -> Root:
    stmt = str(_get(node, "statement") or "")
    obs = _get(node, "observe")
    return Root(
        id=str(_get(node, "id")),
        statement=stmt,
        norm=normalised(stmt),
        content=content_words(stmt, stopwords),
        obs=observe_key(obs) if obs is not None and has_condition(obs) else (),
    )


def same_condition(a: Root, b: Root) -> str | None:
    """Why two nodes state the same condition, or None."""
    if a.norm and a.norm == b.norm:
        return "the same statement"
    if a.content and a.content == b.content:
        return "the same statement, reworded"
    if a.obs and a.obs == b.obs:
        return "the same observe"
    return None


@dataclass(frozen=True, slots=True)
class Features:
    """What the archive check needs of one chain, as plain data (tuples when archived, to keep 100k small)."""

    id: str
    bucket: tuple[str, str] | None  # symptom observe (source, service); None: cannot be compared
    words: Collection[str]  # distinct, lowercase statement words
    feats: Collection[str]  # distinct normalised features
    n_links: int
    root: Root
    others: tuple[Root, ...]  # every non-root node
    fix: tuple[str, str] | None
    fix_action: str
    resolved_at: str | None = None


def features(chain: Any, stopwords: frozenset[str], resolved_at: str | None = None, *,
             archived: bool = False) -> Features:
    """Works on a Chain model or on the chain's JSON dict. An archived chain keeps tuples and no non-root nodes."""
    nodes = list(_get(chain, "nodes") or [])
    root_id, symptom_id = _get(chain, "root"), _get(chain, "symptom")
    by_id = {_get(n, "id"): n for n in nodes}
    sym = by_id.get(symptom_id)
    sym_obs = _get(sym, "observe") if sym is not None else None
    bucket = (str(_get(sym_obs, "source")), str(_get(sym_obs, "service") or "")) if sym_obs is not None else None
    statements = [str(_get(n, "statement") or "") for n in nodes]
    feats: set[str] = set()
    for n, stmt in zip(nodes, statements):
        feats.update(content_words(stmt, stopwords))
        f = _obs_feature(_get(n, "observe"))
        if f:
            feats.add(f)
    fix = _get(chain, "fix")
    root_node = by_id.get(root_id)
    words = raw_words(statements)
    return Features(
        id=str(_get(chain, "id")),
        bucket=bucket,
        words=tuple(_intern(words)) if archived else words,
        feats=tuple(_intern(feats)) if archived else frozenset(feats),
        n_links=len(_get(chain, "links") or []),
        root=_root_of(root_node, stopwords) if root_node is not None else Root(str(root_id), "", "", (), ()),
        others=() if archived else tuple(
            _root_of(n, stopwords) for n in sorted(nodes, key=lambda n: _get(n, "id")) if _get(n, "id") != root_id),
        fix=fix_key(fix),
        fix_action=str(_get(fix, "action") or "") if fix is not None else "",
        resolved_at=resolved_at,
    )


def _intern(tokens: Iterable[str]) -> Iterable[str]:
    """One string object per distinct token across the archive (sys.intern drops them when unused)."""
    return map(sys.intern, tokens)


def jaccard(a: Collection[str], b: Collection[str]) -> float:
    """Jaccard index of two collections of distinct tokens (sets or tuples)."""
    if not a or not b:
        return 0.0
    if not isinstance(a, (set, frozenset)):
        a, b = b, a
    if not isinstance(a, (set, frozenset)):
        a = frozenset(a)
    inter = len(a.intersection(b))
    return inter / (len(a) + len(b) - inter)


def similarity(a: Features, b: Features) -> float:
    """0 unless the symptoms are observed alike; else the larger of the raw and normalised Jaccard indices."""
    if a.bucket is None or a.bucket != b.bucket:
        return 0.0
    return max(jaccard(a.words, b.words), jaccard(a.feats, b.feats))


# --------------------------------------------------------------------------- index


def _prefix_len(size: int, t: float) -> int:
    return size - math.ceil(t * size - 1e-9) + 1


class _Space:
    """Prefix-filter index of one token space inside one bucket."""

    __slots__ = ("rank", "postings")

    def __init__(self, sets: Sequence[Collection[str]], t: float):
        df = Counter(concat.from_iterable(sets))
        self.rank = {tok: i for i, tok in enumerate(sorted(df, key=lambda k: (df[k], k)))}
        rank = self.rank
        postings: dict[str, list[int]] = {}
        for idx, s in enumerate(sets):
            if not s:
                continue
            for tok in sorted(s, key=rank.__getitem__)[: _prefix_len(len(s), t)]:
                postings.setdefault(tok, []).append(idx)
        # Tuples of ints (or a bare int for the many tokens only one chain has) are immutable and untracked by the
        # garbage collector: a big index costs no collection pauses, and little memory.
        self.postings: dict[str, int | tuple[int, ...]] = {
            tok: ids[0] if len(ids) == 1 else tuple(ids) for tok, ids in postings.items()
        }

    def candidates(self, query: Collection[str], t: float, out: set[int]) -> None:
        if not query:
            return
        rank = self.rank
        # Tokens no archived chain has sort first: they are in nobody's prefix, which keeps the order total.
        ordered = sorted(query, key=lambda tok: (rank.get(tok, -1), tok))
        postings = self.postings
        for tok in ordered[: _prefix_len(len(query), t)]:
            hit = postings.get(tok)
            if hit is None:
                continue
            if type(hit) is int:
                out.add(hit)
            else:
                out.update(hit)


class _Bucket:
    """The archived chains of one symptom, as columns of immutable tuples.

    Columns of tuples instead of one object per chain: the garbage collector
    untracks tuples (and dicts) holding only strings, numbers and untracked
    tuples, so after its first pass a 100k-chain index is never traversed
    again; full collections stay as quick as without the archive.
    """

    __slots__ = ("key", "ids", "resolved", "words", "feats", "n_links", "roots", "fixes", "word_space", "feat_space")

    def __init__(self, key: tuple[str, str], items: Sequence[Features], t: float):
        self.key = key
        self.ids = tuple(f.id for f in items)
        self.resolved = tuple(f.resolved_at for f in items)
        self.words = tuple(tuple(f.words) for f in items)
        self.feats = tuple(tuple(f.feats) for f in items)
        self.n_links = tuple(f.n_links for f in items)
        self.roots = tuple(tuple(f.root) for f in items)
        self.fixes = tuple((f.fix, f.fix_action) for f in items)
        self.word_space = _Space(self.words, t)
        self.feat_space = _Space(self.feats, t)

    def __len__(self) -> int:
        return len(self.ids)

    def record(self, i: int) -> Features:
        fix, action = self.fixes[i]
        return Features(id=self.ids[i], bucket=self.key, words=self.words[i], feats=self.feats[i],
                        n_links=self.n_links[i], root=Root._make(self.roots[i]), others=(), fix=fix,
                        fix_action=action, resolved_at=self.resolved[i])

    def records(self) -> list[Features]:
        return [self.record(i) for i in range(len(self))]


def _resolved(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "strftime"):
        from agent.models import rfc3339

        return rfc3339(value)
    return str(value)


class ArchiveIndex:
    """Archived chains indexed for the archive check; build once per store and reuse for every chain judged.

    `entries` are ArchiveEntry models or their JSON dicts ({"chain": ..., "resolved_at": ...}). The index keeps
    only compact features of each chain, never the entries themselves.
    """

    def __init__(self, entries: Sequence[Any] = (), settings: GateSettings | None = None, *,
                 threshold: float | None = None):
        settings = settings or GateSettings.load()
        self.threshold = float(threshold if threshold is not None else settings.archive_similarity)
        self.stopwords = settings.stopwords
        grouped: dict[tuple[str, str], list[Features]] = {}
        self.size = 0
        for entry in entries:
            chain = _get(entry, "chain")
            f = features(chain, self.stopwords, _resolved(_get(entry, "resolved_at")), archived=True)
            self.size += 1
            if f.bucket is not None:
                grouped.setdefault(f.bucket, []).append(f)
        self._buckets = {k: _Bucket(k, v, self.threshold) for k, v in grouped.items()}

    def at(self, threshold: float) -> "ArchiveIndex":
        """The same archive indexed for another similarity threshold (the features are shared, not recomputed)."""
        if threshold == self.threshold:
            return self
        other = object.__new__(ArchiveIndex)
        other.threshold, other.stopwords, other.size = float(threshold), self.stopwords, self.size
        other._buckets = {k: _Bucket(k, b.records(), other.threshold) for k, b in self._buckets.items()}
        return other

    def __len__(self) -> int:
        return self.size

    def similar(self, cand: Features) -> list[tuple[float, Features]]:
        """Archived chains at or above the threshold, most similar first (ties: id, resolved_at)."""
        found, _ = self._search(cand)
        return found

    def _search(self, cand: Features) -> tuple[list[tuple[float, Features]], float]:
        t = self.threshold
        bucket = self._buckets.get(cand.bucket) if cand.bucket is not None else None
        if bucket is None:
            return [], 0.0
        idx: set[int] = set()
        bucket.word_space.candidates(cand.words, t, idx)
        bucket.feat_space.candidates(cand.feats, t, idx)
        best = 0.0
        found: list[tuple[float, Features]] = []
        words, feats = bucket.words, bucket.feats
        # jaccard() inlined: this loop is the archive check's hot path.
        cw, cf = frozenset(cand.words), frozenset(cand.feats)
        nw, nf = len(cw), len(cf)
        for i in idx:
            w, f = words[i], feats[i]
            inter = len(cw.intersection(w))
            sim = inter / (nw + len(w) - inter) if w else 0.0
            inter = len(cf.intersection(f))
            if f and inter / (nf + len(f) - inter) > sim:
                sim = inter / (nf + len(f) - inter)
            if sim >= t:
                found.append((sim, bucket.record(i)))
            elif sim > best:
                best = sim
        found.sort(key=_order)
        return found, best


def _order(pair: tuple[float, Features]) -> tuple:
    """Most similar first; then by id, resolution and content, so input order never decides."""
    sim, f = pair
    return (-sim, f.id, f.resolved_at or "", f.root.statement, f.fix or ("", ""))


def full_scan(cand: Features, archived: Sequence[Features], t: float) -> list[tuple[float, Features]]:
    """The same answer as ArchiveIndex.similar by comparing against every chain (tests and the benchmark's baseline)."""
    found = [(s, f) for f in archived if (s := similarity(cand, f)) >= t]
    found.sort(key=_order)
    return found


# --------------------------------------------------------------------------- the check


def _verdict(cand: Features, old: Features) -> tuple[list[str], str | None]:
    """(repeats, depth): what the candidate repeats of `old`, and how it goes deeper (None: it does not)."""
    repeats: list[str] = []
    why = same_condition(cand.root, old.root)
    if why:
        repeats.append(f"its root: {cand.root.id} is {why} as {old.id}'s root {old.root.id} '{old.root.statement}'")
    if cand.fix is not None and cand.fix == old.fix:
        repeats.append(f"its fix: {cand.fix_action} with the same params")
    depth = None
    for node in cand.others:
        why = same_condition(node, old.root)
        if why:
            depth = f"{old.id}'s root reappears as {node.id} ({why}), below the new root {cand.root.id}"
            break
    if depth is None and cand.n_links > old.n_links:
        depth = f"the path goes further ({cand.n_links} links against {old.n_links})"
    return repeats, depth


def check_archive(chain: Any, index: ArchiveIndex, settings: GateSettings) -> CheckResult:
    cand = features(chain, index.stopwords)
    found, best = index._search(cand)
    t = index.threshold
    if not found:
        where = f"{cand.bucket[0]}/{cand.bucket[1] or '-'}" if cand.bucket else "(symptom has no observe)"
        return CheckResult(
            passed=True,
            reason=f"no archived chain is similar (same symptom {where}, similarity >= {t:g}) among {len(index)} archived",
            escalated=False,
            matched=None,
            similarity=round(best, 3),
            details={"similar": []},
        )
    similar = [{"chain": f.id, "similarity": round(s, 3), "resolved_at": f.resolved_at} for s, f in found[:10]]
    for sim, old in found:
        repeats, depth = _verdict(cand, old)
        if repeats or depth is None:
            head = (
                f"escalated: archived chain {old.id} (similarity {sim:.2f}"
                + (f", resolved {old.resolved_at}" if old.resolved_at else "")
                + ") explained the same failure and its fix did not hold"
            )
            parts = [f"the candidate repeats {r}" for r in repeats]
            if not repeats and depth is None:
                parts.append(
                    f"the root {cand.root.id} is different but not deeper: {old.id}'s root {old.root.id} does not "
                    f"reappear below it and the path is no longer ({cand.n_links} links against {old.n_links})"
                )
            if any(r.startswith("its root") for r in repeats):
                parts.append(f"find why {old.id}'s root '{old.root.statement}' held and root the chain there")
            elif depth is None:
                parts.append(
                    f"a new root must lie below {old.id}'s root '{old.root.statement}' (keep it as a node on the "
                    f"path) or the path must go further than {old.n_links} links"
                )
            if any(r.startswith("its fix") for r in repeats):
                parts.append(f"choose a fix other than {old.fix_action} with these params, one that removes the deeper root")
            return CheckResult(
                passed=False,
                reason=head + "; " + "; ".join(parts),
                escalated=True,
                matched=old.id,
                similarity=round(sim, 3),
                details={"similar": similar, "repeats": repeats, "deeper": depth},
            )
    sim, old = found[0]
    _, depth = _verdict(cand, old)
    return CheckResult(
        passed=True,
        reason=(
            f"escalated: similar to archived chain {old.id} (similarity {sim:.2f}) whose fix did not hold; "
            f"the candidate goes deeper ({depth}) with a different root and fix"
            + (f", and so against {len(found) - 1} more similar chain(s)" if len(found) > 1 else "")
        ),
        escalated=True,
        matched=old.id,
        similarity=round(sim, 3),
        details={"similar": similar, "repeats": [], "deeper": depth},
    )

