"""Check 1, reproduce: walk forward from the root to the symptom through the evidence.

Every node on the path must match a signal. Events (every source but `probe`)
must be ordered: a node's signal no earlier than its cause's, less the
clock-skew tolerance; a probe reads a state that holds, usually after the
failure, so it is exempt and passes the last event's time on to the next node.
The symptom must match failure signals (ERROR or CRITICAL).

For each event node the earliest match not earlier than (cause's time - skew)
is chosen: picking earlier never blocks a later node, so if any ordered choice
of signals exists, this one finds it.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from agent.gate.evidence import Evidence, Hit, iso, span
from agent.gate.graph import Shape
from agent.gate.matching import describe, has_condition
from agent.gate.settings import GateSettings
from agent.models import CheckResult


def check_reproduce(chain: Any, ev: Evidence, shape: Shape, settings: GateSettings) -> CheckResult:
    if shape.path is None:
        return CheckResult(
            passed=False,
            reason=f"no path of links leads from root {chain.root} to symptom {chain.symptom}, so nothing can be walked",
            details={"path": None, "seen": {}},
        )
    skew = settings.clock_skew_s
    problems: list[str] = []
    seen: dict[str, dict[str, Any]] = {}
    steps: list[str] = []
    bound: tuple[str, float] | None = None  # (node id, time) of the nearest event walked so far
    for nid in shape.path:
        node = chain.node(nid)
        is_symptom = nid == chain.symptom
        label = f"symptom {nid}" if is_symptom else nid
        obs = node.observe
        if obs is None:
            problems.append(f"{label} has no observe, so the walk cannot show it happened")
            continue
        if not has_condition(obs):
            problems.append(f"{label}: observe has neither match nor metric, so it shows nothing")
            continue
        hits = ev.failures(obs) if is_symptom else ev.hits(obs)
        if not hits:
            if is_symptom and ev.hits(obs):
                n = len(ev.hits(obs))
                problems.append(
                    f"symptom {nid}: its observe ({describe(obs)}) matches no ERROR or CRITICAL signal, only {n} "
                    f"below ERROR; a symptom pattern that matches successful runs or checks reproduces nothing"
                )
            else:
                problems.append(f"{label}: no signal matches its observe ({describe(obs)})")
            continue
        if obs.source == "probe":
            hit = hits[0]
            seen[nid] = _seen(hit, state=True)
            steps.append(f"{label} holds ({hit.id}, state)")
            continue
        if bound is None:
            hit = hits[0]
        else:
            cause_id, cause_ts = bound
            i = bisect_left(hits, cause_ts - skew, key=lambda h: h.ts)
            if i == len(hits):
                latest = hits[-1]
                problems.append(
                    f"{label} is out of order: its latest match is at {iso(latest.ts)} ({latest.id}), before its cause "
                    f"{cause_id} at {iso(cause_ts)} (more than {span(skew)} clock skew); an effect cannot precede its cause"
                )
                continue
            hit = hits[i]
        bound = (nid, hit.ts)
        seen[nid] = _seen(hit, state=False)
        steps.append(f"{label} at {iso(hit.ts)} ({hit.id})")
    walk = " -> ".join(shape.path)
    details = {"path": list(shape.path), "seen": seen}
    if problems:
        return CheckResult(passed=False, reason=f"walking {walk}: " + "; ".join(problems), details=details)
    return CheckResult(passed=True, reason=f"walked {walk}: " + ", ".join(steps), details=details)


def _seen(hit: Hit, *, state: bool) -> dict[str, Any]:
    return {"signal": hit.id, "ts": iso(hit.ts), "state": state}
