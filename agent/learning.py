"""Learning: turn a verified chain into detection updates.

For each precursor of a verified chain (an event node strictly between the
root and the symptom, observed in a log line or a metric, and not itself only
seen as a failure, which opens an issue of its own anyway), derive an
early-warning rule that triage applies to later signals, so the next time the
precursor appears a warning issue opens before the symptom does. Metric
precursors are tightened: the rule fires at a fraction of the value seen
before the failure (the `early_fraction` of the distance from the baseline),
which is how detection moves earlier, not only repeats.

Rules are rows with provenance (chain, issue, lead time observed), so
`selfheal rules --learned` can explain each; ids are derived from the chain
and node, so learning the same chain twice adds nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from agent.models import Chain, Node, Observe, Signal
from agent.store import Store
from agent.store import chains as chain_store
from agent.store import fixes as fix_store
from agent.store import issues as issue_store
from agent.store import learned as learned_store
from agent.store import signals as signal_store

# A metric precursor warns at this fraction of its failing threshold (for `>`/`>=`; the
# mirror image for `<`/`<=`), so the warning comes before the level that preceded the failure.
EARLY_FRACTION = 0.8


@dataclass(frozen=True)
class LearnedRule:
    rule_id: str
    kind: str
    definition: dict[str, Any]
    explanation: str


def precursor_nodes(chain: Chain) -> list[Node]:
    """Event nodes between root and symptom (root first), in causal order."""
    causes = {link.effect: link.cause for link in chain.links}
    path, node_id, seen = [], chain.symptom, set()
    while node_id in causes and node_id not in seen:
        seen.add(node_id)
        node_id = causes[node_id]
        path.append(node_id)
    path.reverse()  # root ... direct cause of symptom
    out = []
    for nid in path:
        node = chain.node(nid)
        if nid in (chain.symptom,) or node.observe is None or node.observe.source == "probe":
            continue
        out.append(node)
    return out


# Above the highest reading once the fix was in place, by this margin: a warning must stay quiet in the
# fixed system's normal operation.
HEADROOM = 1.1


def _earlier(observe: Observe, healthy: Sequence[float] = ()) -> Observe | None:
    """A metric observe moved toward normal, so it matches before the failing level is reached.

    Only a positive threshold of an ordering comparison moves; `> 0` already fires at the first sign. The
    moved threshold stays clear of the readings seen after the fix (`healthy`); when no level between
    those and the failing one is left, there is nothing earlier to warn at and None is returned.
    """
    if not observe.is_metric or not observe.value or observe.op not in (">", ">=", "<", "<="):
        return observe
    up = observe.op in (">", ">=")
    value = observe.value * EARLY_FRACTION if up else observe.value / EARLY_FRACTION
    if healthy:
        value = max(value, max(healthy) * HEADROOM) if up else min(value, min(healthy) / HEADROOM)
        if (up and value >= observe.value) or (not up and value <= observe.value):
            return None
    return observe.model_copy(update={"value": round(value, 6)})


def _first_match(observe: Observe, signals: Sequence[Signal]) -> datetime | None:
    from agent.gate import observe_matches

    times = [s.ts for s in signals if observe_matches(observe, s)]
    return min(times) if times else None


def rules_for_chain(chain: Chain, chain_id: str, issue_id: str | None, signals: Sequence[Signal],
                    mode: str | None = None, fixed_at: datetime | None = None) -> list[LearnedRule]:
    """Early-warning rules for a verified chain (pure)."""
    symptom = chain.symptom_node
    symptom_at = _first_match(symptom.observe, [s for s in signals if s.is_failure]) if symptom.observe else None
    rules = []
    from agent.gate import observe_matches

    for node in precursor_nodes(chain):
        seen = [s for s in signals if observe_matches(node.observe, s)]
        if seen and all(s.is_failure for s in seen):
            continue  # a precursor that is itself a failure already opens its own issue: nothing earlier to warn of
        healthy = [s.value for s in signals if fixed_at is not None and s.ts >= fixed_at and s.value is not None
                   and s.source == "metric" and s.attrs.get("metric") == node.observe.metric]
        observe = _earlier(node.observe, healthy)
        if observe is None:
            continue  # the fixed system runs too close to the failing level to warn any earlier
        if node.observe.service is None and symptom.observe and symptom.observe.service:
            observe = observe.model_copy(update={"service": symptom.observe.service})
        seen_at = _first_match(node.observe, signals)
        lead = (symptom_at - seen_at).total_seconds() if symptom_at and seen_at else None
        digest = hashlib.sha1(f"{chain_id}:{node.id}".encode()).hexdigest()[:10]
        definition = {
            "observe": observe.model_dump(mode="json", exclude_none=True),
            "title": f"early warning: {node.statement}",
            "mode": mode,
            "precursor_of": symptom.statement,
            "lead_time_s": lead,
        }
        tightened = observe.value != node.observe.value
        explanation = (
            f"learned from {issue_id or chain_id} (chain {chain_id}): '{node.statement}' preceded "
            f"'{symptom.statement}'"
            + (f" by {lead:.0f}s" if lead is not None else "")
            + (f"; warns at {observe.metric} {observe.op} {observe.value:g} instead of {node.observe.value:g}"
               if tightened else "")
        )
        rules.append(LearnedRule(f"ew-{digest}", "early-warning", definition, explanation))
    return rules


def learn_from_chain(store: Store, chain_id: str, at: datetime | None = None) -> list[str]:
    """Record the early-warning rules of a verified chain; returns the ids added (none when learned before)."""
    row = chain_store.get_chain(store, chain_id)
    if row is None:
        raise KeyError(chain_id)
    chain: Chain = row["chain"]
    issue = issue_store.get_issue(store, row["issue_id"]) if row["issue_id"] else None
    signals = signal_store.query_signals(store, service=None) if issue is None else _issue_window(store, issue)
    applied = [e["ts"] for f in fix_store.fixes(store) if f["chain_id"] == chain_id
               for e in fix_store.fix_events(store, f["id"]) if e["status"] == "applied"]
    fixed_at = max(applied) if applied else None
    added = []
    with store.transaction():
        for rule in rules_for_chain(chain, chain_id, row["issue_id"], signals, row.get("mode"), fixed_at):
            if learned_store.add_rule(store, rule_id=rule.rule_id, kind=rule.kind, definition=rule.definition,
                                      explanation=rule.explanation, chain_id=chain_id, issue_id=row["issue_id"],
                                      at=at):
                added.append(rule.rule_id)
    return added


def _issue_window(store: Store, issue: dict[str, Any]) -> list[Signal]:
    from datetime import timedelta

    opened = issue["opened_at"]
    return signal_store.query_signals(store, since=opened - timedelta(hours=24), until=opened + timedelta(hours=24))
