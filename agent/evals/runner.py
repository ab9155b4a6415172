"""Run an eval: every incident of a folder replayed, scored, summarised and held against the thresholds."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from agent.errors import InputError
from agent.evals.analysts import MODES, ModelRunError
from agent.evals.scoring import CaseScore

if TYPE_CHECKING:
    from agent.config import Config
    from agent.evals.thresholds import Thresholds

DEFAULT_INCIDENTS = Path(__file__).resolve().parents[2] / "evals" / "incidents"

Progress = Callable[[CaseScore, int, int], None]


@dataclass
class EvalReport:
    path: str
    mode: str
    cases: list[CaseScore]
    summary: dict[str, Any]
    violations: list[str]
    thresholds: str | None
    limits: dict[str, Any]           # the thresholds that applied to this run's mode
    knowledge: str | None = None
    elapsed_s: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "mode": self.mode, "passed": self.passed, "elapsed_s": round(self.elapsed_s, 2),
            "knowledge": self.knowledge, "summary": self.summary,
            "thresholds": {"file": self.thresholds, "passed": self.passed, "violations": self.violations,
                           "limits": self.limits},
            "cases": [c.to_json() for c in self.cases],
        }


def load_knowledge(path: str | Path) -> tuple[Any, ...]:
    """The modes of a knowledge directory used instead of the configured knowledge base."""
    from agent.analysis.knowledge import load_modes

    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"--knowledge {folder}: no such directory")
    modes = load_modes(dirs=[folder])
    if not modes:
        raise InputError(f"--knowledge {folder}: no knowledge-base modes (*.yaml) in it")
    return modes


def run_eval(
    path: str | Path | None,
    cfg: "Config",
    *,
    mode: str = "offline",
    thresholds: "Thresholds | str | Path | None" = None,
    knowledge: str | Path | None = None,
    only: Sequence[str] = (),
    pass_interval_s: float = 300.0,
    record: bool = False,
    progress: Progress | None = None,
) -> EvalReport:
    """Replay and score every incident under `path` (an incident folder or a folder of them).

    `thresholds`: a Thresholds, a file, or None for evals/thresholds.yaml when it exists; `knowledge`: a
    directory of knowledge-base modes replacing the configured ones; `only`: incident names (substrings)."""
    from agent.evals import replay
    from agent.evals.incident import find_incidents, load_incident
    from agent.evals.scoring import score, summarise
    from agent.evals.thresholds import DEFAULT_FILE, Thresholds, load_thresholds, violations
    from agent.rules_engine import TriageRules

    if mode not in MODES:
        raise InputError(f"--mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "live" and cfg.analysis.model is None:
        raise InputError("--mode live needs a model: set analysis.model (model, base_url, api_key_env) in the config")
    if record and mode != "live":
        raise InputError("--record writes the cassettes of a live run: use it with --mode live")
    if pass_interval_s <= 0:
        raise InputError(f"--pass-interval: expected a positive number of seconds, got {pass_interval_s}")
    folders = find_incidents(path if path is not None else DEFAULT_INCIDENTS)
    if only:
        folders = [f for f in folders if any(o in f.name for o in only)]
        if not folders:
            raise InputError(f"no incident name contains {', '.join(map(repr, only))}")
    if isinstance(thresholds, Thresholds):
        limits_src, limits = "(given)", thresholds
    elif thresholds is not None:
        limits_src, limits = str(thresholds), load_thresholds(thresholds)
    elif DEFAULT_FILE.is_file():
        limits_src, limits = str(DEFAULT_FILE), load_thresholds(DEFAULT_FILE)
    else:
        limits_src, limits = None, Thresholds()
    modes = load_knowledge(knowledge) if knowledge is not None else None

    started = time.perf_counter()
    cases: list[CaseScore] = []
    with tempfile.TemporaryDirectory(prefix="selfheal-eval-") as tmp:
        from agent.evals.sandbox import eval_config

        rules_cfg = eval_config(cfg, Path(tmp) / "home", Path(tmp) / "root")
        settings = replay.Settings(cfg=cfg, mode=mode, modes=modes, rules=TriageRules(rules_cfg),
                                   pass_interval_s=pass_interval_s, record=record, tmp=Path(tmp))
        for i, folder in enumerate(folders, start=1):
            case = _one(folder, settings, load_incident, replay.run_incident, score)
            cases.append(case)
            if progress is not None:
                progress(case, i, len(folders))
    summary = summarise(cases)
    applied = limits.for_mode(mode)
    missed = violations(applied, summary, cases)
    return EvalReport(path=str(path if path is not None else DEFAULT_INCIDENTS), mode=mode, cases=cases,
                      summary=summary, violations=missed, thresholds=limits_src, limits=applied.model_dump(),
                      knowledge=str(knowledge) if knowledge is not None else None,
                      elapsed_s=time.perf_counter() - started)


def _one(folder: Path, settings: Any, load: Any, run: Any, score: Any) -> CaseScore:
    started = time.perf_counter()
    try:
        incident = load(folder)
    except InputError as exc:
        return CaseScore(name=folder.name, kind="?", status="error", error=str(exc))
    if settings.mode == "replay" and incident.cassette is None:
        return CaseScore(name=incident.name, kind=incident.expected.kind, status="skipped",
                         reason="no cassette")
    try:
        case_run = run(incident, settings)
    except ModelRunError as exc:
        if settings.mode == "live":
            raise InputError(f"{incident.name}: the model cannot be used: {exc}") from None
        return CaseScore(name=incident.name, kind=incident.expected.kind, status="error", error=str(exc),
                         elapsed_ms=(time.perf_counter() - started) * 1000.0)
    except InputError:
        raise  # the run's own setup is wrong (no vcrpy, a broken knowledge base): one line for the whole run
    except Exception as exc:  # one case's failure is reported with its case; the others still run
        return CaseScore(name=incident.name, kind=incident.expected.kind, status="error",
                         error=f"{type(exc).__name__}: {exc}", elapsed_ms=(time.perf_counter() - started) * 1000.0)
    out = score(incident, case_run)
    out.elapsed_ms = (time.perf_counter() - started) * 1000.0
    return out
