"""A recorded incident folder (evals/incidents/README.md): what the sensors saw and what must be concluded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.errors import InputError
from agent.models import check_regex, CATEGORIES, VERDICTS, AnalysisCase, ArchiveEntry, CaseIssue, Signal, parse_model

KINDS = ("mode", "decoy", "missing-evidence", "recurrence")
CASSETTE_NAMES = ("analysis.yaml", "analysis.yml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TriageExpect(_Strict):
    counts: dict[str, int] = Field(default_factory=dict)
    verdicts: dict[str, str] = Field(default_factory=dict)

    @field_validator("counts", "verdicts")
    @classmethod
    def _verdicts(cls, v: dict[str, Any], info: Any) -> dict[str, Any]:
        names = v.keys() if info.field_name == "counts" else v.values()
        for name in names:
            if name not in VERDICTS:
                raise ValueError(f"unknown verdict {name!r} (expected one of {', '.join(VERDICTS)})")
        return v


class AnalysisExpect(_Strict):
    escalate: bool
    root_statement: str | None = None
    root_category: str | None = None
    fix_action: str | None = None
    gate: Literal["pass", "fail"]

    @field_validator("root_statement")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return check_regex(v)

    @field_validator("root_category")
    @classmethod
    def _category(cls, v: str | None) -> str | None:
        if v is not None and v not in CATEGORIES:
            raise ValueError(f"unknown category {v!r} (expected one of {', '.join(CATEGORIES)})")
        return v

    @model_validator(mode="after")
    def _root_unless_escalated(self) -> "AnalysisExpect":
        if not self.escalate and (self.root_statement is None or self.fix_action is None):
            raise ValueError("a case that is not escalated needs root_statement and fix_action")
        return self


class Expected(_Strict):
    description: str = ""
    kind: Literal["mode", "decoy", "missing-evidence", "recurrence"]
    mode: str | None = None
    symptom_signal: str
    triage: TriageExpect = Field(default_factory=TriageExpect)
    issues: int | None = None
    analysis: AnalysisExpect
    recorded_from: dict[str, Any] | None = None  # written by `selfheal export`: the issue and chain


@dataclass
class Incident:
    name: str
    path: Path
    expected: Expected
    signals: list[Signal]
    archive: list[ArchiveEntry] = field(default_factory=list)

    @property
    def fixtures(self) -> Path | None:
        p = self.path / "fixtures"
        return p if p.is_dir() else None

    @property
    def cassette(self) -> Path | None:
        """The model run to replay: cassettes/analysis.yaml, or the only cassette in cassettes/."""
        folder = self.path / "cassettes"
        if not folder.is_dir():
            return None
        for name in CASSETTE_NAMES:
            if (folder / name).is_file():
                return folder / name
        found = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        return found[0] if len(found) == 1 else None

    @property
    def symptom(self) -> Signal:
        return next(s for s in self.signals if s.id == self.expected.symptom_signal)

    def case(self) -> AnalysisCase:
        """The incident as an analysis case (contracts section 9), as tests/test_incidents.py builds it."""
        return AnalysisCase(issue=CaseIssue(id="ISS-0001", symptom_signal=self.expected.symptom_signal),
                            signals=list(self.signals), archive=list(self.archive))


def is_incident(path: Path) -> bool:
    return (path / "expected.yaml").is_file() and (path / "signals.jsonl").is_file()


def find_incidents(path: str | Path) -> list[Path]:
    """One incident folder, or every incident folder directly inside a folder, in name order."""
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: no such directory")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (give an incident folder or a folder of them)")
    if is_incident(root):
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and is_incident(p))
    if not found:
        raise InputError(f"{root}: no incident folders (a folder with expected.yaml and signals.jsonl)")
    return found


def load_incident(path: str | Path) -> Incident:
    """Read and check an incident folder; anything wrong is one InputError naming the file and the field."""
    from agent.models import load_json_file, load_signals_file

    folder = Path(path)
    exp_file = folder / "expected.yaml"
    try:
        data = yaml.safe_load(exp_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{exp_file}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{exp_file}:{mark.line + 1}" if mark else str(exp_file)
        raise InputError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise InputError(f"{exp_file}: expected a mapping")
    expected: Expected = parse_model(Expected, data, str(exp_file))
    signals = load_signals_file(folder / "signals.jsonl")
    ids = [s.id for s in signals]
    seen: set[str | None] = set()
    for sid in ids:
        if sid in seen:
            raise InputError(f"{folder / 'signals.jsonl'}: signal id {sid!r} appears twice")
        seen.add(sid)
    if expected.symptom_signal not in seen:
        raise InputError(f"{exp_file}: symptom_signal: no signal with id {expected.symptom_signal!r} in signals.jsonl")
    for sid in expected.triage.verdicts:
        if sid not in seen:
            raise InputError(f"{exp_file}: triage.verdicts: no signal with id {sid!r} in signals.jsonl")
    archive: list[ArchiveEntry] = []
    arch_file = folder / "archive.json"
    if arch_file.exists():
        raw = load_json_file(arch_file)
        if not isinstance(raw, list):
            raise InputError(f"{arch_file}: expected a JSON list of {{chain, resolved_at}}")
        archive = [parse_model(ArchiveEntry, e, f"{arch_file}[{i}]") for i, e in enumerate(raw)]
    return Incident(name=folder.name, path=folder, expected=expected, signals=signals, archive=archive)
