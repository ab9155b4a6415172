"""Analysing a stored issue: gather evidence, probe, draft, gate, store, move the issue on.

The issue goes `analysing` while this runs, then `fixing` when a chain passed
the gate or `needs-human` when every draft was rejected (with the best
rejected chain, the gate's reasons and the missing evidence as the event's
reason). Every gated draft and its gate result are stored, so "earlier gate
rejections" can be read back and the LLM agent sees them next time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.models import AnalysisResult, Chain, GateResult, Signal

if TYPE_CHECKING:
    from agent.clock import Clock
    from agent.config import Config
    from agent.store import Store

_KEEP_REJECTED = 5


def run_issue(store: "Store", cfg: "Config", issue_id: str, clock: "Clock | None" = None, *, probes: bool = True,
              modes: Any = None) -> AnalysisResult:
    """`probes=False` runs no probe (a replayed store's recorded probe signals are the state facts); `modes`
    replaces the knowledge base (evals judge a changed one)."""
    from agent.analysis import evidence as ev
    from agent.analysis.knowledge import load_modes
    from agent.clock import SystemClock
    from agent.store.issues import add_event

    clock = clock or SystemClock()
    issue = ev.get_issue(store, issue_id)
    if modes is None:
        modes = load_modes(cfg)  # a broken knowledge base is reported before the issue changes state
    symptom = ev.symptom_signal(store, issue)
    now = clock.now()
    add_event(store, issue_id, "analysing", "analysing", now, signal_id=symptom.id,
              reason=f"analysing {symptom.source} signal {symptom.id}")
    try:
        return _analyse(store, cfg, issue, symptom, modes, clock, probes=probes)
    except Exception as exc:
        # Never leave an issue stuck in `analysing`: a person takes it, with the error as the reason.
        add_event(store, issue_id, "needs-human", "analysis-failed", clock.now(),
                  reason=f"analysis failed: {type(exc).__name__}: {exc}"[:4000])
        raise


def _analyse(store: "Store", cfg: "Config", issue: dict[str, Any], symptom: Signal, modes: Any,
             clock: "Clock", probes: bool = True) -> AnalysisResult:
    from agent.analysis import Gatekeeper, make_context, outcome_result
    from agent.analysis import evidence as ev
    from agent.analysis.offline import analyse
    from agent.analysis.probes import ProbeRunner
    from agent.gate import GateSettings
    from agent.store.issues import add_event

    issue_id = issue["id"]
    now = clock.now()
    archive = ev.archived_chains(store)
    settings = GateSettings.load(cfg)
    recurrence = ev.is_recurrence(store, issue_id)
    since = ev.last_resolution(store, issue_id) if recurrence else None
    signals = ev.gather(store, issue, symptom, window_s=cfg.analysis.evidence_window_h * 3600.0,
                        necessity_s=settings.necessity_window_s, gap_s=settings.episode_gap_s, now=now, since=since)
    runner = ProbeRunner(cfg, clock)
    probed: list[Signal] = []

    def probe(spec: dict[str, Any]) -> list[Signal]:
        found = runner.run(spec)
        probed.extend(found)
        return found

    service_cfg = cfg.remedy.services.get(symptom.service or "") if symptom.service else None
    if probes:
        signals = signals + _survey(probe, symptom, service_cfg)
    gate = Gatekeeper(signals, archive, cfg)
    ctx = make_context(symptom, signals, archive, cfg, settings, probe=probe if probes else None,
                       config_files=list(service_cfg.config_files) if service_cfg else [],
                       recurrence=recurrence, recurrence_since=since)

    result: AnalysisResult | None = None
    drafts: list[tuple[Chain, GateResult | None, str | None]] = []
    analyst = "offline"
    fallback_note = ""
    if cfg.analysis.model is not None:
        from agent.analysis.llm import ModelUnavailable, draft_with_model

        try:
            result, drafts = draft_with_model(store, cfg, issue, symptom, ctx, gate, clock)
            analyst = f"model:{cfg.analysis.model.model}"
        except ModelUnavailable as exc:
            fallback_note = f"model unavailable ({exc}); the offline analyst took over"
    if result is None:
        outcome = analyse(ctx, modes, gate)
        result = outcome_result(outcome, analyst="offline")
        gated = [d for d in outcome.drafts if d.gate is not None]
        rejected = [d for d in gated if not d.gate.passed][-_KEEP_REJECTED:]  # type: ignore[union-attr]
        keep = rejected + ([outcome.passed] if outcome.passed else [])
        if outcome.best is not None and outcome.best not in keep:
            keep.append(outcome.best)
        drafts = [(d.chain, d.gate, d.mode.id) for d in keep]
        if fallback_note:
            result.reason = f"{fallback_note}; {result.reason}"
            result.notes = [fallback_note] + list(getattr(result, "notes", []) or [])  # type: ignore[attr-defined]

    if probed:
        from agent.store.signals import insert_signals

        insert_signals(store, probed)

    chosen_id = _store_drafts(store, issue_id, drafts, result, analyst, clock)
    if result.chain is not None and chosen_id is not None:
        result.chain = result.chain.model_copy(update={"id": chosen_id})
    result.issue = issue_id  # type: ignore[attr-defined]
    result.chain_id = chosen_id  # type: ignore[attr-defined]
    result.analyst = analyst if not fallback_note else "offline"  # type: ignore[attr-defined]
    done = clock.now()
    if result.escalated:
        add_event(store, issue_id, "needs-human", "escalated", done, chain_id=chosen_id, reason=result.reason[:4000])
    else:
        add_event(store, issue_id, "fixing", "analysed", done, chain_id=chosen_id, reason=result.reason[:4000],
                  attrs={"mode": getattr(result, "mode", None)})
    return result


def _survey(probe: Any, symptom: Signal, service_cfg: Any) -> list[Signal]:
    """Every key of the service's config files, read before the walk: the state facts most roots are about."""
    from agent.analysis.probes import ProbeError

    found: list[Signal] = []
    for path in (service_cfg.config_files if service_cfg else []):
        try:
            found.extend(probe({"kind": "config_key", "file": path, "key_match": ".*", "service": symptom.service}))
        except ProbeError:
            continue  # an unreadable file is missing evidence, which the escalation reason names
    return found


def _store_drafts(store: "Store", issue_id: str, drafts: list[tuple[Chain, GateResult | None, str | None]],
                  result: AnalysisResult, analyst: str, clock: "Clock") -> str | None:
    """Save each gated draft with its gate result; returns the stored id of the result's chain."""
    from agent.store.chains import save_chain, save_gate_result

    chosen_id: str | None = None
    with store.transaction():
        for chain, gate, mode in drafts:
            cid = save_chain(store, chain, issue_id=issue_id, analyst=analyst, mode=mode,
                             passed=gate.passed if gate else None, at=clock.now())
            if gate is not None:
                save_gate_result(store, cid, issue_id, gate, at=clock.now())
            if result.chain is not None and chain is result.chain:
                chosen_id = cid
        if result.chain is not None and chosen_id is None:
            cid = save_chain(store, result.chain, issue_id=issue_id, analyst=analyst,
                             mode=getattr(result, "mode", None), passed=result.gate.passed if result.gate else None,
                             at=clock.now())
            if result.gate is not None:
                save_gate_result(store, cid, issue_id, result.gate, at=clock.now())
            chosen_id = cid
    return chosen_id
