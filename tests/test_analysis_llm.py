"""The LLM analyst without a model: FunctionModel for the agent logic, vcrpy cassettes for the OpenAI wire format.

No test here reaches a model: ALLOW_MODEL_REQUESTS is off for the module, and the cassette tests replay
hand-written chat-completions exchanges with record_mode "none" (an unmatched request fails instead of going out).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vcr
from pydantic_ai import models
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent.analysis import Gatekeeper, analyze_case, make_context
from agent.analysis.llm import ModelUnavailable, draft_with_model, render, system_prompt
from agent.analysis.redact import Redactor
from agent.clock import FakeClock
from agent.config import Config
from agent.models import AnalysisCase, Signal

DATA = Path(__file__).parent / "data" / "analysis"
CASSETTES = Path(__file__).parent / "cassettes"
SECRETS = ("hunter2-db-pass", "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2", "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
           "s3cr3t-t0ken-value", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC")


@pytest.fixture(autouse=True)
def no_model_requests(monkeypatch):
    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", False)


def contract_case(extra: list[dict] | None = None) -> AnalysisCase:
    data = json.loads((DATA / "contract-analysis-case.json").read_text())
    data["signals"] += extra or []
    return AnalysisCase.model_validate(data)


def setup(case: AnalysisCase, cfg: Config | None = None):
    cfg = cfg or Config()
    symptom = next(s for s in case.signals if s.id == case.issue.symptom_signal)
    signals = list(case.signals)
    gate = Gatekeeper(signals, case.archive, cfg)
    ctx = make_context(symptom, signals, case.archive, cfg, gate.settings)
    return cfg, symptom, ctx, gate


def good_chain() -> dict:
    return analyze_case(contract_case()).chain.to_json()


def shallow_chain() -> dict:
    good = good_chain()
    return {"schema": "selfheal.chain/v1", "id": "draft-1", "symptom": "n0", "root": "n1",
            "nodes": [good["nodes"][0], dict(good["nodes"][1], category="process")],
            "links": [good["links"][0]],
            "fix": {"action": "restart_service", "target": "n1", "effect": "mitigate", "params": {"service": "checkout-api"},
                    "postcondition": {"source": "health", "match": "-> 200"},
                    "description": "restart checkout-api so the workers come back"}}


def text_of(messages) -> str:
    """Everything the model was sent, as one string."""
    parts = []
    for m in messages:
        for p in getattr(m, "parts", []):
            for attr in ("content", "args", "instructions"):
                v = getattr(p, attr, None)
                if v is not None:
                    parts.append(v if isinstance(v, str) else json.dumps(v, default=str))
        if getattr(m, "instructions", None):
            parts.append(m.instructions)
    return "\n".join(parts)


# --------------------------------------------------------------------------- agent logic (FunctionModel)


def test_shallow_draft_rejected_then_deeper_draft_accepted():
    cfg, symptom, ctx, gate = setup(contract_case())
    seen: list[list] = []

    def model(messages, info: AgentInfo) -> ModelResponse:
        seen.append(list(messages))
        out = info.output_tools[0].name
        if len(seen) == 1:
            return ModelResponse(parts=[ToolCallPart("search_signals", {"minutes_before": 90, "service": "checkout-api"})])
        if len(seen) == 2:
            return ModelResponse(parts=[ToolCallPart(out, shallow_chain())])
        return ModelResponse(parts=[ToolCallPart(out, good_chain())])

    result, drafts = draft_with_model(None, cfg, {"id": "ISS-0001"}, symptom, ctx, gate, FakeClock(symptom.ts),
                                      model=FunctionModel(model))
    assert not result.escalated and result.gate.passed
    assert len(drafts) == 2 and drafts[0][1].passed is False and drafts[1][1].passed is True
    retry = text_of(seen[2][-1:])  # the request after the rejected draft
    assert "The gate rejected this chain (attempt 1 of 4)" in retry
    assert "completeness: chain has 1 link, needs 3 to 7" in retry
    assert "counterfactual:" in retry and "eliminate" in retry
    # the search tool's answer reached the model, and it is the stored evidence
    assert "Out of memory: Killed process 4121 (gunicorn)" in text_of(seen[1])


def test_redrafts_are_bounded_then_escalated():
    cfg = Config(analysis={"max_redrafts": 1})
    cfg, symptom, ctx, gate = setup(contract_case(), cfg)
    calls = []

    def stubborn(messages, info: AgentInfo) -> ModelResponse:
        calls.append(1)
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, shallow_chain())])

    result, drafts = draft_with_model(None, cfg, {"id": "ISS-0001"}, symptom, ctx, gate, FakeClock(symptom.ts),
                                      model=FunctionModel(stubborn))
    assert len(calls) == 2 and len(drafts) == 2
    assert result.escalated and result.chain is not None and not result.gate.passed
    assert "no chain passed the gate in 2 draft(s)" in result.reason and "completeness" in result.reason


def test_system_prompt_is_rendered_from_templates_with_the_gate_word_lists():
    _, _, _, gate = setup(contract_case())
    text = system_prompt(gate.settings)
    for word in ("selfheal.chain/v1", "reproduce", "archive", "completeness", "counterfactual", "somehow",
                 "memory pressure", "mitigate", "set_config", "run_probe"):
        assert word in text
    retry = render("analysis_retry.j2", attempt=1, max_attempts=3, reasons=["reproduce: n2 matches nothing"])
    assert "- reproduce: n2 matches nothing" in retry


def planted_signals() -> list[dict]:
    return [
        {"id": "x1", "ts": "2026-11-30T03:10:00Z", "source": "log", "service": "checkout-api", "level": "WARNING",
         "message": "db pool: reconnecting to postgres://checkout:hunter2-db-pass@db.internal:5432/shop"},
        {"id": "x2", "ts": "2026-11-30T03:11:00Z", "source": "log", "service": "checkout-api", "level": "INFO",
         "message": "calling payments with Authorization: Bearer sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2"},
        {"id": "x3", "ts": "2026-11-30T03:11:30Z", "source": "log", "service": "checkout-api", "level": "ERROR",
         "message": "git fetch failed: token ghp_16C7e42F292c6912E7710c838347Ae178B4a api_token=s3cr3t-t0ken-value"},
        {"id": "x4", "ts": "2026-11-30T03:12:00Z", "source": "probe", "service": "checkout-api",
         "message": "tls.key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"},
    ]


def test_no_secret_reaches_the_model():
    cfg, symptom, ctx, gate = setup(contract_case(planted_signals()))
    sent: list = []

    def model(messages, info: AgentInfo) -> ModelResponse:
        sent[:] = list(messages)
        n = sum(1 for m in messages if getattr(m, "kind", "") == "request")
        if n == 1:
            return ModelResponse(parts=[ToolCallPart("search_signals", {"minutes_before": 600, "minutes_after": 600}),
                                        ToolCallPart("issue_timeline", {}), ToolCallPart("offline_draft", {})])
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, good_chain())])

    result, _ = draft_with_model(None, cfg, {"id": "ISS-0001"}, symptom, ctx, gate, FakeClock(symptom.ts),
                                 model=FunctionModel(model))
    assert not result.escalated
    everything = text_of(sent)
    assert "db.internal:5432" in everything and "[REDACTED]" in everything  # the signals went, masked
    for secret in SECRETS:
        assert secret not in everything


def test_redactor_extra_patterns_from_config():
    r = Redactor([r"ACME-\d{6}"])
    assert r.redact("customer ACME-123456 card") == "customer [REDACTED] card"
    assert r.redact_obj({"a": ["password=x1y2"]}) == {"a": ["password=[REDACTED]"]}


# --------------------------------------------------------------------------- wire format (vcrpy cassettes)


def _vcr(captured: list) -> vcr.VCR:
    """record_mode none: replay only. vcrpy hands the hook the cassette's own requests as it loads them and each
    outgoing request (already filtered) once per comparison; only distinct outgoing ones (ours carry `tools`) are kept."""
    seen: set = set()

    def keep(request):
        key = (request.uri, request.body)
        if key not in seen and b'"tools"' in (request.body or b""):
            seen.add(key)
            captured.append(request)
        return request

    return vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none", filter_headers=["authorization"],
                   match_on=["method", "scheme", "host", "port", "path"], before_record_request=keep)


def _model_cfg(monkeypatch, **extra) -> Config:
    monkeypatch.setenv("SELFHEAL_TEST_OPENAI_KEY", "sk-test-not-a-real-key-0000")
    return Config(analysis={"model": {"model": "gpt-4o-mini", "api_key_env": "SELFHEAL_TEST_OPENAI_KEY",
                                      "max_retries": 2, "timeout_s": 5, **extra}})


def test_cassette_openai_chat_completions(monkeypatch):
    cfg = _model_cfg(monkeypatch)
    cfg, symptom, ctx, gate = setup(contract_case(planted_signals()), cfg)
    captured: list = []
    with models.override_allow_model_requests(True), \
            _vcr(captured).use_cassette("analysis_openai_chat.yaml") as cassette:
        result, drafts = draft_with_model(None, cfg, {"id": "ISS-0001"}, symptom, ctx, gate, FakeClock(symptom.ts))
    assert cassette.all_played and cassette.play_count == 2
    assert not result.escalated, result.reason
    assert result.analyst == "model:gpt-4o-mini" and result.chain.id == "c-7"
    assert "image_cache_max_items" in result.chain.root_node.statement
    # what went over the wire: OpenAI chat-completions requests with our tools, without the key or any secret
    assert len(captured) == 2
    for req in captured:
        assert req.uri == "https://api.openai.com/v1/chat/completions" and req.method == "POST"
        assert "authorization" not in {k.lower() for k in req.headers}
        body = json.loads(req.body)
        assert body["model"] == "gpt-4o-mini"
        assert {t["function"]["name"] for t in body["tools"]} >= {"search_signals", "run_probe", "final_result"}
        text = req.body.decode() if isinstance(req.body, bytes) else req.body
        for secret in SECRETS + ("sk-test-not-a-real-key-0000",):
            assert secret not in text
    second = json.loads(captured[1].body)
    tool_msgs = [m for m in second["messages"] if m["role"] == "tool"]
    assert tool_msgs and "[REDACTED]" in tool_msgs[0]["content"]
    # the stored cassette itself holds no credentials
    raw = (CASSETTES / "analysis_openai_chat.yaml").read_text().lower()
    assert "authorization" not in raw.replace("no authorization header", "")


def test_cassette_rate_limit_is_retried_with_backoff(monkeypatch):
    cfg = _model_cfg(monkeypatch)
    cfg, symptom, ctx, gate = setup(contract_case(), cfg)
    captured: list = []
    with models.override_allow_model_requests(True), \
            _vcr(captured).use_cassette("analysis_openai_rate_limited.yaml") as cassette:
        result, _ = draft_with_model(None, cfg, {"id": "ISS-0001"}, symptom, ctx, gate, FakeClock(symptom.ts))
    assert cassette.all_played and cassette.play_count == 3  # the 429, its retry, then the final answer
    assert len(captured) == 2  # the retry re-sent the very request that got the 429
    assert not result.escalated


def test_cassette_bad_key_is_one_clear_error(monkeypatch):
    cfg = _model_cfg(monkeypatch)
    cfg, symptom, ctx, gate = setup(contract_case(), cfg)
    captured: list = []
    with models.override_allow_model_requests(True), \
            _vcr(captured).use_cassette("analysis_openai_bad_key.yaml", allow_playback_repeats=True) as cassette:
        with pytest.raises(ModelUnavailable) as err:
            draft_with_model(None, cfg, {"id": "ISS-0001"}, symptom, ctx, gate, FakeClock(symptom.ts))
    assert cassette.play_count == 1 and len(captured) == 1  # a 401 is not retried
    assert str(err.value) == "model endpoint api.openai.com: the API key was rejected (HTTP 401)"


def test_missing_api_key_env_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("SELFHEAL_NO_SUCH_KEY", raising=False)
    cfg = Config(analysis={"model": {"model": "gpt-4o-mini", "api_key_env": "SELFHEAL_NO_SUCH_KEY"}})
    cfg, symptom, ctx, gate = setup(contract_case(), cfg)
    with pytest.raises(ModelUnavailable, match="environment variable SELFHEAL_NO_SUCH_KEY is not set"):
        draft_with_model(None, cfg, {"id": "ISS-0001"}, symptom, ctx, gate, FakeClock(symptom.ts))


def test_model_requests_stay_blocked_outside_cassettes(monkeypatch):
    """With ALLOW_MODEL_REQUESTS off, a configured real model is refused before any request: offline takes over."""
    cfg = _model_cfg(monkeypatch)
    cfg, symptom, ctx, gate = setup(contract_case(), cfg)
    with pytest.raises(ModelUnavailable, match="unreachable"):
        draft_with_model(None, cfg, {"id": "ISS-0001"}, symptom, ctx, gate, FakeClock(symptom.ts))


def test_signal_search_tool_filters(monkeypatch):
    cfg, symptom, ctx, gate = setup(contract_case())
    got: dict = {}

    def model(messages, info: AgentInfo) -> ModelResponse:
        n = sum(1 for m in messages if getattr(m, "kind", "") == "request")
        if n == 1:
            return ModelResponse(parts=[ToolCallPart("search_signals", {"source": "probe", "text": "IMAGE_CACHE"})])
        for m in messages:
            for p in getattr(m, "parts", []):
                if getattr(p, "tool_name", "") == "search_signals" and hasattr(p, "content") \
                        and not isinstance(p.content, str):
                    got["rows"] = p.content
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, good_chain())])

    draft_with_model(None, cfg, {"id": "ISS-0001"}, symptom, ctx, gate, FakeClock(symptom.ts), model=FunctionModel(model))
    assert [r["id"] for r in got["rows"]] == ["s1"]
    assert Signal.model_validate(got["rows"][0]).message == "checkout.ini: image_cache_max_items = 0"
