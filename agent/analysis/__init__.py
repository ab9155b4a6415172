"""Root cause analysis: draft a 5-Whys chain from evidence, gate it, re-draft, escalate.

    from agent.analysis import analyze_issue, analyze_case
    result = analyze_issue(store, cfg, "ISS-0003", clock)   # live: probes run, chain + gate result stored
    result = analyze_case(case)                             # pure: a recorded incident (contracts section 9)

The offline analyst (knowledge base walker) is the default; when
`analysis.model` is configured the LLM agent drafts instead, and the offline
analyst takes over if the model cannot be reached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from agent.models import AnalysisCase, AnalysisResult, ArchiveEntry, Chain, GateResult, Signal

if TYPE_CHECKING:
    from agent.analysis.knowledge import Mode
    from agent.analysis.offline import Context, Outcome
    from agent.clock import Clock
    from agent.config import Config
    from agent.store import Store

__all__ = ["analyze_case", "analyze_issue", "Gatekeeper"]


class Gatekeeper:
    """The gate bound to one analysis: settings and archive index built once, evidence rebuilt only when probes
    added signals since the last judgement."""

    def __init__(self, signals: list[Signal], archive: Sequence[ArchiveEntry], cfg: "Config | None" = None):
        from agent.gate import ArchiveIndex, GateSettings

        self.settings = GateSettings.load(cfg)
        self.index = ArchiveIndex(list(archive), self.settings)
        self.signals = signals
        self._evidence: Any = None
        self._count = -1

    def __call__(self, chain: Chain) -> GateResult:
        from agent.gate import Evidence, judge

        if self._evidence is None or self._count != len(self.signals):
            self._evidence = Evidence(self.signals)
            self._count = len(self.signals)
        return judge(chain, self._evidence, self.index, self.settings)


def make_context(symptom: Signal, signals: list[Signal], archive: Sequence[ArchiveEntry], cfg: "Config | None",
                 settings: Any, **extra: Any) -> "Context":
    from agent.analysis.offline import Context

    window_h = cfg.analysis.evidence_window_h if cfg is not None else 24.0
    return Context(symptom=symptom, signals=signals, archive=list(archive), window_s=window_h * 3600.0,
                   skew_s=settings.clock_skew_s, necessity_s=settings.necessity_window_s,
                   episode_gap_s=settings.episode_gap_s, min_links=settings.min_links, max_links=settings.max_links,
                   **extra)


def outcome_result(outcome: "Outcome", analyst: str = "offline") -> AnalysisResult:
    chosen = outcome.chosen
    # A mode is identified only by a chain that passed; a rejected draft's mode is a candidate.
    extra: dict[str, Any] = {"analyst": analyst, "mode": chosen.mode.id if chosen and not outcome.escalated else None}
    if outcome.escalated and chosen is not None:
        extra["candidate_mode"] = chosen.mode.id
    if outcome.notes:
        extra["notes"] = outcome.notes
    return AnalysisResult(escalated=outcome.escalated, chain=chosen.chain if chosen else None,
                          gate=chosen.gate if chosen else None, reason=outcome.reason, **extra)


def analyze_case(case: AnalysisCase, cfg: "Config | None" = None, modes: "Sequence[Mode] | None" = None) -> AnalysisResult:
    """Judge a recorded incident offline: no probe runs, the case's probe signals are the state facts."""
    from agent.analysis.knowledge import load_modes
    from agent.analysis.offline import analyse
    from agent.errors import InputError

    symptom = next((s for s in case.signals if s.id == case.issue.symptom_signal), None)
    if symptom is None:
        raise InputError(f"issue.symptom_signal: no signal with id {case.issue.symptom_signal!r} in the case")
    signals = list(case.signals)
    gate = Gatekeeper(signals, case.archive, cfg)
    ctx = make_context(symptom, signals, case.archive, cfg, gate.settings)
    outcome = analyse(ctx, modes if modes is not None else load_modes(cfg), gate)
    return outcome_result(outcome)


def analyze_issue(store: "Store", cfg: "Config", issue_id: str, clock: "Clock | None" = None, *, probes: bool = True,
                  modes: "Sequence[Mode] | None" = None) -> AnalysisResult:
    """Analyse one stored issue: gather evidence, probe, draft, gate, re-draft, store, set the issue's status.

    `probes=False` runs no probe (the stored probe signals are the state facts: evals replaying a recorded
    incident); `modes` replaces the knowledge base."""
    from agent.analysis.run import run_issue

    return run_issue(store, cfg, issue_id, clock, probes=probes, modes=modes)
