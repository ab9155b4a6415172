"""Evidence tools over the store: what the analysts (offline and LLM) may look at.

Each tool returns plain JSON-able data, so the same functions serve the
offline analyst, the LLM agent's tools and the CLI. Nothing here writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Sequence

from agent.errors import InputError
from agent.models import FAILURE_LEVELS, ArchiveEntry, Signal, rfc3339

if TYPE_CHECKING:
    from agent.store import Store

MAX_EVIDENCE = 50_000


def get_issue(store: "Store", issue_id: str) -> dict[str, Any]:
    from agent.store.issues import get_issue as _get

    issue = _get(store, issue_id)
    if issue is None:
        raise InputError(f"no issue {issue_id!r} in the store (see `selfheal issues`)")
    return issue


def issue_timeline(store: "Store", issue_id: str) -> list[dict[str, Any]]:
    """Occurrences and state changes of the issue, in time order."""
    from agent.store.issues import timeline

    out = []
    for item in timeline(store, issue_id):
        row = {k: v for k, v in item.items() if v is not None and k not in ("seq", "cycle_id", "attrs")}
        row["ts"] = rfc3339(item["ts"])
        out.append(row)
    return out


def is_recurrence(store: "Store", issue_id: str) -> bool:
    from agent.store.issues import events, occurrences

    return any(e["event"] == "recurrence" for e in events(store, issue_id)) or \
        any(o["verdict"] == "recurrence" for o in occurrences(store, issue_id))


def last_resolution(store: "Store", issue_id: str) -> datetime | None:
    from agent.store.issues import events

    stamps = [e["ts"] for e in events(store, issue_id) if e["status"] == "resolved"]
    return max(stamps) if stamps else None


def symptom_signal(store: "Store", issue: dict[str, Any]) -> Signal:
    """The failure the analysis explains: the latest recurrence when the issue was reopened, else its first signal."""
    from agent.store.issues import occurrences
    from agent.store.signals import query_signals

    occ = occurrences(store, issue["id"])
    chosen: str | None = None
    recurrences = [o for o in occ if o["verdict"] == "recurrence"]
    if recurrences:
        chosen = recurrences[-1]["signal_id"]
    elif issue.get("first_signal"):
        chosen = issue["first_signal"]
    elif occ:
        chosen = occ[0]["signal_id"]
    if chosen is None:
        raise InputError(f"issue {issue['id']} has no signal to analyse")
    found = query_signals(store, ids=[chosen])
    if not found:
        raise InputError(f"issue {issue['id']}: its signal {chosen} is not in the store")
    return found[0]


def gather(store: "Store", issue: dict[str, Any], symptom: Signal, *, window_s: float, necessity_s: float,
           gap_s: float, now: datetime, since: datetime | None = None) -> list[Signal]:
    """Every signal an analysis of this issue may cite: the evidence window before the symptom up to now (from
    `since`, the last resolution, when that is earlier: what changed after the fix explains a recurrence), and the
    necessity window before each earlier episode of the issue (the gate tests every episode)."""
    from agent.store.issues import occurrences
    from agent.store.signals import query_signals

    start = symptom.ts - timedelta(seconds=window_s)
    if since is not None and since < start:
        start = since
    ranges = [(start, max(now, symptom.ts))]
    last: datetime | None = None
    for o in occurrences(store, issue["id"]):
        if last is None or (o["ts"] - last).total_seconds() >= gap_s:
            ranges.append((o["ts"] - timedelta(seconds=necessity_s), o["ts"] + timedelta(seconds=gap_s)))
        last = o["ts"]
    seen: dict[str, Signal] = {}
    for lo, hi in _merge(ranges):
        for s in query_signals(store, since=lo, until=hi, limit=MAX_EVIDENCE):
            seen.setdefault(s.id or "", s)
    # The issue's own failures, however old: the gate counts its episodes.
    for s in query_signals(store, ids=[o["signal_id"] for o in occurrences(store, issue["id"])]):
        seen.setdefault(s.id or "", s)
    seen.setdefault(symptom.id or "", symptom)
    for sid in _spent(store, issue, list(seen.values())):
        seen.pop(sid, None)
    return sorted(seen.values(), key=lambda s: (s.ts, s.id or ""))


def _spent(store: "Store", issue: dict[str, Any], signals: list[Signal]) -> set[str]:
    """Evidence of incidents resolved before this issue opened: their failures, and the events their verified
    chains cited (signals matching a chain node, up to its resolution). That failure mode was eliminated and
    verified, so what explained it cannot explain a new failure; a recurrence is analysed from its own
    signals after the fix (`since`)."""
    from agent.gate import observe_matches
    from agent.store.chains import archive_rows
    from agent.store.issues import list_issues, triage_results

    opened = issue["opened_at"]
    done = [i["id"] for i in list_issues(store, status="resolved")
            if i["id"] != issue["id"] and i["resolved_at"] is not None and i["resolved_at"] <= opened]
    spent = {r["signal_id"] for i in done for r in triage_results(store, issue_id=i)}
    for row in archive_rows(store):
        if row["outcome"] != "resolved" or row["issue_id"] == issue["id"] or row["resolved_at"] is None \
                or row["resolved_at"] > opened:
            continue
        observes = [n.observe for n in row["chain"].nodes if n.observe is not None and n.observe.source != "probe"]
        for s in signals:
            if s.ts <= row["resolved_at"] and any(observe_matches(o, s) for o in observes):
                spent.add(s.id or "")
    return spent


def _merge(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def signals_around(store: "Store", ts: datetime, *, before_s: float = 3600.0, after_s: float = 600.0,
                   service: str | None = None, source: str | None = None, text: str | None = None,
                   failures_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
    """Signals in [ts - before_s, ts + after_s], optionally by service, source and a message substring."""
    from agent.store.signals import query_signals

    found = query_signals(store, since=ts - timedelta(seconds=before_s), until=ts + timedelta(seconds=after_s),
                          service=service, source=source, text=text,
                          min_level="ERROR" if failures_only else None, limit=max(1, min(limit, 1000)))
    return [signal_json(s) for s in found]


def signal_json(s: Signal) -> dict[str, Any]:
    return s.model_dump(mode="json", exclude_none=True)


def archived_chains(store: "Store") -> list[ArchiveEntry]:
    from agent.store.chains import archive_entries

    return archive_entries(store)


def archived_json(store: "Store", service: str | None = None) -> list[dict[str, Any]]:
    """Archived chains with their fixes and outcomes; with `service`, only those whose symptom is that service's."""
    from agent.store.chains import archive_rows

    out = []
    for row in archive_rows(store):
        chain = row["chain"]
        sym = chain.symptom_node.observe
        if service and (sym is None or sym.service != service):
            continue
        out.append({"chain": chain.to_json(), "outcome": row["outcome"],
                    "resolved_at": rfc3339(row["resolved_at"]) if row["resolved_at"] else None})
    return out


def earlier_rejections(store: "Store", issue_id: str) -> list[dict[str, Any]]:
    """Chains drafted for this issue that the gate rejected, with the failed checks' reasons."""
    from agent.store.chains import chains_for_issue, gate_results

    out = []
    by_chain = {r["id"]: r for r in chains_for_issue(store, issue_id)}
    for g in gate_results(store, issue_id=issue_id):
        if g["passed"]:
            continue
        failed = {name: c.get("reason", "") for name, c in g["checks"].items() if not c.get("passed")}
        row = by_chain.get(g["chain_id"])
        out.append({"chain_id": g["chain_id"], "ts": rfc3339(g["ts"]), "failed": failed,
                    "root": row["chain"].root_node.statement if row else None,
                    "mode": row.get("mode") if row else None})
    return out


def failure_history(signals: Sequence[Signal], service: str | None) -> list[dict[str, Any]]:
    """The failure signals of a service among `signals` (for prompts)."""
    return [signal_json(s) for s in signals if s.level in FAILURE_LEVELS and (service is None or s.service == service)]
