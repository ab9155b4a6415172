"""What the read API returns, built from the store: pure shaping over agent/store query functions.

Shapes (stable; the README's "HTTP API" section documents them):
- issue summary: id, title, kind, status, service, source, host, fingerprint, opened_at, last_change,
  resolved_at, occurrences, last_seen, chain (id of the chain shown) and chain_passed.
- issue detail: {"issue": summary, "timeline": [...], "timeline_total": n, "chain": {...} | null,
  "gate": {...} | null, "chains": [...], "fixes": [... each with events and verifications ...],
  "verifications": [...], "archive": [...]}.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Sequence

from agent.models import rfc3339
from agent.store import Store

ISSUE_KEYS = ("id", "title", "kind", "status", "service", "source", "host", "fingerprint", "first_signal",
              "opened_at", "last_change", "resolved_at")
CHECKS = ("reproduce", "archive", "completeness", "counterfactual")
STATUS_GROUPS = {"active": ("open", "analysing", "fixing", "verifying", "needs-human"),
                 "all": None}


def jsonable(obj: Any) -> Any:
    """Plain JSON values: datetimes as RFC 3339, models as their contract JSON, NaN as null."""
    if isinstance(obj, datetime):
        return rfc3339(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "to_json"):
        return jsonable(obj.to_json())
    if hasattr(obj, "model_dump"):
        return jsonable(obj.model_dump(mode="json", exclude_none=True))
    return obj


def dumps(obj: Any) -> bytes:
    return json.dumps(jsonable(obj), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- issues


def statuses_for(status: str | None) -> Sequence[str] | None:
    """`active` (default), `all`, or one status or a comma-separated list of them."""
    from agent.store.issues import STATUSES

    if status is None or status == "":
        status = "active"
    if status in STATUS_GROUPS:
        return STATUS_GROUPS[status]
    wanted = [s.strip() for s in status.split(",") if s.strip()]
    bad = [s for s in wanted if s not in STATUSES]
    if bad or not wanted:
        raise ValueError(f"status: expected active, all or one of {', '.join(STATUSES)}; got {status!r}")
    return wanted


def list_issues(store: Store, *, status: str | None = "active", kind: str | None = None, limit: int = 100,
                offset: int = 0) -> dict[str, Any]:
    """Issues, newest first."""
    from agent.store import issues as issue_store
    from agent.store.server import latest_chain_ids, occurrence_stats

    found = issue_store.list_issues(store, status=statuses_for(status), kind=kind)
    found.reverse()
    page = found[offset: offset + limit]
    ids = [i["id"] for i in page]
    stats = occurrence_stats(store, ids)
    chains = latest_chain_ids(store, ids)
    return {"total": len(found), "offset": offset, "limit": limit,
            "issues": [summary(i, stats.get(i["id"]), chains.get(i["id"])) for i in page]}


def summary(issue: dict[str, Any], stats: dict[str, Any] | None, chain: dict[str, Any] | None) -> dict[str, Any]:
    out = {k: issue.get(k) for k in ISSUE_KEYS}
    out["occurrences"] = (stats or {}).get("occurrences", 0)
    out["last_seen"] = (stats or {}).get("last_seen")
    out["chain"] = (chain or {}).get("chain")
    out["chain_passed"] = (chain or {}).get("passed")
    return out


def gate_view(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    checks = row.get("checks") or {}
    return {"chain_id": row["chain_id"], "ts": row["ts"], "passed": bool(row["passed"]),
            "elapsed_ms": row["elapsed_ms"],
            "checks": {name: (checks.get(name) or {"passed": False, "reason": "not judged"}) for name in CHECKS}}


def issue_detail(store: Store, issue_id: str, *, timeline_limit: int = 500) -> dict[str, Any] | None:
    from agent.store import chains as chain_store
    from agent.store import fixes as fix_store
    from agent.store import issues as issue_store
    from agent.store.server import latest_chain_ids, occurrence_stats

    issue = issue_store.get_issue(store, issue_id)
    if issue is None:
        return None
    timeline = issue_store.timeline(store, issue_id)
    gates_by_chain: dict[str, dict[str, Any]] = {}
    for g in chain_store.gate_results(store, issue_id=issue_id):
        gates_by_chain[g["chain_id"]] = g  # the latest judgement of each chain
    chains = []
    for c in chain_store.chains_for_issue(store, issue_id):
        chain = c["chain"]
        chains.append({"id": c["id"], "created_at": c["created_at"], "analyst": c["analyst"], "mode": c["mode"],
                       "passed": c["passed"], "root": chain.root_node.statement, "chain": chain.to_json(),
                       "gate": gate_view(gates_by_chain.get(c["id"]))})
    shown = next((c for c in reversed(chains) if c["passed"]), chains[-1] if chains else None)
    fixes = []
    for f in fix_store.fixes(store, issue_id=issue_id):
        fixes.append({**f, "events": fix_store.fix_events(store, f["id"]),
                      "verifications": fix_store.verifications(store, fix_id=f["id"])})
    for f in fixes:
        for e in f["events"]:
            e.pop("backup", None)  # file contents backed up before a fix: not for the wire
    stats = occurrence_stats(store, [issue_id]).get(issue_id)
    return {
        "issue": summary(issue, stats, latest_chain_ids(store, [issue_id]).get(issue_id)),
        "timeline": timeline[-timeline_limit:] if timeline_limit else timeline,
        "timeline_total": len(timeline),
        "chain": {k: v for k, v in shown.items() if k != "gate"} if shown else None,
        "gate": shown["gate"] if shown else None,
        "chains": chains,
        "fixes": fixes,
        "verifications": fix_store.verifications(store, issue_id=issue_id),
        "archive": [{"chain_id": a["chain_id"], "outcome": a["outcome"], "resolved_at": a["resolved_at"],
                     "archived_at": a["archived_at"]} for a in chain_store.archive_rows(store, issue_id)],
    }
