"""Heuristic tuning from history: `selfheal tune` proposes (and with --apply writes) learned triage rules.

Three heuristics, each read from the signal history and explained in one line:

- a per-check failure threshold for a check that flaps: it failed and recovered
  on its own (no chain or fix involved) at least `min_flaps` times, and some of
  those self-healing runs reached its threshold and so opened or fed issues;
  the proposal is the longest such run + 1;
- a benign rule for a failure mode that occurred at least `benign_min_count`
  times, was judged genuine, has no gate-validated chain, and was never
  followed within `benign_window_h` by a genuine failure of another failure
  mode of its service;
- demoting a learned early-warning rule that fired at least
  `warning_min_firings` times and was never followed by its symptom.

Thresholds and windows are in rules/triage.yaml (`tune:`).
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agent.config import Config
from agent.models import FAILURE_LEVELS, Observe, Signal, rfc3339
from agent.rules_engine import RuleData, digest_json
from agent.store import Store, aware
from agent.store import chains as chain_store
from agent.store import learned as learned_store
from agent.store import triage_state as tstore
from agent.triage_facts import SEP, LearnedRules, observe_matcher


@dataclass
class Proposal:
    kind: str  # threshold | benign | demote
    rule_id: str
    explanation: str
    definition: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    issue_id: str | None = None
    applied: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "rule_id": self.rule_id, "explanation": self.explanation,
               "definition": self.definition, "evidence": self.evidence, "applied": self.applied}
        if self.issue_id:
            out["issue_id"] = self.issue_id
        return out


def propose(store: Store, cfg: Config, data: RuleData) -> list[Proposal]:
    learned = LearnedRules.from_rows(learned_store.rules(store, status="active"))
    return (_thresholds(store, cfg, data, learned) + _benign(store, data, learned)
            + _demotions(store, data))


def apply(store: Store, proposals: list[Proposal], at: datetime) -> list[Proposal]:
    """Write the proposals as learned rules (demotions as status changes); idempotent by rule id."""
    with store.transaction():
        for p in proposals:
            if p.kind == "demote":
                learned_store.set_rule_status(store, p.rule_id, "demoted")
                p.applied = True
            else:
                p.applied = learned_store.add_rule(store, rule_id=p.rule_id, kind=p.kind, definition=p.definition,
                                                   explanation=p.explanation, issue_id=p.issue_id, at=at)
    return proposals


# --------------------------------------------------------------------------- flapping checks


def _thresholds(store: Store, cfg: Config, data: RuleData, learned: LearnedRules) -> list[Proposal]:
    t = data.tune
    analysed = tstore.issues_with_analysis(store)
    runs: dict[tuple[str, str, str, str], list[int]] = {}
    current: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for row in tstore.check_observations(store, data.settings.check_sources):
        attrs = json.loads(row["attrs"]) if row["attrs"] else {}
        key = next((str(attrs[a]) for a in data.settings.check_attrs if attrs.get(a) is not None), "")
        check = (row["source"], row["service"] or "", row["host"] or "", key)
        if row["level"] in FAILURE_LEVELS:
            current.setdefault(check, []).append(row)
            continue
        run = current.pop(check, None)
        # A run that ended while someone analysed or fixed its issue recovered because of them, not by itself.
        if run and not any(r["issue_id"] in analysed for r in run if r["issue_id"]):
            runs.setdefault(check, []).append(len(run))
    out = []
    for check, lengths in sorted(runs.items()):
        rule = learned.threshold_for(check)
        threshold = rule.threshold if rule else cfg.failure_threshold
        longest = max(lengths)
        reached = sum(1 for n in lengths if n >= threshold)
        proposed = longest + 1
        if len(lengths) < t.min_flaps or not reached or proposed > t.max_threshold:
            continue
        source, service, host, key = check
        name = key or f"{service or '-'}@{host or '-'}"
        spec = {"source": source, "service": service or None, "host": host or None, "key": key or None}
        out.append(Proposal(
            kind="threshold",
            rule_id=f"tune-threshold-{digest_json(spec)}-{proposed}",
            definition={"check": spec, "failure_threshold": proposed},
            explanation=(f"{source} check {name} ({service or '-'}@{host or '-'}) failed and recovered on its own "
                         f"{len(lengths)} times, {reached} of them after reaching its threshold {threshold} "
                         f"(longest {longest} in a row): require {proposed} consecutive failures"),
            evidence={"self_recovered_runs": lengths, "threshold": threshold, "check_key": SEP.join(check)},
        ))
    return out


# --------------------------------------------------------------------------- benign failure modes


def _benign(store: Store, data: RuleData, learned: LearnedRules) -> list[Proposal]:
    t = data.tune
    window = timedelta(hours=t.benign_window_h)
    validated = tstore.issues_with_passed_chain(store)
    genuine: dict[str, list[tuple[datetime, str]]] = {}
    for g in tstore.genuine_failures(store):
        genuine.setdefault(g["service"] or g["source"], []).append((g["ts"], g["fingerprint"]))
    out = []
    for st in tstore.failure_fingerprint_stats(store, t.benign_min_count):
        fp = st["fingerprint"]
        if fp in learned.benign_fps or not st["genuine"]:
            continue  # already benign, or never more than noise
        issues = [i for i in (st["issues"] or []) if i]
        if any(i in validated for i in issues):
            continue  # a validated root cause says it is a real failure
        scope = st["service"] or st["source"]
        others = genuine.get(scope, [])
        times = [o[0] for o in others]
        followed = None
        for ts in tstore.fingerprint_times(store, fp):
            i = bisect.bisect_right(times, ts)
            while i < len(others) and others[i][0] <= ts + window:
                if others[i][1] != fp:
                    followed = others[i]
                    break
                i += 1
            if followed:
                break
        if followed:
            continue
        first, last = aware(st["first_ts"]), aware(st["last_ts"])
        template = st["template"] or fp
        out.append(Proposal(
            kind="benign",
            rule_id=f"tune-benign-{fp.split(':')[-1][:12]}",
            definition={"fingerprint": fp, "pattern": None},
            explanation=(f"'{_short(template)}' ({scope}) occurred {st['n']} times from {rfc3339(first)} to "
                         f"{rfc3339(last)} and no genuine failure of another failure mode of {scope} followed "
                         f"within {t.benign_window_h:g} h: treat it as benign"),
            evidence={"occurrences": st["n"], "genuine_verdicts": st["genuine"], "issues": issues},
            issue_id=issues[0] if issues else None,
        ))
    return out


# --------------------------------------------------------------------------- early-warning rules that warn of nothing


def _demotions(store: Store, data: RuleData) -> list[Proposal]:
    t = data.tune
    out = []
    for rule in learned_store.rules(store, status="active", kind="early-warning"):
        firings = tstore.rule_firings(store, f"learned:{rule['id']}")
        if len(firings) < t.warning_min_firings:
            continue
        d = rule["definition"]
        lead = d.get("lead_time_s") or 0
        window = timedelta(seconds=max(t.warning_window_h * 3600, 2 * float(lead)))
        symptom = _symptom(store, rule)
        followed = 0
        for f in firings:
            if _followed(store, f, symptom, window):
                followed += 1
        if followed:
            continue
        what = symptom.statement if symptom is not None else f"a failure of {firings[0]['service'] or 'its service'}"
        out.append(Proposal(
            kind="demote",
            rule_id=rule["id"],
            explanation=(f"early-warning rule {rule['id']} fired {len(firings)} times and '{_short(what)}' never "
                         f"followed within {window.total_seconds() / 3600:g} h: demote it"),
            definition=d,
            evidence={"firings": len(firings), "followed": followed, "window_h": window.total_seconds() / 3600},
            issue_id=rule.get("issue_id"),
        ))
    return out


@dataclass
class _Symptom:
    statement: str
    observe: Observe
    matches: Any


def _symptom(store: Store, rule: dict[str, Any]) -> _Symptom | None:
    if not rule.get("chain_id"):
        return None
    row = chain_store.get_chain(store, rule["chain_id"])
    if row is None:
        return None
    node = row["chain"].symptom_node
    if node.observe is None:
        return None
    obs = node.observe.model_dump(exclude_none=True)
    return _Symptom(node.statement, node.observe, observe_matcher(obs))


def _followed(store: Store, firing: dict[str, Any], symptom: _Symptom | None, window: timedelta) -> bool:
    start, end = firing["ts"], firing["ts"] + window
    if symptom is not None:
        found: list[Signal] = tstore.failure_signals_between(store, start, end, source=symptom.observe.source,
                                                              service=symptom.observe.service)
        return any(symptom.matches(s) for s in found)
    service = firing.get("service")
    return any(g["ts"] >= start and g["ts"] <= end and (service is None or g["service"] == service)
               for g in tstore.genuine_failures(store))


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
