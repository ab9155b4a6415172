"""The offline analyst: walks the knowledge base's causal graphs against the evidence and drafts chains.

No model and no network. Given the symptom signal, every signal recorded
around it (probe results included) and the archive, it

1. finds the modes whose symptom patterns recognise the symptom signal;
2. walks each mode's graph backwards from the entry node, keeping a node only
   when a stored signal matches one of its observe alternatives (service- and
   time-consistent), running the node's probes first when a probe runner is
   given (live mode);
3. turns every supported path that ends at a root node into a chain, deepest
   first, and gates them in order of preference; the first that passes wins;
4. otherwise escalates with the best rejected draft, the gate's reasons and
   the evidence that was missing.

The walk never invents evidence: every node of a draft is backed by a signal
it names (`Draft.evidence`).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Sequence

from agent.analysis.knowledge import EdgeSpec, Mode, NodeSpec, ObserveSpec, SymptomSpec, fill, variables
from agent.analysis.patterns import concretise, message_regex, required_literals
from agent.models import FAILURE_LEVELS, ArchiveEntry, Chain, GateResult, Signal

ProbeFn = Callable[[dict[str, Any]], list[Signal]]
JudgeFn = Callable[[Chain], GateResult]

_MAX_DRAFTS_PER_MODE = 24
_MAX_GATED = 48
_MAX_ALTS_PER_NODE = 2


# --------------------------------------------------------------------------- context and evidence index


@dataclass
class Context:
    """Everything one analysis reads: the symptom, the evidence, the archive and (live mode) a probe runner."""

    symptom: Signal
    signals: list[Signal]
    archive: list[ArchiveEntry] = field(default_factory=list)
    probe: ProbeFn | None = None
    config_files: list[str] = field(default_factory=list)
    window_s: float = 24 * 3600.0
    skew_s: float = 5.0
    necessity_s: float = 6 * 3600.0
    episode_gap_s: float = 15 * 60.0
    min_links: int = 3
    max_links: int = 7
    recurrence: bool = False
    recurrence_since: datetime | None = None
    probe_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_source: dict[str, list[Signal]] = {}
        self._scoped: dict[tuple[str, str], tuple[list[Signal], list[datetime]]] = {}
        self._hits: dict[tuple[str, str, str], tuple[list[Signal], list[datetime]]] = {}
        self._joined: dict[tuple[str, str], tuple[str, list[int]]] = {}
        self._ids: set[str] = set()
        self.probed: dict[str, list[Signal]] = {}
        self.add(self.signals, initial=True)

    def add(self, signals: Iterable[Signal], initial: bool = False) -> None:
        fresh = [s for s in signals if s.id not in self._ids]
        for s in fresh:
            self._ids.add(s.id or "")
            self._by_source.setdefault(s.source, []).append(s)
        if not initial:
            self.signals.extend(fresh)
        for src in {s.source for s in fresh}:
            self._by_source[src].sort(key=lambda s: (s.ts, s.id or ""))
            for scope in ("service", "host", "any"):
                self._scoped.pop((src, scope), None)
            for key in [k for k in self._hits if k[0] == src]:
                del self._hits[key]
            for key in [k for k in self._joined if k[0] == src]:
                del self._joined[key]

    def of_source(self, source: str) -> list[Signal]:
        return self._by_source.get(source, [])

    def between(self, source: str, lo: datetime | None, hi: datetime | None, scope: str = "any") -> list[Signal]:
        """Signals of one source within a scope with lo <= ts <= hi (either bound open), in time order."""
        key = (source, scope)
        if key not in self._scoped:
            lst = [s for s in self._by_source.get(source, []) if self.in_scope(s, scope)]
            self._scoped[key] = (lst, [s.ts for s in lst])
        lst, times = self._scoped[key]
        i = bisect_left(times, lo) if lo is not None else 0
        j = bisect_right(times, hi) if hi is not None else len(lst)
        return lst[i:j]

    @property
    def service(self) -> str | None:
        return self.symptom.service

    def matching(self, source: str, scope: str, pat: re.Pattern[str]) -> tuple[list[Signal], list[datetime]]:
        """Signals of a source and scope whose message the regex matches, in time order: one scan per regex for the
        whole analysis, however many paths and modes revisit the node."""
        key = (source, scope, pat.pattern)
        hit = self._hits.get(key)
        if hit is None:
            self.between(source, None, None, scope)
            lst, _times = self._scoped[(source, scope)]
            search = pat.search
            needles = required_literals(pat.pattern)
            if needles is None:
                found = [s for s in lst if search(s.message)]
            else:
                found = [lst[i] for i in self._candidates(source, scope, needles) if search(lst[i].message)]
            hit = self._hits[key] = (found, [s.ts for s in found])
        return hit

    def _candidates(self, source: str, scope: str, needles: tuple[str, ...]) -> list[int]:
        """Indexes of the scoped signals whose lowercased message contains one of the needles: str.find over
        one joined text instead of a regex per message."""
        key = (source, scope)
        joined = self._joined.get(key)
        if joined is None:
            texts = [s.message.lower() for s in self._scoped[key][0]]
            starts, pos = [], 0
            for t in texts:
                starts.append(pos)
                pos += len(t) + 1
            joined = self._joined[key] = ("\x00".join(texts), starts)
        text, starts = joined
        found: set[int] = set()
        for needle in needles:
            at = text.find(needle)
            while at != -1:
                line = bisect_right(starts, at) - 1
                found.add(line)
                nxt = starts[line + 1] if line + 1 < len(starts) else len(text)
                at = text.find(needle, nxt)
        return sorted(found)

    def in_scope(self, s: Signal, scope: str) -> bool:
        if scope == "any" or s.service is None or self.service is None or s.service == self.service:
            return True
        if scope == "host":
            return s.host is None or self.symptom.host is None or s.host == self.symptom.host
        return False

    def run_probe(self, spec: dict[str, Any]) -> list[Signal]:
        if self.probe is None:
            return []
        key = repr(sorted(spec.items()))
        if key not in self.probed:
            try:
                found = self.probe(spec)
            except Exception as exc:  # a probe that cannot run is missing evidence, not a failed analysis
                found = []
                self.probed[key] = found
                self.probe_errors.append(f"probe {spec.get('kind')} failed: {exc}")
                return found
            self.probed[key] = found
            self.add(found)
        return self.probed[key]


@dataclass(frozen=True)
class Support:
    """One signal that shows a node's condition, and what it tells the walk."""

    signal: Signal
    observe: dict[str, Any]
    vars: dict[str, str]
    t: datetime  # the time deeper causes must not follow (events: this signal; states: the effect's time)


@dataclass
class Step:
    node: NodeSpec
    support: Support
    edge: EdgeSpec | None  # the edge from this node to the previous (its effect); None for the symptom


@dataclass
class Draft:
    mode: Mode
    entry: SymptomSpec
    chain: Chain
    evidence: dict[str, str]  # chain node id -> signal id
    kb_nodes: list[str]  # knowledge-base node ids, symptom first
    complete: bool
    gate: GateResult | None = None

    @property
    def links(self) -> int:
        return len(self.chain.links)

    def score(self) -> tuple:
        distinct = len(set(self.evidence.values()))
        return (self.complete, self.entry.weight, self.links, distinct)


@dataclass
class Outcome:
    passed: Draft | None
    best: Draft | None
    drafts: list[Draft]
    candidates: list[tuple[Mode, SymptomSpec]]
    missing: list[str]
    notes: list[str]
    reason: str

    @property
    def escalated(self) -> bool:
        return self.passed is None

    @property
    def chosen(self) -> Draft | None:
        return self.passed or self.best


# --------------------------------------------------------------------------- recognising the symptom


def candidates(modes: Sequence[Mode], symptom: Signal) -> list[tuple[Mode, SymptomSpec, dict[str, str]]]:
    """(mode, entry, captured groups) for every mode that recognises the symptom; best weight per entry node."""
    out: list[tuple[Mode, SymptomSpec, dict[str, str]]] = []
    failure = symptom.level in FAILURE_LEVELS
    for mode in modes:
        best: dict[str, tuple[SymptomSpec, dict[str, str]]] = {}
        for entry in mode.symptoms:
            if symptom.source not in entry.sources or (entry.level == "failure" and not failure):
                continue
            m = entry.regex.search(symptom.message)
            if m is None:
                continue
            cur = best.get(entry.node)
            if cur is None or entry.weight > cur[0].weight:
                groups = {k: v for k, v in m.groupdict().items() if v is not None}
                best[entry.node] = (entry, groups)
        out += [(mode, e, g) for e, g in best.values()]
    out.sort(key=lambda c: -c[1].weight)
    return out


def symptom_observe(symptom: Signal) -> dict[str, Any]:
    obs: dict[str, Any] = {"source": symptom.source}
    if symptom.service:
        obs["service"] = symptom.service
    obs["match"] = message_regex(symptom.message)
    return obs


def _matches(observe: dict[str, Any], s: Signal) -> bool:
    if observe["source"] != s.source:
        return False
    if observe.get("service") is not None and observe["service"] != s.service:
        return False
    return re.search(observe["match"], s.message) is not None


def episode_starts(ctx: Context, observe: dict[str, Any]) -> list[datetime]:
    scope = "service" if observe.get("service") else "any"
    hits = [s for s in ctx.between(observe["source"], None, None, scope)
            if s.level in FAILURE_LEVELS and _matches(observe, s)]
    starts: list[datetime] = []
    last: datetime | None = None
    for s in hits:
        if last is None or (s.ts - last).total_seconds() >= ctx.episode_gap_s:
            starts.append(s.ts)
        last = s.ts
    return starts


# --------------------------------------------------------------------------- finding support for a node


def _agree(groups: dict[str, str | None], known: dict[str, str]) -> dict[str, str] | None:
    """New variables from a match, or None when a group contradicts what the path already established."""
    new: dict[str, str] = {}
    for k, v in groups.items():
        if v is None:
            continue
        if k in known and k not in ("metric", "metric_value") and known[k] != v:
            return None
        if k not in known:
            new[k] = v
    return new


def _event_range(ctx: Context, node: NodeSpec, t_effect: datetime) -> tuple[datetime, datetime]:
    lo = t_effect - timedelta(seconds=node.within_s or ctx.window_s)
    # A recurrence is explained by what happened after the fix that did not hold: events before it
    # belong to the episode that fix already explained.
    if ctx.recurrence and ctx.recurrence_since is not None and ctx.recurrence_since > lo:
        lo = ctx.recurrence_since
    return lo, t_effect + timedelta(seconds=ctx.skew_s)


def _probe_floor(ctx: Context, node: NodeSpec) -> datetime:
    """State facts older than the analysis window, or older than the last fix for a recurrence, are stale."""
    floor = ctx.symptom.ts - timedelta(seconds=ctx.window_s)
    if ctx.recurrence_since is not None and ctx.recurrence_since > floor:
        floor = ctx.recurrence_since
    return floor


def support_regex(ctx: Context, node: NodeSpec, o: ObserveSpec, known: dict[str, str],
                  t_effect: datetime, limit: int = 1) -> list[Support]:
    """The latest signals (newest first) matching one regex alternative; at most `limit`, each capturing
    different values (two config files with the same bad key are two explanations)."""
    regex = fill(o.match or "", known, regex=True)
    if regex is None:
        return []
    try:
        pat = re.compile(regex)
    except re.error:
        return []
    hits, times = ctx.matching(o.source, node.scope, pat)
    if o.source == "probe":
        ordered = hits[bisect_left(times, _probe_floor(ctx, node)):][::-1]
        t_of = lambda s: t_effect  # noqa: E731 - states have no time of their own
    else:
        lo, hi = _event_range(ctx, node, t_effect)
        ordered = hits[bisect_left(times, lo):bisect_right(times, hi)][::-1]
        t_of = lambda s: s.ts  # noqa: E731
    found: list[Support] = []
    seen: set[tuple] = set()
    for s in ordered:
        m = pat.search(s.message)
        if m is None:
            continue
        new = _agree(m.groupdict(), known)
        if new is None:
            continue
        key = tuple(sorted(new.items()))
        if key in seen:
            continue
        seen.add(key)
        obs: dict[str, Any] = {"source": o.source}
        if ctx.service and s.service == ctx.service:
            obs["service"] = ctx.service
        # The emitted observe names what was found (file, key, value, process), not the KB's generic pattern.
        captured = {k: v for k, v in m.groupdict().items() if v is not None}
        obs["match"] = concretise(regex, captured, s.message)
        found.append(Support(signal=s, observe=obs, vars=new, t=t_of(s)))
        if len(found) >= limit:
            break
    return found


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def support_metric(ctx: Context, node: NodeSpec, o: ObserveSpec, known: dict[str, str], t_effect: datetime,
                   episodes: list[datetime]) -> Support | None:
    try:
        name_re = re.compile(fill(o.metric or "", known, regex=True) or "")
    except re.error:
        return None
    lo, hi = _event_range(ctx, node, t_effect)
    by_name: dict[str, list[Signal]] = {}
    names: dict[str, bool] = {}
    for s in ctx.between("metric", None, None, node.scope):
        name = s.attrs.get("metric") if s.attrs else None
        if s.value is None or not isinstance(name, str):
            continue
        ok = names.get(name)
        if ok is None:
            ok = names[name] = name_re.fullmatch(name) is not None
        if ok:
            by_name.setdefault(name, []).append(s)
    up = o.op in (">", ">=")
    for name, series in sorted(by_name.items(), key=lambda kv: -len(kv[1])):
        window = [s for s in series if lo <= s.ts <= hi]
        if not window:
            continue
        values = [float(s.value) for s in window]  # type: ignore[arg-type]
        extreme = max(values) if up else min(values)
        if not _deviates(window, values, extreme, o.op or ">="):
            continue
        if o.value == "observed":
            bound = extreme
            # Every episode must be preceded by a match (the gate's necessity): the weakest per-episode peak.
            previous: datetime | None = None
            for start in sorted(episodes):
                # The peak that preceded this episode: since the episode before it (a rise before an earlier
                # episode belongs to that one), and for a recurrence since the fix that did not hold.
                floor = start - timedelta(seconds=ctx.necessity_s)
                for other in (previous, ctx.recurrence_since):
                    if other is not None and other > floor:
                        floor = other
                previous = start
                near = [float(s.value) for s in series  # type: ignore[arg-type]
                        if floor <= s.ts <= start + timedelta(seconds=ctx.skew_s)]
                if near:
                    peak = max(near) if up else min(near)
                    bound = min(bound, peak) if up else max(bound, peak)
        else:
            bound = float(o.value)  # type: ignore[arg-type]
        from agent.gate.matching import OPS

        test = OPS[o.op or ">="]
        hits = [s for s in window if test(float(s.value), bound)]  # type: ignore[arg-type]
        if not hits:
            continue
        chosen = hits[-1]
        obs: dict[str, Any] = {"source": "metric"}
        if ctx.service and chosen.service == ctx.service:
            obs["service"] = ctx.service
        obs.update(metric=name, op=o.op, value=bound)
        return Support(signal=chosen, observe=obs, vars={"metric": name, "metric_value": _fmt(bound)}, t=chosen.ts)
    return None


def _deviates(window: list[Signal], values: list[float], extreme: float, op: str) -> bool:
    """A metric is evidence only when the sensor flagged it or the series moved (README: metric alternatives)."""
    if any(s.level in ("WARNING", "ERROR", "CRITICAL") for s in window) or len(values) < 3:
        return True
    if op in (">", ">="):
        low = min(values)
        return extreme >= low * 1.2 if low > 0 else extreme > low
    if op in ("<", "<="):
        high = max(values)
        return extreme <= high * 0.8 if high > 0 else extreme < high
    return True


def support_node(ctx: Context, node: NodeSpec, known: dict[str, str], t_effect: datetime,
                 episodes: list[datetime]) -> list[Support]:
    """Evidence for a node, one Support per observe alternative that matches (alternative order)."""
    if ctx.probe is not None:
        for spec in node.probes:
            for filled in _fill_probe(spec, known, ctx):
                ctx.run_probe(filled)
    found: list[Support] = []
    seen: set[str] = set()
    for o in node.observes:
        if o.is_metric:
            sup = support_metric(ctx, node, o, known, t_effect, episodes)
            sups = [sup] if sup is not None else []
        else:
            sups = support_regex(ctx, node, o, known, t_effect, limit=_MAX_ALTS_PER_NODE)
        for sup in sups:
            if sup.signal.id not in seen:
                seen.add(sup.signal.id or "")
                found.append(sup)
        if len(found) >= _MAX_ALTS_PER_NODE:
            break
    return found[:_MAX_ALTS_PER_NODE]


def _fill_probe(spec: dict[str, Any], known: dict[str, str], ctx: Context) -> list[dict[str, Any]]:
    """Probe specs with variables filled; {{config_file}} expands to each of the service's config files."""
    uses_files = any("config_file" in variables(v) for v in spec.values() if isinstance(v, str))
    choices = ctx.config_files if uses_files else [None]
    out: list[dict[str, Any]] = []
    for cf in choices:
        values = dict(known)
        if cf is not None:
            values["config_file"] = cf
        filled: dict[str, Any] = {}
        for k, v in spec.items():
            if isinstance(v, str):
                text = fill(v, values)
                if text is None:
                    break
                filled[k] = text
            else:
                filled[k] = v
        else:
            if ctx.service and "service" not in filled:
                filled["service"] = ctx.service
            out.append(filled)
    return out


# --------------------------------------------------------------------------- walking a mode's graph


def _base_vars(ctx: Context, groups: dict[str, str]) -> dict[str, str]:
    s = ctx.symptom
    known = {k: v for k, v in groups.items() if v is not None}
    known.setdefault("service", s.service or s.host or "the service")
    if s.host:
        known.setdefault("host", s.host)
    known.setdefault("symptom", s.message.splitlines()[0] if s.message else "")
    return known


def walk(ctx: Context, mode: Mode, entry: SymptomSpec, groups: dict[str, str],
         missing: list[str]) -> list[list[Step]]:
    """Every supported path from the entry node backwards: complete ones end at a root node."""
    obs = symptom_observe(ctx.symptom)
    eps = episode_starts(ctx, obs)
    start = Support(signal=ctx.symptom, observe=obs, vars=_base_vars(ctx, groups), t=ctx.symptom.ts)
    paths: list[list[Step]] = []
    max_nodes = ctx.max_links + 1

    def known_of(path: list[Step]) -> dict[str, str]:
        out: dict[str, str] = {}
        for step in path:
            for k, v in step.support.vars.items():
                out.setdefault(k, v)
        return out

    def dfs(path: list[Step]) -> None:
        if len(paths) >= _MAX_DRAFTS_PER_MODE * 4:
            return
        here = path[-1]
        paths.append(list(path))
        if len(path) >= max_nodes:
            return
        known = known_of(path)
        on_path = {st.node.id for st in path}
        for edge in mode.causes_of.get(here.node.id, ()):
            cause = mode.nodes[edge.cause]
            if cause.id in on_path or (cause.recurrence and not ctx.recurrence):
                continue
            sups = support_node(ctx, cause, known, here.support.t, eps)
            if not sups:
                what = preview(cause.statement, known)
                alts = "; ".join(_describe_spec(o) for o in cause.observes)
                note = f"{mode.id}: no signal shows '{what}' ({cause.id}); looked for {alts}"
                if note not in missing:
                    missing.append(note)
                continue
            for sup in sups:
                dfs(path + [Step(node=cause, support=sup, edge=edge)])

    dfs([Step(node=mode.nodes[entry.node], support=start, edge=None)])
    return paths


def preview(template: str, known: dict[str, str]) -> str:
    """A template with what is known filled in and the rest shown as <name> (for people, never for matching)."""
    from agent.analysis.knowledge import VAR

    return VAR.sub(lambda m: known.get(m.group(1), f"<{m.group(1)}>"), template)


def _describe_spec(o: ObserveSpec) -> str:
    if o.is_metric:
        return f"{o.source} metric /{o.metric}/ {o.op} {o.value}"
    return f"{o.source} /{o.match}/"


# --------------------------------------------------------------------------- drafting chains


def resolve_vars(ctx: Context, mode: Mode, known: dict[str, str]) -> dict[str, str]:
    """Path variables, then facts, then defaults (which may themselves be templates)."""
    out = dict(known)
    # Every fact on the issue's own service first, then on the host: a URL in another service's log
    # names another endpoint, and must not win over the one the issue's own signals name.
    for scope in ("service", "host"):
        for fact in mode.facts:
            regex = fill(fact.match or "", out, regex=True)
            if regex is None:
                continue
            try:
                pat = re.compile(regex)
            except re.error:
                continue
            if not set(pat.groupindex) - set(out):
                continue
            hit = next((m for s in reversed(ctx.matching(fact.source, scope, pat)[0]) if (m := pat.search(s.message))),
                       None)
            if hit:
                for k, v in hit.groupdict().items():
                    if v is not None:
                        out.setdefault(k, v)
    for _ in range(3):  # defaults may refer to each other
        for k, v in mode.defaults.items():
            if k not in out:
                text = fill(v, out)
                if text is not None:
                    out[k] = text
    return out


def draft_chain(ctx: Context, mode: Mode, entry: SymptomSpec, path: list[Step], number: int) -> Draft | None:
    """A contract chain from one supported path; None when a template cannot be filled from the evidence."""
    known: dict[str, str] = {}
    for step in path:
        for k, v in step.support.vars.items():
            known.setdefault(k, v)
    values = resolve_vars(ctx, mode, known)
    nodes: list[dict[str, Any]] = []
    evidence: dict[str, str] = {}
    for i, step in enumerate(path):
        statement = fill(step.node.statement, values)
        if statement is None:
            return None
        node: dict[str, Any] = {"id": f"n{i}", "statement": statement, "observe": step.support.observe}
        evidence[f"n{i}"] = step.support.signal.id or ""
        nodes.append(node)
    links = []
    for i, step in enumerate(path[1:], start=1):
        mech = fill(step.edge.mechanism, values) if step.edge else None
        if mech is None:
            return None
        links.append({"cause": f"n{i}", "effect": f"n{i - 1}", "mechanism": mech})
    last = path[-1].node
    root_id = f"n{len(path) - 1}"
    complete = False
    data: dict[str, Any] = {"id": f"{mode.id}/{number}", "symptom": "n0", "root": root_id, "nodes": nodes,
                            "links": links}
    if last.is_root and last.fix is not None and len(path) > 1:
        fix = _fix(last, values, root_id)
        if fix is not None:
            nodes[-1]["category"] = last.category
            data["fix"] = fix
            complete = True
    chain = Chain.model_validate(data)
    return Draft(mode=mode, entry=entry, chain=chain, evidence=evidence, kb_nodes=[s.node.id for s in path],
                 complete=complete)


def _fill_value(value: Any, values: dict[str, str]) -> Any:
    """Templates filled inside strings, lists and mappings; None when any variable is missing."""
    if isinstance(value, str):
        return fill(value, values)
    if isinstance(value, list):
        out = [_fill_value(v, values) for v in value]
        return None if any(v is None for v in out) else out
    if isinstance(value, dict):
        filled = {k: _fill_value(v, values) for k, v in value.items()}
        return None if any(v is None for v in filled.values()) else filled
    return value


def _fix(node: NodeSpec, values: dict[str, str], target: str) -> dict[str, Any] | None:
    spec = node.fix
    assert spec is not None
    params = _fill_value(spec.params, values)
    if params is None:
        return None
    description = fill(spec.description, values)
    if description is None:
        return None
    fix: dict[str, Any] = {"action": spec.action, "target": target, "effect": spec.effect, "params": params,
                           "description": description}
    if spec.postcondition is not None:
        post = spec.postcondition
        if post.is_metric:
            fix["postcondition"] = {"source": post.source, "metric": post.metric, "op": post.op, "value": post.value}
        else:
            regex = fill(post.match or "", values, regex=True)
            if regex is None:
                return None
            fix["postcondition"] = {"source": post.source, "match": regex}
    return fix


# --------------------------------------------------------------------------- recurrences


def similar_archive(ctx: Context) -> list[ArchiveEntry]:
    """Archived chains of this failure, i.e. fixed before: the same symptom (observe source and service), or a
    chain about the same service whose root condition shows again in signals after its resolution."""
    from agent.gate.matching import observe_matches

    out = []
    for entry in ctx.archive:
        chain = entry.chain
        obs = chain.symptom_node.observe
        if obs is not None and obs.source == ctx.symptom.source and \
                (obs.service or None) == (ctx.symptom.service or None):
            out.append(entry)
            continue
        services = {n.observe.service for n in chain.nodes if n.observe is not None and n.observe.service}
        root = chain.root_node.observe
        if ctx.service is None or ctx.service not in services or root is None:
            continue
        since = entry.resolved_at
        if any(observe_matches(root, s) for s in ctx.of_source(root.source) if since is None or s.ts > since):
            out.append(entry)
    return out


def _repeats(draft: "Draft", previous: Sequence[ArchiveEntry]) -> bool:
    """The draft's root or fix is an archived one: the fix that did not hold, proposed again."""
    root = draft.chain.root_node
    norm = " ".join(root.statement.lower().split())
    for entry in previous:
        old = entry.chain
        old_root = old.root_node
        if " ".join(old_root.statement.lower().split()) == norm:
            return True
        if root.observe is not None and old_root.observe is not None and root.observe.key() == old_root.observe.key():
            return True
        if draft.chain.fix is not None and old.fix is not None and draft.chain.fix.action == old.fix.action \
                and draft.chain.fix.params == old.fix.params:
            return True
    return False


def recurrence_notes(ctx: Context, previous: Sequence[ArchiveEntry], judge: JudgeFn | None) -> list[str]:
    """Why did the old fix not hold? Its postcondition after the fix, its root after the fix, its necessity now."""
    from agent.gate.matching import observe_matches

    notes: list[str] = []
    for entry in previous:
        old = entry.chain
        since = entry.resolved_at
        later = [s for s in ctx.signals if since is None or s.ts > since]
        fix = old.fix
        if fix is not None and fix.postcondition is not None:
            held = [s for s in later if s.source == fix.postcondition.source and observe_matches(fix.postcondition, s)]
            if held:
                notes.append(f"the postcondition of archived chain {old.id}'s fix still holds ({held[-1].message!r})")
        root_obs = old.root_node.observe
        if root_obs is not None:
            back = [s for s in later if s.source == root_obs.source and observe_matches(root_obs, s)]
            if back:
                notes.append(f"the root of archived chain {old.id} holds again after its fix: {back[0].message!r} "
                             "(the fix was reverted or overwritten)")
            elif fix is not None and fix.postcondition is not None and not any("still holds" in n for n in notes):
                notes.append(f"no evidence after the fix of archived chain {old.id} shows its postcondition or its root")
        if judge is not None:
            result = judge(old)
            cf = result.checks.counterfactual
            if not cf.passed:
                notes.append(f"archived chain {old.id}'s root was not necessary on the new history: {cf.reason}")
    return notes


# --------------------------------------------------------------------------- the analyst


def analyse(ctx: Context, modes: Sequence[Mode], judge: JudgeFn) -> Outcome:
    """Draft, gate, and pick: the first passing draft in order of preference, or the best rejected one."""
    previous = similar_archive(ctx)
    if previous and not ctx.recurrence:
        ctx.recurrence = True
    if ctx.recurrence and ctx.recurrence_since is None:
        stamps = [e.resolved_at for e in previous if e.resolved_at is not None]
        ctx.recurrence_since = max(stamps) if stamps else None

    found = candidates(modes, ctx.symptom)
    if ctx.probe is not None:
        prime_probes(ctx, found)
    missing: list[str] = []
    drafts: list[Draft] = []
    for mode, entry, groups in found:
        paths = walk(ctx, mode, entry, groups, missing)
        made = 0
        for path in sorted(paths, key=len, reverse=True):
            if len(path) - 1 > ctx.max_links:
                continue
            d = draft_chain(ctx, mode, entry, path, made + 1)
            if d is None:
                continue
            drafts.append(d)
            made += 1
            if made >= _MAX_DRAFTS_PER_MODE:
                break

    notes = recurrence_notes(ctx, previous, judge) if previous else []
    notes += ctx.probe_errors
    unique: dict[str, Draft] = {}
    for d in drafts:
        key = repr((d.mode.id, d.kb_nodes, d.chain.root_node.statement, sorted(d.evidence.values())))
        unique.setdefault(key, d)
    # A draft that repeats an archived root or fix goes last: that fix already failed to hold.
    ordered = sorted(unique.values(), key=lambda d: (not _repeats(d, previous), *d.score()), reverse=True)

    passed: Draft | None = None
    gated: list[Draft] = []
    repeated: list[Draft] = []
    for d in ordered:
        if not d.complete or d.links < ctx.min_links:
            continue
        if len(gated) >= _MAX_GATED:
            break
        d.gate = judge(d.chain)
        gated.append(d)
        if d.gate.passed and previous and _repeats(d, previous):
            # The gate only compares chains with the same symptom; the analyst also refuses to re-propose a fix
            # that did not hold when the same failure shows under another symptom.
            repeated.append(d)
            continue
        if d.gate.passed:
            passed = d
            break

    best = passed
    if best is None:
        pool = gated or [d for d in ordered if d.links >= 1]
        for d in pool:
            if d.gate is None:
                d.gate = judge(d.chain)
        best = max(pool, key=lambda d: (_checks_passed(d.gate), d.score()), default=None)

    if passed is None and repeated:
        ids = ", ".join(e.chain.id for e in previous)
        notes.append(f"every chain the evidence supports repeats the root or fix of archived chain(s) {ids}, "
                     "whose fix did not hold; the evidence of a deeper cause is missing")
    reason = _reason(ctx, found, passed, best, missing, notes)
    return Outcome(passed=passed, best=best, drafts=ordered, candidates=[(m, e) for m, e, _ in found],
                   missing=missing, notes=notes, reason=reason)


def prime_probes(ctx: Context, found: list[tuple[Mode, SymptomSpec, dict[str, str]]]) -> None:
    """Run every probe of the candidate modes that the symptom alone can fill (config files of the service,
    default crontab users, hosts named in the logs): the state facts are recorded even when the walk cannot use
    them, so an escalation shows what was looked at. Probes needing variables from deeper evidence run later,
    when the walk reaches their node."""
    done: set[str] = set()
    for mode, _entry, groups in found:
        if mode.id in done:
            continue
        done.add(mode.id)
        known = resolve_vars(ctx, mode, _base_vars(ctx, groups))
        for node in mode.nodes.values():
            if node.recurrence and not ctx.recurrence:
                continue
            for spec in node.probes:
                for filled in _fill_probe(spec, known, ctx):
                    ctx.run_probe(filled)


def _checks_passed(gate: GateResult | None) -> int:
    return 0 if gate is None else sum(1 for _, c in gate.checks if c.passed)


def _reason(ctx: Context, found: list, passed: Draft | None, best: Draft | None, missing: list[str],
            notes: list[str]) -> str:
    s = ctx.symptom
    head = f"{s.source} signal {s.id} ({s.message.splitlines()[0][:160] if s.message else ''})"
    if passed is not None:
        text = (f"mode {passed.mode.id}: {passed.links}-link chain from {head} to root "
                f"'{passed.chain.root_node.statement}' passed the gate")
        if notes:
            text += "; " + "; ".join(notes)
        return text
    if not found:
        return f"no knowledge-base mode recognises the symptom {head}; a person must analyse it"
    parts = [f"no chain passed the gate for {head}"]
    if best is not None and best.gate is not None:
        fails = best.gate.failed_reasons()
        parts.append(f"best draft (mode {best.mode.id}, {best.links} links, root '{best.chain.root_node.statement}') "
                     f"rejected: " + " | ".join(fails))
    elif best is None:
        parts.append("no mode's graph had evidence beyond the symptom")
    relevant = _relevant_missing(best, missing)
    if relevant:
        parts.append("missing evidence: " + " | ".join(relevant[:4]))
    parts += notes
    return "; ".join(parts)


def _relevant_missing(best: Draft | None, missing: list[str]) -> list[str]:
    if best is None:
        return missing
    mine = [m for m in missing if m.startswith(best.mode.id + ":")]
    return mine or missing
