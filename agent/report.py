"""The report: the seed's figures and where the time goes, computed from the store.

`compute_report(store, now=None)` returns a JSON-ready dict (contracts section 7
plus detail). Time is the store's own: `now` defaults to its latest record (a
signal, an issue event or a cycle boundary), so a demo or eval store replayed
on its own clock reports the same figures whenever it is read.

Definitions (the README's "Report" section says the same):

- issues_tracked: every issue ever opened (failures and early warnings).
- issues_with_formal_rca: issues with a chain whose gate result passed all four checks: their own, or
  the chain that explains them as one of its links (an issue grouped into another's chain names it).
- active_issues: issues whose current status is open, analysing, fixing, verifying or needs-human.
- A *resolution* is an issue event that moves the issue into status `resolved` from any other status.
- mttr_hours_latest_cycle: mean over the failure issues resolved in the latest cycle of (resolved_at -
  issues.opened_at), resolved_at being the issue's last resolution in that cycle (early-warning issues
  are closed when their watch window ends, not repaired, so they do not count). A resolution belongs
  to the cycle named by its cycle_id; without one, to the cycle whose [started_at, ended_at] holds its
  time (an unfinished cycle runs to the next cycle's start, the latest one to `now`). null when no
  issue was resolved in it; with no cycles recorded at all, the store's lifetime is the one cycle.
- A resolution is *gate-validated* when the issue had a chain that passed the gate before it (gate
  result recorded earlier), or the resolution names a chain that passed.
- repeat_issues: failure modes (fingerprints) with a genuine occurrence (new/ongoing/recurrence
  verdict, or an occurrence of one of their issues) after the latest gate-validated resolution of one
  of their issues, or one of whose issues was reopened after it. A recurrence that was escalated,
  re-analysed to a deeper root and resolved again is counted by recurrences_escalated, not here: a
  repeat is a failure the standing fix did not stop. Goal: zero.
- A *recurrence* is the failure coming back after its fix: an issue event that moves an issue from
  `resolved` back to an active status (a reopening), or a `fix-did-not-hold` event (the applied fix
  failed verification and the issue went back to analysis).
  recurrences_escalated: recurrences whose re-analysis was escalated by the archive check: a gate
  result of that issue, recorded after the recurrence and before its next one, whose archive check
  says `escalated: true`.
- A *verified resolution* is a chain archived with outcome `resolved`, or a resolution whose fix was
  verified (fix event `verified`, or passed verification steps and no failed one) and whose chain
  passed the gate; it does not count when its chain was later archived as `did-not-hold`, or when the
  failure mode occurred again after it (a genuine occurrence of the fingerprint, or the issue reopened).
  A *failure class* is (root category, knowledge-base mode) of the chain, or (root category,
  normalised root statement) when the mode is unknown.
  learning_velocity_per_week: distinct failure classes with a verified resolution / the store's
  lifetime in weeks (first signal to latest signal or issue event, at least one day).
- noise_signals / genuine_signals: triage verdicts `noise` / `new` + `ongoing` + `recurrence`.
- noise_by_source[source].noise_ratio: noise / (noise + genuine) among that source's judged signals.
- stage_hours: time issues spent in each status between events: detect = open (detected, waiting for
  analysis), analyse = analysing, fix = fixing, verify = verifying, needs_human = needs-human; the
  last interval of an active issue runs to `now`.
- detection_lead_time: for each learned early-warning rule, how long its warnings came before the
  next genuine occurrence of the failure mode it was learned from (before learning, detection came at
  the symptom itself: a lead time of 0).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from agent.store import Store
from agent.store import report as q

ACTIVE = ("open", "analysing", "fixing", "verifying", "needs-human")
CHECKS = ("reproduce", "archive", "completeness", "counterfactual")
STAGES = {"open": "detect", "analysing": "analyse", "fixing": "fix", "verifying": "verify", "needs-human": "needs_human"}
LEAD_WINDOW = timedelta(hours=24)
HOUR = 3600.0


# --------------------------------------------------------------------------- small helpers


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / HOUR


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _norm(text: str | None) -> str:
    return " ".join((text or "").lower().split())


def gate_all_passed(row: dict[str, Any]) -> bool:
    checks = row.get("checks") or {}
    return bool(row.get("passed")) and all(bool((checks.get(c) or {}).get("passed")) for c in CHECKS)


def archive_escalated(row: dict[str, Any]) -> bool:
    return bool(((row.get("checks") or {}).get("archive") or {}).get("escalated"))


def transitions(events: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(resolutions, recurrences): events moving an issue into `resolved`, and out of it into an active status."""
    last: dict[str, str] = {}
    resolutions, recurrences = [], []
    for e in sorted(events, key=lambda e: e["seq"]):
        before = last.get(e["issue_id"])
        if e["status"] == "resolved" and before != "resolved":
            resolutions.append(e)
        elif before == "resolved" and e["status"] in ACTIVE and e["event"] != "warning-again":
            recurrences.append(e)  # a warning reopened by its precursor is not a failure coming back
        last[e["issue_id"]] = e["status"]
    return resolutions, recurrences


# --------------------------------------------------------------------------- cycles and MTTR


def cycle_windows(cycles: Sequence[dict[str, Any]], now: datetime | None) -> list[dict[str, Any]]:
    """Each cycle with the [start, end] its unlabelled events fall in."""
    out = []
    for i, c in enumerate(cycles):
        end = c["ended_at"]
        if end is None:
            end = cycles[i + 1]["started_at"] if i + 1 < len(cycles) else now
        out.append({**c, "start": c["started_at"], "end": end})
    return out


def cycle_of(event: dict[str, Any], windows: Sequence[dict[str, Any]]) -> str | None:
    ids = {w["id"] for w in windows}
    if event.get("cycle_id") in ids:
        return event["cycle_id"]
    for w in reversed(windows):
        if w["start"] <= event["ts"] and (w["end"] is None or event["ts"] <= w["end"]):
            return w["id"]
    return None


def mttr_by_cycle(issues: dict[str, dict[str, Any]], resolutions: Sequence[dict[str, Any]],
                  windows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    per: dict[str, dict[str, datetime]] = defaultdict(dict)
    for r in resolutions:
        if issues.get(r["issue_id"], {}).get("kind") == "warning":
            continue
        cid = cycle_of(r, windows)
        if cid is None:
            continue
        prev = per[cid].get(r["issue_id"])
        per[cid][r["issue_id"]] = r["ts"] if prev is None else max(prev, r["ts"])
    out = []
    for w in windows:
        resolved = per.get(w["id"], {})
        hours = [max(0.0, _hours(ts - issues[iid]["opened_at"])) for iid, ts in sorted(resolved.items()) if iid in issues]
        out.append({"cycle": w["id"], "kind": w["kind"], "started_at": w["started_at"], "ended_at": w["ended_at"],
                    "resolved": sorted(resolved), "mttr_hours": _mean(hours)})
    return out


def lifetime_mttr(issues: dict[str, dict[str, Any]], resolutions: Sequence[dict[str, Any]]) -> tuple[list[str], float | None]:
    last: dict[str, datetime] = {}
    for r in resolutions:
        if issues.get(r["issue_id"], {}).get("kind") == "warning":
            continue
        last[r["issue_id"]] = max(last.get(r["issue_id"], r["ts"]), r["ts"])
    hours = [max(0.0, _hours(ts - issues[iid]["opened_at"])) for iid, ts in sorted(last.items()) if iid in issues]
    return sorted(last), _mean(hours)


# --------------------------------------------------------------------------- validated resolutions and repeats


def validated_resolutions(resolutions: Sequence[dict[str, Any]], gates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    passed_chains = {g["chain_id"] for g in gates if gate_all_passed(g)}
    first_pass: dict[str, int] = {}
    for g in gates:
        if gate_all_passed(g) and g["issue_id"]:
            first_pass[g["issue_id"]] = min(first_pass.get(g["issue_id"], g["seq"]), g["seq"])
    return [r for r in resolutions
            if (r.get("chain_id") in passed_chains) or (r["issue_id"] in first_pass and first_pass[r["issue_id"]] < r["seq"])]


def repeat_failure_modes(store: Store, issues: dict[str, dict[str, Any]], validated: Sequence[dict[str, Any]],
                         recurrences: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for r in validated:
        fp = issues[r["issue_id"]]["fingerprint"] if r["issue_id"] in issues else None
        if fp and (fp not in latest or r["seq"] > latest[fp]["seq"]):
            latest[fp] = r
    fps = sorted(latest)
    after = q.first_genuine_after(store, [(fp, latest[fp]["ts"]) for fp in fps])
    out = []
    for fp, occ in zip(fps, after):
        r = latest[fp]
        reopen = next((e for e in sorted(recurrences, key=lambda e: e["seq"])
                       if e["seq"] > r["seq"] and issues.get(e["issue_id"], {}).get("fingerprint") == fp), None)
        if occ is None and reopen is None:
            continue
        recurred_at = min(x for x in (occ and occ["ts"], reopen and reopen["ts"]) if x is not None)
        out.append({"fingerprint": fp, "issue": r["issue_id"], "title": issues[r["issue_id"]]["title"],
                    "resolved_at": r["ts"], "resolution_chain": r.get("chain_id"), "recurred_at": recurred_at,
                    "signal": (occ or {}).get("signal_id") or (reopen or {}).get("signal_id"),
                    "reopened": reopen["issue_id"] if reopen else None})
    return out


def fix_did_not_hold(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events sending an issue back to analysis because its applied fix failed verification (remedy/verify.py)."""
    return [e for e in events if e["event"] == "fix-did-not-hold" and e["status"] in ACTIVE]


def recurrence_escalations(recurrences: Sequence[dict[str, Any]], gates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each failure-came-back event (a reopening, or a fix that did not hold) and whether its re-analysis was
    escalated by the archive check: a gate result of the issue after it (and before its next one) with
    checks.archive.escalated true."""
    by_issue: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in sorted(recurrences, key=lambda e: e["seq"]):
        by_issue[e["issue_id"]].append(e)
    out = []
    for iid, recs in by_issue.items():
        for i, rec in enumerate(recs):
            upper = recs[i + 1]["seq"] if i + 1 < len(recs) else None
            window = [g for g in gates if g["issue_id"] == iid and g["seq"] > rec["seq"]
                      and (upper is None or g["seq"] < upper)]
            esc = [g for g in window if archive_escalated(g)]
            out.append({"issue": iid, "ts": rec["ts"], "signal": rec.get("signal_id"), "event": rec["event"],
                        "kind": "fix-did-not-hold" if rec["event"] == "fix-did-not-hold" else "reopened",
                        "fix": rec.get("fix_id"), "reason": rec.get("reason"),
                        "reanalysed": bool(window), "escalated": bool(esc),
                        "matched": ((esc[0]["checks"].get("archive") or {}).get("matched") if esc else None),
                        "chains": [g["chain_id"] for g in window]})
    out.sort(key=lambda r: r["ts"])
    return out


# --------------------------------------------------------------------------- learning


def failure_class(chain: dict[str, Any]) -> tuple[str, str]:
    category = chain.get("root_category") or "uncategorised"
    return category, (chain.get("mode") or _norm(chain.get("root_statement")))


def eliminated_classes(store: Store, issues: dict[str, dict[str, Any]], resolutions: Sequence[dict[str, Any]],
                       recurrences: Sequence[dict[str, Any]], chains: dict[str, dict[str, Any]],
                       archive: Sequence[dict[str, Any]], fixes: dict[str, dict[str, Any]],
                       fix_events: Sequence[dict[str, Any]], verifications: Sequence[dict[str, Any]],
                       gates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    did_not_hold = {a["chain_id"] for a in archive if a["outcome"] == "did-not-hold"}
    passed_chains = {g["chain_id"] for g in gates if gate_all_passed(g)}
    verified_fix_events = {e["fix_id"] for e in fix_events if e["status"] == "verified"}
    steps: dict[str, list[bool]] = defaultdict(list)
    for v in verifications:
        if v.get("fix_id"):
            steps[v["fix_id"]].append(bool(v["passed"]))

    def fix_verified(fix_id: str | None) -> bool:
        if not fix_id:
            return False
        return fix_id in verified_fix_events or (bool(steps.get(fix_id)) and all(steps[fix_id]))

    found: dict[str, tuple[datetime, str | None]] = {}
    for a in archive:
        if a["outcome"] == "resolved":
            found.setdefault(a["chain_id"], (a["resolved_at"] or a["archived_at"], a["issue_id"]))
    for r in resolutions:
        fix = fixes.get(r.get("fix_id") or "")
        chain_id = r.get("chain_id") or (fix or {}).get("chain_id")
        if chain_id and chain_id in passed_chains and fix_verified(r.get("fix_id")):
            ts, _ = found.get(chain_id, (r["ts"], None))
            found[chain_id] = (min(ts, r["ts"]), r["issue_id"])
    # A resolution whose failure mode came back did not eliminate anything, whether or not anyone archived
    # its chain as did-not-hold: a later genuine occurrence of the fingerprint, or a reopening of the issue.
    held = {cid for cid, came_back in zip(found, _came_back(store, issues, found, recurrences)) if not came_back}
    classes: dict[tuple[str, str], dict[str, Any]] = {}
    for chain_id, (ts, issue_id) in found.items():
        if chain_id in did_not_hold or chain_id not in held or chain_id not in chains:
            continue
        chain = chains[chain_id]
        key = failure_class(chain)
        cur = classes.get(key)
        if cur is None or ts < cur["eliminated_at"]:
            classes[key] = {"class": f"{key[0]} / {key[1]}", "category": key[0], "mode": chain.get("mode"),
                            "root": chain.get("root_statement"), "chain": chain_id,
                            "issue": issue_id or chain.get("issue_id"), "eliminated_at": ts}
    return sorted(classes.values(), key=lambda c: (c["eliminated_at"], c["class"]))


def _came_back(store: Store, issues: dict[str, dict[str, Any]], found: dict[str, tuple[datetime, str | None]],
               recurrences: Sequence[dict[str, Any]]) -> list[bool]:
    keys = list(found)
    fps = [issues.get(found[c][1] or "", {}).get("fingerprint") for c in keys]
    probes = [(fp, found[c][0]) for c, fp in zip(keys, fps) if fp]
    after = iter(q.first_genuine_after(store, probes))
    out = []
    for c, fp in zip(keys, fps):
        ts, iid = found[c]
        occurred = next(after) is not None if fp else False
        reopened = any(r["issue_id"] == iid and r["ts"] > ts for r in recurrences)
        out.append(occurred or reopened)
    return out


def lead_times(store: Store, rules: Sequence[dict[str, Any]], firings: Sequence[dict[str, Any]],
               issues: dict[str, dict[str, Any]]) -> dict[str, Any]:
    per_rule = []
    all_leads: list[float] = []
    for rule in rules:
        if rule["kind"] != "early-warning":
            continue
        fp = issues.get(rule.get("issue_id") or "", {}).get("fingerprint")
        fired = [f for f in firings if f["rule_id"] == rule["id"] and f["verdict"] in ("new", "ongoing")]
        nexts = q.first_genuine_after(store, [(fp, f["ts"]) for f in fired]) if fp else [None] * len(fired)
        leads = [(n["ts"] - f["ts"]).total_seconds() for f, n in zip(fired, nexts)
                 if n is not None and n["ts"] - f["ts"] <= LEAD_WINDOW]
        all_leads += leads
        definition = rule.get("definition") or {}
        per_rule.append({"rule": rule["id"], "issue": rule.get("issue_id"), "mode": definition.get("mode"),
                         "learned_at": rule["created_at"], "lead_time_s_in_lesson": definition.get("lead_time_s"),
                         "warnings": len(fired), "followed_by_symptom": len(leads),
                         "mean_lead_time_s": round(sum(leads) / len(leads), 1) if leads else None})
    return {"before_learning_s": 0.0,
            "after_learning_mean_s": round(sum(all_leads) / len(all_leads), 1) if all_leads else None,
            "warnings_followed_by_symptom": len(all_leads), "rules": per_rule}


# --------------------------------------------------------------------------- stages, gate, noise


def stage_hours(events: Sequence[dict[str, Any]], now: datetime | None) -> dict[str, dict[str, Any]]:
    spans: dict[str, list[float]] = {name: [] for name in STAGES.values()}
    by_issue: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e["seq"]):
        by_issue[e["issue_id"]].append(e)
    for evs in by_issue.values():
        for i, e in enumerate(evs):
            stage = STAGES.get(e["status"])
            if stage is None:
                continue
            end = evs[i + 1]["ts"] if i + 1 < len(evs) else now
            if end is None:
                continue
            if i + 1 < len(evs) and evs[i + 1]["status"] == e["status"]:
                # a same-status event (another occurrence noted, say) continues the stage; count it once
                evs[i + 1] = {**evs[i + 1], "ts": e["ts"]}
                continue
            spans[stage].append(max(0.0, _hours(end - e["ts"])))
    return {name: {"count": len(v), "total_hours": round(sum(v), 4), "mean_hours": _mean(v),
                   "max_hours": round(max(v), 4) if v else None} for name, v in spans.items()}


def gate_rejections(gates: Sequence[dict[str, Any]], top: int = 5) -> dict[str, Any]:
    by_check: dict[str, dict[str, Any]] = {}
    rejected = [g for g in gates if not gate_all_passed(g)]
    for name in CHECKS:
        reasons = Counter(str((g["checks"].get(name) or {}).get("reason") or "")
                          for g in rejected if not (g["checks"].get(name) or {}).get("passed", False))
        by_check[name] = {"failed": sum(reasons.values()),
                          "reasons": [{"reason": r, "count": n} for r, n in reasons.most_common(top)]}
    return {"judged": len(gates), "passed": len(gates) - len(rejected), "rejected": len(rejected),
            "archive_escalations": sum(1 for g in gates if archive_escalated(g)), "by_check": by_check}


def noise_by_source(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = out.setdefault(r["source"], {"judged": 0, "info": 0, "noise": 0, "genuine": 0, "noise_ratio": None})
        d["judged"] += r["n"]
        if r["verdict"] == "noise":
            d["noise"] += r["n"]
        elif r["verdict"] in q.GENUINE:
            d["genuine"] += r["n"]
        elif r["verdict"] == "info":
            d["info"] += r["n"]
    for d in out.values():
        failing = d["noise"] + d["genuine"]
        d["noise_ratio"] = round(d["noise"] / failing, 4) if failing else None
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- time series


def bucket_unit(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "day"
    span = end - start
    return "hour" if span <= timedelta(days=3) else "day" if span <= timedelta(days=120) else "week"


def truncate(ts: datetime, unit: str) -> datetime:
    ts = ts.astimezone(timezone.utc)
    if unit == "hour":
        return ts.replace(minute=0, second=0, microsecond=0)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if unit == "day" else day - timedelta(days=day.weekday())


def buckets(start: datetime, end: datetime, unit: str) -> list[datetime]:
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}[unit]
    out, t = [], truncate(start, unit)
    while t <= end:
        out.append(t)
        t += step
    return out


def issue_series(events: Sequence[dict[str, Any]], resolutions: Sequence[dict[str, Any]],
                 issues: Sequence[dict[str, Any]], slots: Sequence[datetime], unit: str) -> list[dict[str, Any]]:
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}[unit]
    opened = Counter(truncate(i["opened_at"], unit) for i in issues)
    resolved = Counter(truncate(r["ts"], unit) for r in resolutions)
    ordered = sorted(events, key=lambda e: (e["ts"], e["seq"]))
    status: dict[str, str] = {}
    out, k = [], 0
    for t in slots:
        while k < len(ordered) and ordered[k]["ts"] < t + step:
            status[ordered[k]["issue_id"]] = ordered[k]["status"]
            k += 1
        out.append({"t": t, "opened": opened.get(t, 0), "resolved": resolved.get(t, 0),
                    "active": sum(1 for s in status.values() if s in ACTIVE)})
    return out


# --------------------------------------------------------------------------- the report


def _issue_summaries(issues: Sequence[dict[str, Any]], chains: Sequence[dict[str, Any]], gates: Sequence[dict[str, Any]],
                     fixes: Sequence[dict[str, Any]], recurrences: Sequence[dict[str, Any]],
                     events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    gate_by_chain: dict[str, dict[str, Any]] = {}
    for g in gates:
        gate_by_chain[g["chain_id"]] = g
    by_id = {c["id"]: c for c in chains}
    referenced: dict[str, str] = {}
    for e in events:  # an issue explained by another issue's chain (grouped as one of its links) names it
        if e.get("chain_id") in by_id:
            referenced[e["issue_id"]] = e["chain_id"]
    out = []
    for i in issues:
        mine = [c for c in chains if c["issue_id"] == i["id"]]
        passed = [c for c in mine if c["id"] in gate_by_chain and gate_all_passed(gate_by_chain[c["id"]])]
        shown = (passed or mine or [by_id.get(referenced.get(i["id"], ""))])[-1]
        fix = None
        if shown is not None:
            fix = next((f for f in reversed(fixes) if f["chain_id"] == shown["id"]), None)
        out.append({"id": i["id"], "title": i["title"], "kind": i["kind"], "status": i["status"],
                    "service": i["service"], "source": i["source"], "opened_at": i["opened_at"],
                    "resolved_at": i["resolved_at"], "occurrences": i["occurrences"],
                    "recurrences": sum(1 for r in recurrences if r["issue_id"] == i["id"]),
                    "chains": [c["id"] for c in mine], "chain": shown["id"] if shown else None,
                    "chain_issue": shown["issue_id"] if shown else None,
                    "gate_passed": (gate_all_passed(gate_by_chain[shown["id"]]) if shown and shown["id"] in gate_by_chain
                                    else None),
                    "root": shown["root_statement"] if shown else None,
                    "fix": fix["id"] if fix else None, "fix_action": fix["action"] if fix else None,
                    "fix_status": fix["status"] if fix else None})
    return out


def compute_report(store: Store, now: datetime | None = None) -> dict[str, Any]:
    """Every figure of the report, from the store; `now` defaults to the store's latest record."""
    now = now or q.latest_record_ts(store)
    issue_list = q.issue_rows(store)
    issues = {i["id"]: i for i in issue_list}
    events = q.issue_event_rows(store)
    cycles = q.cycle_rows(store)
    gates = q.gate_rows(store)
    chain_list = q.chain_rows(store)
    chains = {c["id"]: c for c in chain_list}
    archive = q.archive_rows(store)
    fix_list = q.fix_rows(store)
    fixes = {f["id"]: f for f in fix_list}
    fix_events = q.fix_event_rows(store)
    verifications = q.verification_rows(store)
    rules = q.learned_rule_rows(store)
    verdicts = q.verdict_counts(store)
    start, end = q.lifetime_bounds(store)

    resolutions, recurrences = transitions(events)
    windows = cycle_windows(cycles, now)
    per_cycle = mttr_by_cycle(issues, resolutions, windows)
    if per_cycle:
        latest = per_cycle[-1]
        latest_cycle = {k: latest[k] for k in ("cycle", "kind", "started_at", "ended_at", "resolved")}
        mttr_latest, scope = latest["mttr_hours"], "latest cycle"
    else:
        _, mttr_latest = lifetime_mttr(issues, resolutions)
        latest_cycle, scope = None, "lifetime (no cycles recorded)"

    validated = validated_resolutions(resolutions, gates)
    repeats = repeat_failure_modes(store, issues, validated, recurrences)
    recs = recurrence_escalations(list(recurrences) + fix_did_not_hold(events), gates)
    classes = eliminated_classes(store, issues, resolutions, recurrences, chains, archive, fixes, fix_events,
                                 verifications, gates)
    if start is not None and end is not None:
        days = max((end - start).total_seconds() / 86400.0, 1.0)
    else:
        days = 1.0
    weeks = days / 7.0
    passed_chains = {g["chain_id"] for g in gates if gate_all_passed(g)}
    formal = sorted({g["issue_id"] for g in gates if g["issue_id"] and gate_all_passed(g)}
                    | {e["issue_id"] for e in events if e.get("chain_id") in passed_chains})

    unit = bucket_unit(start, end)
    slots = buckets(start, end, unit) if start and end else []
    sig = {r["t"]: r for r in q.verdict_buckets(store, unit)}
    eliminated_by_slot = Counter(truncate(c["eliminated_at"], unit) for c in classes)
    cumulative, series_classes = 0, []
    for t in slots:
        cumulative += eliminated_by_slot.get(t, 0)
        series_classes.append({"t": t, "eliminated": cumulative})

    status_counts = Counter(i["status"] for i in issue_list)
    return {
        "issues_tracked": len(issue_list),
        "issues_with_formal_rca": len(formal),
        "active_issues": sum(1 for i in issue_list if i["status"] in ACTIVE),
        "mttr_hours_latest_cycle": mttr_latest,
        "repeat_issues": len(repeats),
        "recurrences_escalated": sum(1 for r in recs if r["escalated"]),
        "learning_velocity_per_week": round(len(classes) / weeks, 4),
        "noise_signals": verdicts.get("noise", 0),
        "genuine_signals": sum(verdicts.get(v, 0) for v in q.GENUINE),
        "info_signals": verdicts.get("info", 0),
        "now": now,
        "lifetime": {"start": start, "end": end, "days": round(days, 4), "weeks": round(weeks, 4)},
        "mttr_scope": scope,
        "latest_cycle": latest_cycle,
        "mttr_per_cycle": per_cycle,
        "issues_by_status": {s: status_counts.get(s, 0) for s in ACTIVE + ("resolved",)},
        "issues_by_kind": dict(sorted(Counter(i["kind"] for i in issue_list).items())),
        "issues_with_formal_rca_ids": formal,
        "repeat_failure_modes": repeats,
        "recurrences": recs,
        "failure_classes_eliminated": classes,
        "noise_by_source": noise_by_source(q.verdicts_by_source(store)),
        "gate_rejections": gate_rejections(gates),
        "stage_hours": stage_hours(events, now),
        "detection_lead_time": lead_times(store, rules, q.learned_rule_firings(store), issues),
        "learned_rules": {"total": len(rules), "active": sum(1 for r in rules if r["status"] == "active")},
        "timeseries": {
            "unit": unit,
            "issues": issue_series(events, resolutions, issue_list, slots, unit),
            "signals": [{"t": t, "noise": sig.get(t, {}).get("noise", 0), "genuine": sig.get(t, {}).get("genuine", 0)}
                        for t in slots],
            "classes_eliminated": series_classes,
        },
        "issues": _issue_summaries(issue_list, chain_list, gates, fix_list, recurrences, events),
    }


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The contract's keys only (section 7), in order."""
    keys = ("issues_tracked", "issues_with_formal_rca", "active_issues", "mttr_hours_latest_cycle", "repeat_issues",
            "recurrences_escalated", "learning_velocity_per_week", "noise_signals", "genuine_signals")
    return {k: report[k] for k in keys}




def compute_status(store: Store, now: datetime | None = None) -> dict[str, Any]:
    """One screen of what matters now: active issues (needs-human first), the last cycle, recent signals."""
    now = now or q.latest_record_ts(store)
    issues = q.issue_rows(store)
    events = q.issue_event_rows(store)
    latest: dict[str, dict[str, Any]] = {}
    for e in events:
        latest[e["issue_id"]] = e
    order = {s: k for k, s in enumerate(("needs-human", "open", "analysing", "fixing", "verifying"))}
    active = sorted((i for i in issues if i["status"] in ACTIVE), key=lambda i: (order.get(i["status"], 9), i["num"]))
    rows = [{"id": i["id"], "title": i["title"], "kind": i["kind"], "status": i["status"], "service": i["service"],
             "source": i["source"], "opened_at": i["opened_at"], "since": latest.get(i["id"], {}).get("ts"),
             "reason": latest.get(i["id"], {}).get("reason"), "reopened": bool(i["reopened"])} for i in active]
    report = compute_report(store, now=now)
    cycle = None
    cycles = q.cycle_rows(store)
    if cycles:
        c = cycles[-1]
        per = report["mttr_per_cycle"][-1]
        windows = cycle_windows(cycles, now)
        cycle = {"id": c["id"], "kind": c["kind"], "started_at": c["started_at"], "ended_at": c["ended_at"],
                 "running": c["ended_at"] is None, "resolved": per["resolved"], "mttr_hours": per["mttr_hours"],
                 "events": sum(1 for e in events if cycle_of(e, windows) == c["id"])}
    spans = {"last_hour": timedelta(hours=1), "last_24h": timedelta(hours=24)}
    signals = {"total": sum(q.signal_counts(store).values()), "untriaged": q.untriaged_count(store)}
    for name, span in spans.items():
        counts = q.signal_counts(store, now - span, now) if now else {}
        signals[name] = {"total": sum(counts.values()), "genuine": sum(counts.get(v, 0) for v in q.GENUINE),
                         "noise": counts.get("noise", 0), "info": counts.get("info", 0),
                         "untriaged": counts.get("untriaged", 0)}
    return {"now": now, "active_issues": rows, "needs_human": [r for r in rows if r["status"] == "needs-human"],
            "last_cycle": cycle, "signals": signals, "headline": headline(report)}
