"""`selfheal export ISSUE`: an incident folder recorded from a live store, for `selfheal eval`.

What goes in (evals/incidents/README.md, "Recording an incident from a live store"):

- signals.jsonl: every signal the analysis of the issue could read (its evidence window, the necessity window
  before each of its episodes, its own failures), up to the issue's latest analysis, events in time order and
  then the probe signals that analysis read. For a recurrence, the issue's failures from before its last
  resolution stay out: that story is the archived chain's. Probe signals older than the symptom (another
  analysis' readings) stay out too.
- expected.yaml: triage as a fresh replay of those signals judges them (verdict counts, the symptom opening its
  issue, the number of issues); analysis from the issue's latest chain and gate result (the root statement as an
  escaped regex, its category, the fix action, the mode, pass or fail; escalation when no chain passed).
- archive.json: the issue's own archived chains resolved before the symptom (a recurrence).
- fixtures/: the files the fix edits, as they were before the fix (from its backup when it was applied), at
  their path under their remedy root, plus a set_env fix's value_from file.

The prefilled expectations record what selfheal concluded; review them before adding the folder to the set.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from agent.errors import InputError
from agent.models import ArchiveEntry, Signal

if TYPE_CHECKING:
    from agent.config import Config
    from agent.store import Store


def _slug(text: str, limit: int = 48) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = "-".join(words)[:limit].strip("-")
    return out or "incident"


def _literal(text: str) -> str:
    """A regex matching exactly `text`, readable: spaces stay spaces (the eval searches without re.VERBOSE)."""
    return re.escape(text).replace("\\ ", " ")


def export_issue(store: "Store", cfg: "Config", issue_id: str, out: str | Path | None = None) -> dict[str, Any]:
    from agent.analysis import evidence as ev
    from agent.store import chains as chain_store
    from agent.store import issues as issue_store

    issue = issue_store.get_issue(store, issue_id)
    if issue is None:
        raise InputError(f"no issue {issue_id!r} in the store (see `selfheal issues`)")
    notes: list[str] = []
    symptom = ev.symptom_signal(store, issue)
    chains = chain_store.chains_for_issue(store, issue_id)
    # The latest analysis decides: it stores its rejected drafts first and the chain it chose last.
    latest = chains[-1] if chains else None
    passed = latest if latest is not None and latest["passed"] else None
    until = latest["created_at"] if latest else max(symptom.ts, issue["last_change"] or symptom.ts)
    since = ev.last_resolution(store, issue_id) if ev.is_recurrence(store, issue_id) else None

    signals = _signals(store, cfg, issue, symptom, until, since)
    archive = _archive(store, issue_id, symptom.ts)
    triage, symptom_id = _fresh_triage(cfg, signals, symptom, notes)
    expected = _expected(issue, latest, passed, archive, triage, symptom_id, store, notes)

    folder = Path(out) if out is not None else Path.cwd() / f"{issue_id.lower()}-{_slug(issue['title'] or '')}"
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder}: already exists and is not empty; give --out a new folder")
    fixtures = _fixtures(store, cfg, issue_id, passed, notes)

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "signals.jsonl").open("w", encoding="utf-8") as fh:
        for s in signals:
            fh.write(json.dumps(s.model_dump(mode="json", exclude_none=True), ensure_ascii=False) + "\n")
    (folder / "expected.yaml").write_text(yaml.safe_dump(expected, sort_keys=False, allow_unicode=True, width=120),
                                          encoding="utf-8")
    if archive:
        (folder / "archive.json").write_text(
            json.dumps([e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in archive], indent=2,
                       ensure_ascii=False) + "\n", encoding="utf-8")
    for rel, data, mode in fixtures:
        target = folder / "fixtures" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if mode is not None:
            target.chmod(mode & 0o777)
    return {"path": str(folder), "issue": issue_id, "signals": len(signals),
            "probes": sum(1 for s in signals if s.source == "probe"), "archive": len(archive),
            "fixtures": [rel for rel, _, _ in fixtures], "expected": expected, "notes": notes}


def _signals(store: "Store", cfg: "Config", issue: dict[str, Any], symptom: Signal, until: datetime,
             since: datetime | None) -> list[Signal]:
    from agent.analysis import evidence as ev
    from agent.gate import GateSettings
    from agent.store import issues as issue_store

    settings = GateSettings.load(cfg)
    found = ev.gather(store, issue, symptom, window_s=cfg.analysis.evidence_window_h * 3600.0,
                      necessity_s=settings.necessity_window_s, gap_s=settings.episode_gap_s, now=until, since=since)
    earlier: set[str] = set()
    if since is not None:
        earlier = {o["signal_id"] for o in issue_store.occurrences(store, issue["id"]) if o["ts"] <= since}
    kept = [s for s in found if s.ts <= until and s.id not in earlier]
    events = [s for s in kept if s.source != "probe"]
    probes = [s for s in kept if s.source == "probe" and s.ts >= symptom.ts]
    events.sort(key=lambda s: s.ts)  # stable: the store's ingestion order breaks ties
    probes.sort(key=lambda s: s.ts)
    return events + probes


def _archive(store: "Store", issue_id: str, before: datetime) -> list[ArchiveEntry]:
    from agent.store import chains as chain_store

    entries: dict[str, ArchiveEntry] = {}
    for row in chain_store.archive_rows(store, issue_id):
        resolved = row["resolved_at"]
        if row["outcome"] == "resolved" and resolved is not None and resolved < before:
            entries[row["chain_id"]] = ArchiveEntry(chain=row["chain"], resolved_at=resolved)
    return list(entries.values())


def _fresh_triage(cfg: "Config", signals: list[Signal], symptom: Signal, notes: list[str]) -> tuple[dict[str, Any], str]:
    """What triage says about the exported signals on an empty store, as the eval will replay them."""
    import tempfile
    from collections import Counter

    from agent.clock import FakeClock
    from agent.evals.sandbox import eval_config
    from agent.store import Store
    from agent.store import issues as issue_store
    from agent.triage import Triage

    with tempfile.TemporaryDirectory(prefix="selfheal-export-") as tmp:
        ecfg = eval_config(cfg, Path(tmp) / "home", Path(tmp) / "root")
        store = Store.open(None)
        try:
            results = Triage(store, ecfg, FakeClock(signals[0].ts if signals else symptom.ts)).judge(signals)
            opened = len(issue_store.list_issues(store))
        finally:
            store.close()
    by_id = {r.signal_id: r for r in results}
    mine = by_id.get(symptom.id or "")
    symptom_id = symptom.id or ""
    if mine is not None and mine.verdict != "new":
        opener = next((r for r in results if r.fingerprint == mine.fingerprint and r.verdict == "new"), None)
        if opener is not None:
            notes.append(f"the symptom {symptom_id} is {mine.verdict} on a fresh replay; its issue opens at "
                         f"{opener.signal_id}, which becomes symptom_signal")
            symptom_id = opener.signal_id
        else:
            notes.append(f"the symptom {symptom_id} is {mine.verdict} on a fresh replay and nothing opens its "
                         "issue: check expected.yaml by hand")
    counts = dict(sorted(Counter(r.verdict for r in results).items()))
    return {"counts": counts, "verdicts": {symptom_id: "new"}, "issues": opened}, symptom_id


def _expected(issue: dict[str, Any], latest: dict[str, Any] | None, passed: dict[str, Any] | None,
              archive: list[ArchiveEntry], triage: dict[str, Any], symptom_id: str, store: "Store",
              notes: list[str]) -> dict[str, Any]:
    from agent.store import chains as chain_store

    if passed is not None:
        chain = passed["chain"]
        root = chain.root_node
        analysis = {"escalate": False, "root_statement": _literal(root.statement), "root_category": root.category,
                    "fix_action": chain.fix.action if chain.fix else None, "gate": "pass"}
        kind = "recurrence" if archive else "mode"
        mode = passed.get("mode")
        description = f"{issue['title']}: {root.statement}"
    else:
        if latest is None:
            notes.append(f"{issue['id']} was never analysed: the expectations assume it escalates; edit them")
        else:
            gates = chain_store.gate_results(store, chain_id=latest["id"])
            if gates and gates[-1]["passed"]:
                notes.append(f"chain {latest['id']} is not marked passed but its gate result is; check expected.yaml")
        analysis = {"escalate": True, "root_statement": None, "root_category": None, "fix_action": None, "gate": "fail"}
        kind, mode = ("recurrence" if archive else "missing-evidence"), None
        if archive:
            notes.append("a recurrence that escalated: set `mode` to the failure mode by hand")
        description = f"{issue['title']}: escalated, no chain passed the gate"
    if passed is not None and mode is None:
        notes.append("the chain carries no knowledge-base mode (drafted by a model): set `mode` by hand")
    return {"description": description, "kind": kind, "mode": mode, "symptom_signal": symptom_id,
            "triage": {"counts": triage["counts"], "verdicts": triage["verdicts"]},
            "issues": triage["issues"], "analysis": analysis,
            "recorded_from": {"issue": issue["id"], "chain": passed["id"] if passed else (latest or {}).get("id")}}


def _fixtures(store: "Store", cfg: "Config", issue_id: str, passed: dict[str, Any] | None,
              notes: list[str]) -> list[tuple[str, bytes, int | None]]:
    """(path under fixtures/, original bytes, mode) of each file the fix edits or reads."""
    if passed is None or passed["chain"].fix is None:
        return []
    from agent.clock import SystemClock
    from agent.remedy.base import Backup, RemedyError
    from agent.remedy.catalog import get_action
    from agent.remedy.executor import context
    from agent.remedy.paths import configured_roots, display
    from agent.store import fixes as fix_store

    fix = passed["chain"].fix
    roots = configured_roots(cfg)
    originals: dict[str, tuple[bytes, int | None]] = {}
    for f in fix_store.fixes(store, issue_id=issue_id):
        recorded = fix_store.latest_backup(store, f["id"]) if f["chain_id"] == passed["id"] else None
        if not recorded:
            continue
        for fb in Backup.model_validate(recorded).files:
            if fb.existed and fb.saved and Path(fb.saved).is_file() and fb.path not in originals:
                originals[fb.path] = (Path(fb.saved).read_bytes(), fb.mode)
    ctx = context(None, cfg, SystemClock())
    paths: list[Path] = []
    try:
        action = get_action(fix.action)
        plan = action.plan(fix.params, ctx)
        paths += [Path(c.path) for c in plan.changes if c.before is not None or c.path in originals]
        value_from = fix.params.get("value_from") if isinstance(fix.params, dict) else None
        if isinstance(value_from, str):
            paths.append(ctx.confine(value_from, what="value_from file"))
    except RemedyError as exc:
        notes.append(f"fixtures: the fix does not plan here ({exc}); fixtures/ holds the backed-up files only")
        paths += [Path(p) for p in originals]
    out: list[tuple[str, bytes, int | None]] = []
    seen: set[str] = set()
    for path in paths:
        label = display(path, roots)
        if label == str(path) or label in seen:
            if label == str(path):
                notes.append(f"fixtures: {path} is outside the remedy roots; not copied")
            continue
        seen.add(label)
        if str(path) in originals:
            data, mode = originals[str(path)]
        else:
            try:
                data, mode = path.read_bytes(), path.stat().st_mode
            except OSError as exc:
                notes.append(f"fixtures: {path}: unreadable ({exc.strerror})")
                continue
        out.append((label, data, mode))
    return out
