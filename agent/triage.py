"""Triage: every signal gets a verdict from the declarative rules, and the verdict's action on issues.

`Triage(store, cfg, clock).judge(signals)` judges signals in order, each
against the history before it: it fingerprints them (the miner's state lives
in the store, so fingerprints are stable across processes), turns each into a
fact (agent/triage_facts.py), lets the rules decide (agent/rules_engine.py,
durable_rules), and applies the verdict: `new` opens an issue, `ongoing`
attaches an occurrence, `recurrence` reopens the resolved issue and records
that its fix did not hold. Everything is stored in one transaction per call.

The engine is asked about whole batches before any verdict is applied: the
only fact fields that depend on earlier verdicts are the issue states, so a
batch's distinct facts are posted once per possible state (in chunks), and
the in-order pass only looks the answers up.
"""

from __future__ import annotations

import gc
import logging
import time
import weakref
from collections import Counter
from contextlib import contextmanager
from functools import lru_cache
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Sequence

from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.errors import SelfhealError
from agent.models import Signal, TriageResult
from agent.rules_engine import ISSUE_STATES, RulesEngine, TriageRule, TriageRules
from agent.store import Store
from agent.store import chains as chain_store
from agent.store import fixes as fix_store
from agent.store import issues as issue_store
from agent.store import learned as learned_store
from agent.store import signals as signal_store
from agent.store import state as state_store
from agent.store import triage_state as tstore
from agent.triage_facts import Fact, FactBuilder, LearnedRules, maintenance_windows, warning_fingerprint

log = logging.getLogger(__name__)

ACTIVE = frozenset(issue_store.ACTIVE)
_STATE_SENSOR = "triage"
_GENERATION = "generation"
PENDING_BATCH = 20_000


class TriageError(SelfhealError):
    """A rule gave a verdict the history cannot support (e.g. `ongoing` with no open issue)."""


def _state_of(entry: tuple[str, str] | None) -> str:
    if entry is None:
        return "none"
    return "resolved" if entry[1] == "resolved" else "active"


_GENUINE = frozenset({"new", "ongoing", "recurrence"})


class _Batch:
    """Issue changes and rows of one call, written together at its end (one statement per table)."""

    def __init__(self, issues: dict[str, tuple[str, str]], issue_counter: int):
        self.issues = issues  # fingerprint -> (latest issue id, status), kept current as verdicts are given
        self.first_issue = self.next_issue = issue_counter
        self.new_issues: list[tuple] = []
        self.events: list[tuple] = []
        self.verdicts: list[tuple] = []
        self.occurrences: list[tuple[str, str, datetime, str]] = []

    def open_issue(self, fingerprint: str, kind: str, title: str, s: Signal, reason: str) -> str:
        self.next_issue += 1
        issue_id = f"ISS-{self.next_issue:04d}"
        self.new_issues.append((issue_id, self.next_issue, fingerprint, kind, title[:500], s.source, s.service, s.host,
                                s.id, s.ts))
        self.events.append((issue_id, s.ts, "open", "opened", reason, s.id, None, None, None, None))
        self.issues[fingerprint] = (issue_id, "open")
        return issue_id


@contextmanager
def suspended_gc() -> Iterator[None]:
    """No cyclic garbage collection while a batch allocates its many long-lived objects.

    Triage allocates a few objects per signal and keeps them all until the batch is stored; the collector
    would traverse the growing heap again and again (a third of the run time on 100k signals) and find
    nothing to free.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# Values a reason may name besides the fact's fields; "-" when this verdict has none.
_EXTRAS: dict[str, Callable[[Fact, str | None, str], Any]] = {
    "id": lambda f, issue, prevention: f.signal.id,
    "service": lambda f, issue, prevention: f.signal.service or f.signal.source,
    "host": lambda f, issue, prevention: f.signal.host or "-",
    "fingerprint": lambda f, issue, prevention: f.fingerprint,
    "template": lambda f, issue, prevention: f.template,
    "issue": lambda f, issue, prevention: issue or "-",
    "check_name": lambda f, issue, prevention: f.check_name or "-",
    "threshold_from": lambda f, issue, prevention: f.threshold_from or "-",
    "benign_description": lambda f, issue, prevention: f.benign_description or "-",
    "maintenance_reason": lambda f, issue, prevention: f.maintenance_reason or "-",
    "warning_title": lambda f, issue, prevention: f.warning.title if f.warning else "-",
    "prevention": lambda f, issue, prevention: prevention or "-",
}


class _Reasoner:
    """A rule's reason template, formatted once per distinct set of the values it names."""

    def __init__(self, template: str):
        import string

        self.template = template
        self.names = list(dict.fromkeys(n for _, n, _, _ in string.Formatter().parse(template) if n))
        self.getters = [_EXTRAS.get(n) or _fact_getter(n) for n in self.names]
        self.cache: dict[tuple, str] | None = None if "id" in self.names else {}

    def __call__(self, f: Fact, issue: str | None, prevention: str) -> str:
        values = tuple(g(f, issue, prevention) for g in self.getters)
        cache = self.cache
        if cache is not None:
            found = cache.get(values)
            if found is not None:
                return found
        text = self.template.format_map(dict(zip(self.names, values)))
        if cache is not None:
            if len(cache) > 100_000:
                cache.clear()
            cache[values] = text
        return text


def _fact_getter(name: str) -> Callable[[Fact, str | None, str], Any]:
    return lambda f, issue, prevention: f.fact[name]


class Triage:
    def __init__(self, store: Store, cfg: Config, clock: Clock | None = None, *, rules: TriageRules | None = None):
        self.store = store
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.rules = rules or TriageRules(cfg)
        self.windows = maintenance_windows(cfg.maintenance)
        self._fingerprinter = None
        self._generation: int | None = None
        self._learned: LearnedRules | None = None
        self.stats: Counter[str] = Counter()
        self.timings: Counter[str] = Counter()  # seconds per phase, summed over calls (benchmarks read them)
        self._reasoners: dict[str, dict[str, _Reasoner]] = {}

    # ------------------------------------------------------------------ public

    def reload(self) -> str | None:
        """Re-read the rules files; None when they loaded, else the error (the previous rules stay active)."""
        return self.rules.reload()

    @property
    def engine(self) -> RulesEngine:
        return self.rules.engine

    def judge(self, signals: Sequence[Signal], fresh: bool = False) -> list[TriageResult]:
        """Verdicts for `signals`, in order; stores signals, verdicts and issue changes.

        A signal judged before (by id) keeps its stored verdict. `fresh` judges against an empty
        history in a temporary in-memory store, leaving this one untouched.
        """
        if fresh:
            temp = Store.open(None)
            try:
                return Triage(temp, self.cfg, self.clock, rules=self.rules).judge(signals)
            finally:
                temp.close()
        if not signals:
            return []
        try:
            return self._judge(signals)
        except BaseException:
            # The transaction rolled back: the miner's in-memory clusters may be ahead of the store.
            self._fingerprinter = None
            raise

    # ------------------------------------------------------------------ the pass

    def _judge(self, signals: Sequence[Signal]) -> list[TriageResult]:
        store = self.store
        ids = [s.id for s in signals]
        stored = tstore.stored_results(store, ids)
        todo: list[Signal] = []
        first_of: dict[str, int] = {}
        for s in signals:
            if s.id not in stored and s.id not in first_of:
                first_of[s.id] = len(todo)
                todo.append(s)
        fresh_results: list[TriageResult] = []
        if todo:
            with suspended_gc():
                fresh_results = self._judge_new(todo)
        if not stored and len(fresh_results) == len(signals):
            return fresh_results
        out = []
        for s in signals:
            i = first_of.get(s.id)
            if i is not None:
                out.append(fresh_results[i])
            else:
                r = stored[s.id]
                out.append(TriageResult(signal_id=r["signal_id"], fingerprint=r["fingerprint"], template=r["template"],
                                        verdict=r["verdict"], issue=r["issue_id"], rule=r["rule"],
                                        reason=r["reason"] or ""))
        return out

    def _judge_new(self, todo: list[Signal]) -> list[TriageResult]:
        store = self.store
        clock = time.perf_counter
        t0 = clock()
        fper = self._miner()
        learned = self._learned_rules()
        engine = self.engine
        # every fingerprint ever seen is read only when a rule asks whether this one was
        seen = tstore.known_fingerprints(store) if "seen" in engine.fields else set()
        builder = FactBuilder(engine.data, failure_threshold=self.cfg.failure_threshold, windows=self.windows,
                              learned=learned, checks=tstore.load_checks(store), seen=seen)
        batch = _Batch(issue_store.latest_issue_by_fingerprint(store), tstore.counter(store, "issue"))
        t1 = clock()

        fingerprint = fper.fingerprint
        pairs = [fingerprint(s.message, s.source, s.service) for s in todo]
        t2 = clock()
        build = builder.build
        facts = [build(s, fp, template) for s, (fp, template) in zip(todo, pairs)]
        t3 = clock()
        self._ask_engine(engine, facts)
        t4 = clock()

        with store.transaction():
            results = self._decide_and_act(engine, facts, batch)
            t5 = clock()
            self._store_signals(todo, facts)
            t6 = clock()
            tstore.insert_issues(store, batch.new_issues)
            tstore.insert_issue_events(store, batch.events)
            if batch.next_issue != batch.first_issue:
                tstore.set_counter(store, "issue", batch.next_issue)
            tstore.insert_verdicts(store, batch.verdicts)
            tstore.insert_occurrences(store, batch.occurrences)
            self._store_fingerprints(facts)
            tstore.save_checks(store, list(builder.changed_checks.values()))
            tstore.save_clusters(store, fper.take_changes())
            self._generation = (self._generation or 0) + 1
            state_store.set_state(store, _STATE_SENSOR, _GENERATION, self._generation)
        t7 = clock()
        for name, dt in (("history", t1 - t0), ("fingerprint", t2 - t1), ("facts", t3 - t2), ("rules", t4 - t3),
                         ("verdicts", t5 - t4), ("store signals", t6 - t5), ("store verdicts+issues", t7 - t6)):
            self.timings[name] += dt
        return results

    def _ask_engine(self, engine: RulesEngine, facts: list[Fact]) -> None:
        """Every distinct fact of the batch, once per issue state it may meet, decided by the engine up front."""
        fields = engine.fields
        bases = set(map(engine.key, [f.fact for f in facts]))
        positions = [(i, name) for i, name in enumerate(fields) if name in ("issue_state", "warning_state")]
        warning_at = fields.index("warning") if "warning" in fields else None
        keys: set[tuple] = set()
        for base in bases:
            variants = [base]
            for pos, name in positions:
                # the warning issue's state only matters to a fact that matched an early-warning rule
                if name == "warning_state" and warning_at is not None and not base[warning_at]:
                    continue
                variants = [v[:pos] + (st,) + v[pos + 1:] for v in variants for st in ISSUE_STATES]
            keys.update(variants)
        self.stats["facts_asked"] += engine.ensure(keys)

    def _decide_and_act(self, engine: RulesEngine, facts: list[Fact], batch: "_Batch") -> list[TriageResult]:
        results: list[TriageResult] = []
        issues = batch.issues
        verdicts = batch.verdicts
        key = engine.key
        decide = engine.decide
        reasoners = self._reasoners.setdefault(engine.name, {})
        counts: dict[str, int] = {}
        for f in facts:
            fact = f.fact
            s = f.signal
            fact["issue_state"] = _state_of(issues.get(f.fingerprint))
            wfp = warning_fingerprint(f.warning.rule_id) if f.warning else None
            if wfp:
                fact["warning_state"] = _state_of(issues.get(wfp))
            rule = decide(key(fact))
            verdict = rule.verdict
            issue_id = None
            prevention = ""
            if verdict in _GENUINE:
                subject = wfp if rule.subject == "warning" else f.fingerprint
                if subject is None:
                    raise TriageError(f"rule {rule.id!r} ({rule.origin}) is about a warning issue, "
                                      f"but signal {s.id} matched no early-warning rule")
                issue_id, prevention = self._act(rule, f, subject, batch)
                batch.occurrences.append((issue_id, s.id, s.ts, verdict))
            reported = fact[rule.attribute_to] if rule.attribute_to else None
            rule_name = reported or rule.id
            reasoner = reasoners.get(rule.id)
            if reasoner is None:
                reasoner = reasoners[rule.id] = _Reasoner(rule.reason)
            reason = reasoner(f, issue_id, prevention)
            results.append(TriageResult(signal_id=s.id, fingerprint=f.fingerprint, template=f.template,
                                        verdict=verdict, issue=issue_id, rule=rule_name, reason=reason))
            verdicts.append((s.id, f.fingerprint, f.template, verdict, issue_id, rule_name, reason, f.ts_text))
            counts[verdict] = counts.get(verdict, 0) + 1
        self.stats.update(counts)
        return results

    # ------------------------------------------------------------------ verdict actions

    def _act(self, rule: TriageRule, f: Fact, subject: str, batch: "_Batch") -> tuple[str, str]:
        """Open, attach or reopen the subject's issue; returns (issue id, what should have prevented it)."""
        s = f.signal
        current = batch.issues.get(subject)
        verdict = rule.verdict
        if verdict == "new":
            warning = rule.subject == "warning"
            title = f.warning.title if warning else f"{s.service or s.source}: {f.template}"
            issue_id = batch.open_issue(subject, "warning" if warning else "failure", title, s,
                                        f"{rule.id}: first signal {s.id}")
            return issue_id, ""
        if verdict == "ongoing":
            if current is None or current[1] not in ACTIVE:
                raise TriageError(f"rule {rule.id!r} ({rule.origin}) judged signal {s.id} ongoing, "
                                  f"but its failure mode has no open issue")
            return current[0], ""
        if current is None or current[1] != "resolved":
            raise TriageError(f"rule {rule.id!r} ({rule.origin}) judged signal {s.id} a recurrence, "
                              f"but its failure mode has no resolved issue")
        issue_id = current[0]
        if rule.subject == "warning":
            # A warning has no fix that could have failed: its precursor simply showed again.
            batch.events.append((issue_id, s.ts, "open", "warning-again", f"{rule.id}: precursor seen again in {s.id}",
                                 s.id, None, None, None, None))
            batch.issues[subject] = (issue_id, "open")
            return issue_id, ""
        prevention, attrs, chain_id, fix_id = self._prevention(issue_id, s)
        batch.events.append((issue_id, s.ts, "open", "recurrence",
                             f"recurred after it was resolved: the fix did not hold ({prevention})",
                             s.id, chain_id, fix_id, None, attrs))
        batch.issues[subject] = (issue_id, "open")
        return issue_id, prevention

    def _prevention(self, issue_id: str, s: Signal) -> tuple[str, dict[str, Any], str | None, str | None]:
        """The chain and fix that should have prevented this recurrence; the chain's archive says it did not hold."""
        store = self.store
        chain = chain_store.latest_passed_chain(store, issue_id)
        chain_id = chain["id"] if chain else None
        fixes = fix_store.fixes(store, issue_id=issue_id)
        if chain_id:
            fixes = [x for x in fixes if x["chain_id"] == chain_id] or fixes
        fixes = sorted(fixes, key=lambda x: (x["kind"] == "eliminate", x["created_at"], x["id"]))
        fix = fixes[-1] if fixes else None
        resolved_at = None
        for e in reversed(issue_store.events(store, issue_id)):
            if e["status"] == "resolved":
                resolved_at = e["ts"]
                break
        attrs: dict[str, Any] = {"fix_did_not_hold": True, "signal": s.id,
                                 "resolved_at": resolved_at.isoformat() if resolved_at else None}
        parts = []
        if chain is not None:
            root = chain["chain"].root_node
            attrs.update(chain_id=chain_id, root=root.statement, mode=chain.get("mode"))
            parts.append(f"chain {chain_id}, root: {root.statement}")
            archived = [r for r in chain_store.archive_rows(store, issue_id) if r["chain_id"] == chain_id]
            if archived and archived[-1]["outcome"] == "resolved":
                # archived after the "resolved" entry it contradicts, also when recorded signals carry future times
                at = max(self.clock.now(), s.ts)
                previous = archived[-1]["archived_at"]
                if previous is not None and at <= previous:
                    at = previous + timedelta(microseconds=1)
                chain_store.archive_chain(store, chain_id, outcome="did-not-hold",
                                          resolved_at=archived[-1]["resolved_at"], at=at)
                attrs["archived"] = "did-not-hold"
        if fix is not None:
            attrs.update(fix_id=fix["id"], fix_action=fix["action"], fix_status=fix["status"])
            parts.append(f"fix {fix['id']} {fix['action']} ({fix['status']})")
        if not parts:
            parts.append("resolved without a recorded chain or fix")
        return "; ".join(parts), attrs, chain_id, fix["id"] if fix else None

    # ------------------------------------------------------------------ history in the store

    def _miner(self):
        """The fingerprint miner, (re)loaded from the store when another process wrote triage state since."""
        from agent.fingerprint import Fingerprinter

        generation = state_store.get_state(self.store, _STATE_SENSOR, _GENERATION, 0)
        if self._fingerprinter is None or generation != self._generation:
            self._fingerprinter = Fingerprinter(state=tstore.load_clusters(self.store))
            self._fingerprinter.take_changes()
            self._generation = generation
        return self._fingerprinter

    def _learned_rules(self) -> LearnedRules:
        rows = learned_store.rules(self.store, status="active")
        signature = tuple((r["id"], r["status"], str(r["definition"])) for r in rows)
        if self._learned is None or self._learned.signature != signature:
            self._learned = LearnedRules.from_rows(rows)
        return self._learned

    def _store_signals(self, todo: list[Signal], facts: list[Fact]) -> None:
        store = self.store
        ids = [s.id for s in todo]
        existing = tstore.existing_ids(store, ids)
        if len(existing) < len(todo):
            tstore.insert_new_signals(store, [(f.signal, f.fingerprint, f.ts_text) for f in facts
                                              if f.signal.id not in existing])
        if existing:
            missing = tstore.unfingerprinted_ids(store, list(existing))
            signal_store.set_fingerprints(store, [(f.signal.id, f.fingerprint) for f in facts if f.signal.id in missing])

    def _store_fingerprints(self, facts: list[Fact]) -> None:
        latest: dict[str, tuple] = {}
        for f in facts:
            s = f.signal
            prev = latest.get(f.fingerprint)
            first = s.ts if prev is None else min(prev[4], s.ts)
            latest[f.fingerprint] = (f.fingerprint, s.source, s.service, f.template, first)
        tstore.upsert_fingerprints(self.store, list(latest.values()))


# --------------------------------------------------------------------------- reading signal files


def load_signals(path: str) -> list[Signal]:
    """The signals of a .jsonl file (or '-'), validated as agent.models.load_signals_file does, faster.

    The whole file is validated in one call of pydantic's JSON parser; if anything in it is not a valid
    signal, its lines are validated one by one by agent.models.read_signals, which names the first bad
    line (FILE:LINE: what is wrong), so errors are exactly the same.
    """
    from pydantic import ValidationError

    from agent.models import open_text, read_signals

    lines = list(open_text(path))
    body = [line for line in lines if line.strip()]
    if not body:
        return []
    with suspended_gc():
        try:
            found = _signal_list().validate_json("[" + ",".join(body) + "]")
            # A line holding two objects ("{..},{..}") would pass as two: only one per line is a valid file.
            if len(found) == len(body):
                return found
        except (ValidationError, ValueError):
            pass
        return read_signals(lines, "<stdin>" if str(path) == "-" else str(path))


@lru_cache(maxsize=1)
def _signal_list():
    from pydantic import TypeAdapter

    return TypeAdapter(list[Signal])


# --------------------------------------------------------------------------- the daemon's entry point

_PENDING: "weakref.WeakKeyDictionary[Store, Triage]" = weakref.WeakKeyDictionary()


def triage_pending(store: Store, cfg: Config, clock: Clock | None = None) -> list[TriageResult]:
    """Judge stored signals that have no verdict yet, in ingestion order.

    The triage of a store is kept between calls (miner, rules, decided facts); each call re-reads the
    rules files first, and a broken file is logged while the previous rules keep judging.
    """
    triage = _PENDING.get(store)
    if triage is None or triage.cfg is not cfg:
        triage = _PENDING[store] = Triage(store, cfg, clock)
    else:
        triage.clock = clock or triage.clock
        error = triage.reload()
        if error:
            log.warning("triage rules not reloaded, the previous rules stay active: %s", error)
    out: list[TriageResult] = []
    while True:
        batch = tstore.pending_signals(store, PENDING_BATCH)
        if not batch:
            return out
        out += triage.judge(batch)
        if len(batch) < PENDING_BATCH:
            return out
