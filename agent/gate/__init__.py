"""The four-check gate: deterministic, pure judgement of a why-chain (contract sections 2-4).

    from agent.gate import judge, ArchiveIndex, GateSettings
    index = ArchiveIndex(archive_entries)            # once per store
    result = judge(chain, signals, index, settings)   # per chain: GateResult

`judge` does no I/O and calls no model. Each check returns its reason whether
it passes or not; failed reasons are what the analyst re-drafts from.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from agent.gate.archive import ArchiveIndex, check_archive
from agent.gate.completeness import check_completeness
from agent.gate.counterfactual import check_counterfactual
from agent.gate.evidence import Evidence
from agent.gate.graph import shape
from agent.gate.matching import describe, observe_matches
from agent.gate.reproduce import check_reproduce
from agent.gate.settings import GateSettings
from agent.models import Chain, GateChecks, GateResult, Signal

__all__ = ["ArchiveIndex", "Evidence", "GateSettings", "describe", "judge", "observe_matches"]


def judge(
    chain: Chain,
    signals: "Sequence[Signal] | Evidence",
    archive: "ArchiveIndex | Sequence[Any]" = (),
    settings: GateSettings | None = None,
) -> GateResult:
    """Run the four checks. `signals` may be a prepared Evidence and `archive` a prebuilt ArchiveIndex (reuse both
    across re-drafts); `elapsed_ms` covers the checks and whatever preparation was not done beforehand."""
    settings = settings or GateSettings.load()
    started = time.perf_counter()
    ev = Evidence.of(signals)
    if isinstance(archive, ArchiveIndex):
        archive = archive.at(settings.archive_similarity)
    else:
        archive = ArchiveIndex(archive, settings)
    form = shape(chain)
    checks = GateChecks(
        reproduce=check_reproduce(chain, ev, form, settings),
        archive=check_archive(chain, archive, settings),
        completeness=check_completeness(chain, ev, form, settings),
        counterfactual=check_counterfactual(chain, ev, form, settings),
    )
    elapsed = (time.perf_counter() - started) * 1000.0
    passed = all(c.passed for _, c in checks)
    return GateResult(passed=passed, elapsed_ms=round(elapsed, 3), checks=checks)
