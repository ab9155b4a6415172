"""Check 4, counterfactual: with the root gone, is the failure impossible, not just less likely?

The fix must target the root with `effect: eliminate` and carry a
postcondition; neither the root statement nor the fix's action and
description may hedge. And the cause must be necessary: every episode of the
symptom in the history (its failure signals, matches less than the episode gap
apart being one episode) was preceded, within the necessity window, by a match
of the deepest event node of the chain: the root when it is an event,
otherwise the first non-probe node walking from the root toward the symptom
(probes read states, which have no time of their own). The clock-skew
tolerance also admits a match up to that much after the episode start.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Any

from agent.gate.evidence import Evidence, Hit, iso, span
from agent.gate.graph import Shape
from agent.gate.matching import has_condition
from agent.gate.settings import GateSettings
from agent.models import CheckResult

_SHOW_EPISODES = 3


def episodes(failures: list[Hit], gap_s: float) -> list[list[Hit]]:
    """Failure matches in time order, split where consecutive ones are at least `gap_s` apart."""
    out: list[list[Hit]] = []
    for hit in failures:
        if out and hit.ts - out[-1][-1].ts < gap_s:
            out[-1].append(hit)
        else:
            out.append([hit])
    return out


def deepest_event(chain: Any, path: tuple[str, ...]) -> Any | None:
    for nid in path:
        node = chain.node(nid)
        if node.observe is None or node.observe.source != "probe":
            return node
    return None


def check_counterfactual(chain: Any, ev: Evidence, shape: Shape, settings: GateSettings) -> CheckResult:
    problems: list[str] = []
    root = chain.root_node
    fix = chain.fix
    if fix is None:
        problems.append(f"chain has no fix: add one that targets root {root.id} with effect 'eliminate'")
    else:
        if fix.target is None:
            problems.append(f"fix has no target: it must target the root {root.id}")
        elif fix.target != root.id:
            problems.append(f"fix targets {fix.target}, not the root {root.id}: a fix below the root leaves its cause in place")
        if fix.effect != "eliminate":
            problems.append(
                f"fix effect is '{fix.effect}', not 'eliminate': with the root gone the failure must be impossible, "
                f"not less likely"
            )
        if fix.postcondition is None:
            problems.append("fix has no postcondition: add the observe that holds once the fix is in place")
    hedges = [(f"root {root.id} statement", root.statement)]
    if fix is not None:
        # An action is an identifier (reduce_workers): its parts are words.
        hedges += [("fix action", re.sub(r"[_\-.]+", " ", fix.action)), ("fix description", fix.description)]
    for where, text in hedges:
        found = settings.hedging.found(text)
        if found:
            problems.append(f"{where} hedges: " + ", ".join(f"'{w}'" for w in found) + "; state what will be impossible")

    necessity, details = _necessity(chain, ev, shape, settings)
    problems += necessity
    if problems:
        return CheckResult(passed=False, reason="; ".join(problems), details=details)
    return CheckResult(
        passed=True,
        reason=f"fix {fix.action} eliminates root {root.id} with a postcondition, no hedging; {details['summary']}",
        details=details,
    )


def _necessity(chain: Any, ev: Evidence, shape: Shape, settings: GateSettings) -> tuple[list[str], dict[str, Any]]:
    window, skew = settings.necessity_window_s, settings.clock_skew_s
    details: dict[str, Any] = {"deepest_event": None, "episodes": [], "summary": ""}
    if shape.path is None:
        return [f"necessity cannot be judged: no path of links leads from root {chain.root} to symptom {chain.symptom}"], details
    symptom = chain.symptom_node
    if symptom.observe is None or not has_condition(symptom.observe):
        return [f"necessity cannot be judged: symptom {symptom.id} has no observe to find its episodes"], details
    eps = episodes(ev.failures(symptom.observe), settings.episode_gap_s)
    node = deepest_event(chain, shape.path)
    details["deepest_event"] = node.id if node is not None else None
    details["episodes"] = [{"start": iso(e[0].ts), "signals": len(e), "preceded_by": None} for e in eps]
    if not eps:
        details["summary"] = f"no episode of symptom {symptom.id} in the history to test necessity against"
        return [], details
    if node is None or node.id == symptom.id:
        details["summary"] = f"every node below symptom {symptom.id} is a state (probe), so necessity rests on them"
        return [], details
    if node.observe is None or not has_condition(node.observe):
        return [f"necessity cannot be judged: {node.id}, the deepest event node, has no observe"], details
    hits = ev.hits(node.observe)
    missing: list[str] = []
    for ep, info in zip(eps, details["episodes"]):
        start = ep[0].ts
        # The latest match at or before start + skew; it must also be within the window before the start.
        i = bisect_right(hits, start + skew, key=lambda h: h.ts)
        prior = hits[i - 1] if i > 0 else None
        if prior is not None and prior.ts >= start - window:
            info["preceded_by"] = prior.id
        else:
            missing.append(iso(start))
    n = len(eps)
    if missing:
        shown = missing[:_SHOW_EPISODES]
        more = f" (and {len(missing) - len(shown)} more)" if len(missing) > len(shown) else ""
        problems = [
            f"episode at {at} has no preceding match of {node.id} within {span(window)}" for at in shown
        ]
        problems[-1] += more
        problems.append(
            f"{len(missing)} of {n} episode{'s' if n != 1 else ''} of symptom {symptom.id} happened without {node.id}, "
            f"so eliminating it leaves the failure possible: find the cause common to every episode"
        )
        return problems, details
    which = "the one episode" if n == 1 else f"all {n} episodes"
    details["summary"] = f"{which} of symptom {symptom.id} preceded by {node.id} within {span(window)}"
    return [], details
