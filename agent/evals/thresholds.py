"""Thresholds (evals/thresholds.yaml): the figures an eval run must reach, or it exits 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.errors import InputError
from agent.evals.scoring import CHECKS, CaseScore

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "evals" / "thresholds.yaml"


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_scores: dict[str, float] = Field(default_factory=dict)
    max_failed_cases: int | None = None
    max_errors: int | None = None
    max_repeat_issues: int | None = None
    max_mttr_minutes: float | None = None

    @field_validator("min_scores")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        for name, value in v.items():
            if name not in CHECKS:
                raise ValueError(f"unknown score {name!r} (expected one of {', '.join(CHECKS)})")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: a score is a fraction between 0 and 1, got {value}")
        return v


class Thresholds(Limits):
    modes: dict[str, Limits] = Field(default_factory=dict)

    def for_mode(self, mode: str) -> Limits:
        """The top-level limits, with the mode's own section overriding what it names."""
        base = self.model_dump(exclude={"modes"})
        over = self.modes.get(mode)
        if over is not None:
            for key, value in over.model_dump(exclude_unset=True).items():
                if key == "min_scores":
                    base["min_scores"] = {**base["min_scores"], **value}
                else:
                    base[key] = value
        return Limits.model_validate(base)


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    p = Path(path) if path is not None else DEFAULT_FILE
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise InputError(f"{p}: thresholds file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"{p}{f':{mark.line + 1}' if mark else ''}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a mapping")
    from agent.models import parse_model

    return parse_model(Thresholds, data, str(p))


def violations(limits: Limits, summary: dict[str, Any], cases: list[CaseScore]) -> list[str]:
    """One line per missed threshold, naming the cases behind it."""
    out = []
    for name, minimum in limits.min_scores.items():
        value = summary["scores"].get(name)
        if value is None or value >= minimum:
            continue
        bad = [c.name for c in cases if name in c.checks and c.checks[name].passed is False]
        n = summary["counts"][name]
        out.append(f"{name} {value:.3f} < {minimum} ({n['applicable'] - n['passed']} of {n['applicable']} failed: "
                   f"{', '.join(bad)})")
    failed = [c.name for c in cases if c.status == "failed"]
    if limits.max_failed_cases is not None and len(failed) > limits.max_failed_cases:
        out.append(f"{len(failed)} failed cases > {limits.max_failed_cases}: {', '.join(failed)}")
    errors = [c.name for c in cases if c.status == "error"]
    if limits.max_errors is not None and len(errors) > limits.max_errors:
        out.append(f"{len(errors)} cases could not run > {limits.max_errors}: {', '.join(errors)}")
    if limits.max_repeat_issues is not None and summary["repeat_issues"] > limits.max_repeat_issues:
        names = [c.name for c in cases if c.repeats_archive]
        out.append(f"{summary['repeat_issues']} repeat issues > {limits.max_repeat_issues}: {', '.join(names)}")
    mttr = summary.get("mttr_minutes")
    if limits.max_mttr_minutes is not None and mttr is not None and mttr > limits.max_mttr_minutes:
        out.append(f"mean simulated MTTR {mttr} min > {limits.max_mttr_minutes} min")
    return out
