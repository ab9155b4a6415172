"""Who drafts the chain in an eval: the offline analyst, a configured model live, or a model run replayed from
the incident's cassette (vcrpy, replay only: a request the cassette does not hold fails instead of going out).

All three judge the incident as an analysis case (contracts section 9): no probe runs, the recorded probe
signals are the state facts, the gate decides.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence
from urllib.parse import urlsplit

import yaml

from agent.errors import InputError, SelfhealError
from agent.models import AnalysisCase, AnalysisResult

if TYPE_CHECKING:
    from agent.analysis.knowledge import Mode
    from agent.config import Config, ModelConfig

MODES = ("offline", "live", "replay")


class CassetteError(SelfhealError):
    """A cassette cannot be replayed (unreadable, or it holds no chat-completions request)."""


class ModelRunError(SelfhealError):
    """The model could not be used for this case (live: unreachable; replay: the cassette does not cover the run)."""


def analyse_offline(case: AnalysisCase, cfg: "Config", modes: "Sequence[Mode] | None") -> AnalysisResult:
    from agent.analysis import analyze_case

    return analyze_case(case, cfg, modes)


def analyse_with_model(case: AnalysisCase, cfg: "Config", model_cfg: "ModelConfig") -> AnalysisResult:
    """The LLM analyst on a case: drafts with the model, the gate judges every draft (re-drafts included)."""
    from agent.analysis import Gatekeeper, make_context
    from agent.analysis.llm import ModelUnavailable, draft_with_model
    from agent.clock import FakeClock

    symptom = next(s for s in case.signals if s.id == case.issue.symptom_signal)
    signals = list(case.signals)
    mcfg = cfg.model_copy(update={"analysis": cfg.analysis.model_copy(update={"model": model_cfg})})
    gate = Gatekeeper(signals, case.archive, mcfg)
    ctx = make_context(symptom, signals, case.archive, mcfg, gate.settings)
    try:
        result, _drafts = draft_with_model(None, mcfg, {"id": case.issue.id}, symptom, ctx, gate,
                                           FakeClock(symptom.ts))
    except ModelUnavailable as exc:
        raise ModelRunError(str(exc)) from None
    return result


# --------------------------------------------------------------------------- cassettes


def cassette_model(path: Path, base: "ModelConfig | None") -> "ModelConfig":
    """The model a cassette was recorded with: its first chat-completions request names the endpoint and model.

    No key is needed to replay (base_url is always set, so a missing key variable is not an error)."""
    from agent.config import ModelConfig

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CassetteError(f"{path}: unreadable cassette: {exc}") from None
    for item in data.get("interactions") or []:
        req = item.get("request") or {}
        uri = str(req.get("uri") or "")
        if not uri.endswith("/chat/completions"):
            continue
        body = req.get("body")
        if isinstance(body, dict):
            body = body.get("string")
        try:
            model = json.loads(body or "{}").get("model")
        except (TypeError, ValueError):
            model = None
        if not model:
            raise CassetteError(f"{path}: the first chat-completions request names no model")
        parts = urlsplit(uri)
        base_url = f"{parts.scheme}://{parts.netloc}{parts.path[: -len('/chat/completions')]}"
        keep = base.model_dump(exclude={"model", "base_url", "api_key_env"}) if base is not None else {}
        return ModelConfig(model=model, base_url=base_url, api_key_env=None, **keep)
    raise CassetteError(f"{path}: no chat-completions request in the cassette")


def _vcr(record: bool) -> Any:
    try:
        import vcr
    except ImportError:
        raise InputError("replaying or recording model cassettes needs vcrpy (pip install vcrpy)") from None
    return vcr.VCR(record_mode="all" if record else "none", filter_headers=["authorization", "api-key", "x-api-key"],
                   match_on=["method", "scheme", "host", "port", "path"], decode_compressed_response=True)


@contextmanager
def cassette(path: Path, *, record: bool = False) -> Iterator[Any]:
    """Replay (or, with `record`, write) the model's HTTP exchanges; replay never reaches the network."""
    from pydantic_ai import models

    with _vcr(record).use_cassette(str(path)) as tape, models.override_allow_model_requests(True):
        yield tape


def analyse_replayed(case: AnalysisCase, cfg: "Config", path: Path) -> tuple[AnalysisResult, dict[str, Any]]:
    """The model run of the cassette, replayed; also how much of the cassette was played."""
    model_cfg = cassette_model(path, cfg.analysis.model)
    with cassette(path) as tape:
        try:
            result = analyse_with_model(case, cfg, model_cfg)
        except ModelRunError as exc:
            raise ModelRunError(f"replaying {path.name}: {exc} (the cassette does not hold this run's requests)") \
                from None
        info = {"cassette": str(path), "model": model_cfg.model, "played": tape.play_count,
                "recorded": len(tape.data), "all_played": tape.all_played}
    return result, info


def analyse_live(case: AnalysisCase, cfg: "Config", record_to: Path | None = None) -> tuple[AnalysisResult, dict[str, Any]]:
    """The configured model, live; with `record_to`, its HTTP exchanges are written there as a cassette."""
    model_cfg = cfg.analysis.model
    if model_cfg is None:
        raise InputError("--mode live needs a model: set analysis.model (model, base_url, api_key_env) in the config")
    info: dict[str, Any] = {"model": model_cfg.model}
    if record_to is None:
        return analyse_with_model(case, cfg, model_cfg), info
    record_to.parent.mkdir(parents=True, exist_ok=True)
    if record_to.exists():
        record_to.unlink()  # a fresh recording, never new requests appended to an old run
    with cassette(record_to, record=True):
        result = analyse_with_model(case, cfg, model_cfg)
    info["cassette"] = str(record_to)
    return result, info
