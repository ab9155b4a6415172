"""The LLM analyst: a pydantic-ai Agent that drafts the chain with tools, re-drafting until the gate passes.

- deps (`Deps`): store, config, clock, the analysis Context (evidence and probe runner), the gate, the redactor;
- tools: the evidence tools (issue timeline, signal search, archived chains, earlier rejections), run_probe and
  the offline analyst's draft;
- output type: the Chain model; an output validator runs the gate and raises ModelRetry with the failed checks'
  reasons, at most `analysis.max_redrafts` times, then the last draft is returned and the issue escalated;
- the model: any OpenAI-compatible chat-completions endpoint (`analysis.model`: base_url, model, api_key_env);
  transient transport errors (429, 5xx, timeouts, dropped connections) are retried by tenacity with backoff;
  a bad key, unknown model or dead endpoint raises ModelUnavailable (one line) and the caller falls back to the
  offline analyst.

Everything sent to a model passes through the redactor first (tool results and the prompt).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_ai import Agent, ModelRetry, RunContext

from agent.errors import SelfhealError
from agent.models import CATEGORIES, OPS, SOURCES, AnalysisResult, Chain, GateResult, Signal

if TYPE_CHECKING:
    from agent.analysis import Gatekeeper
    from agent.analysis.offline import Context
    from agent.analysis.redact import Redactor
    from agent.clock import Clock
    from agent.config import Config, ModelConfig
    from agent.store import Store

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


class ModelUnavailable(SelfhealError):
    """The configured model cannot be used (bad key, unknown model, dead endpoint); the offline analyst takes over."""


# --------------------------------------------------------------------------- prompts


def render(name: str, **values: Any) -> str:
    """A prompt template from prompts/ (Jinja2, shared partials, undefined variables are errors)."""
    import jinja2

    env = _env()
    try:
        return env.get_template(name).render(**values)
    except jinja2.TemplateNotFound:
        raise SelfhealError(f"prompt template {PROMPTS_DIR / name} not found") from None


_ENV: Any = None


def _env() -> Any:
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PROMPTS_DIR)), undefined=jinja2.StrictUndefined,
                                  autoescape=False, keep_trailing_newline=True)
    return _ENV


def system_prompt(settings: Any) -> str:
    from agent.analysis.knowledge import ACTIONS

    return render(
        "analysis_system.j2",
        sources=SOURCES, ops=OPS, categories=CATEGORIES, actions=ACTIONS,
        skew_s=settings.clock_skew_s, min_links=settings.min_links, max_links=settings.max_links,
        min_words=settings.min_mechanism_words, vague=settings.vague.phrases, proximate=settings.proximate.phrases,
        hedging=settings.hedging.phrases, gap_min=settings.episode_gap_s / 60.0,
        window_h=settings.necessity_window_s / 3600.0,
    )


# --------------------------------------------------------------------------- deps and tools


@dataclass
class Deps:
    cfg: "Config"
    clock: "Clock"
    ctx: "Context"
    gate: "Gatekeeper"
    redactor: "Redactor"
    issue_id: str
    store: "Store | None" = None
    max_attempts: int = 4
    attempts: list[tuple[Chain, GateResult]] = field(default_factory=list)
    offline: Any = None  # the offline Outcome, computed on first request


def _clean(deps: Deps, obj: Any) -> Any:
    return deps.redactor.redact_obj(obj)


def _signal_row(s: Signal) -> dict[str, Any]:
    return s.model_dump(mode="json", exclude_none=True)


def build_agent(model: Any, settings: Any, output_retries: int) -> Any:
    agent: Any = Agent(model, output_type=Chain, deps_type=Deps, instructions=system_prompt(settings),
                       retries={"tools": 2, "output": output_retries}, name="selfheal-analyst")

    @agent.tool
    def issue_timeline(ctx: RunContext[Deps]) -> list[dict[str, Any]]:
        """The issue's occurrences and state changes, in time order."""
        deps = ctx.deps
        if deps.store is None:
            s = deps.ctx.symptom
            return _clean(deps, [{"kind": "occurrence", "ts": _signal_row(s)["ts"], "signal_id": s.id,
                                  "message": s.message}])
        from agent.analysis.evidence import issue_timeline as timeline

        return _clean(deps, timeline(deps.store, deps.issue_id))

    @agent.tool
    def search_signals(ctx: RunContext[Deps], minutes_before: float = 360.0, minutes_after: float = 60.0,
                       service: str | None = None, source: str | None = None, text: str | None = None,
                       failures_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        """Stored signals around the symptom: a time window (minutes before/after the symptom), optionally one
        service, one source (log cron health heartbeat metric probe alert) and a case-insensitive message substring."""
        deps = ctx.deps
        center = deps.ctx.symptom.ts
        lo, hi = center - timedelta(minutes=minutes_before), center + timedelta(minutes=minutes_after)
        if deps.store is not None:
            from agent.store.signals import query_signals

            found = query_signals(deps.store, since=lo, until=hi, service=service, source=source, text=text,
                                  min_level="ERROR" if failures_only else None, limit=max(1, min(limit, 500)))
            deps.ctx.add(found)  # what the model may cite, the gate must see
        pool = [s for s in deps.ctx.signals if lo <= s.ts <= hi]
        needle = text.lower() if text else None
        rows = [s for s in pool
                if (service is None or s.service == service) and (source is None or s.source == source)
                and (needle is None or needle in s.message.lower())
                and (not failures_only or s.level in ("ERROR", "CRITICAL"))]
        rows.sort(key=lambda s: (s.ts, s.id or ""))
        return _clean(deps, [_signal_row(s) for s in rows[: max(1, min(limit, 500))]])

    @agent.tool
    def run_probe(ctx: RunContext[Deps], spec: dict[str, Any]) -> list[dict[str, Any]] | str:
        """Read a state fact. spec: {"kind": config_key|stat|cert_expiry|crontab|package_version|http_get|command,
        ...parameters (config_key: file + key or key_match; stat: path; cert_expiry: path or host+port; crontab:
        user or file; package_version: name; http_get: url; command: name)}. Returns the probe signals."""
        deps = ctx.deps
        if deps.ctx.probe is None:
            return "no probes run in --case mode: the case's probe signals are the state facts (search source=probe)"
        from agent.analysis.probes import ProbeError

        try:
            found = deps.ctx.probe(dict(spec, service=spec.get("service") or deps.ctx.symptom.service))
        except (ProbeError, KeyError, TypeError, ValueError) as exc:
            raise ModelRetry(f"probe refused: {exc}") from None
        deps.ctx.add(found)
        return _clean(deps, [_signal_row(s) for s in found])

    @agent.tool
    def archived_chains(ctx: RunContext[Deps]) -> list[dict[str, Any]]:
        """Archived chains (earlier failures whose fixes were verified or did not hold)."""
        deps = ctx.deps
        return _clean(deps, [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in deps.ctx.archive])

    @agent.tool
    def earlier_rejections(ctx: RunContext[Deps]) -> list[dict[str, Any]]:
        """Chains already rejected by the gate for this issue, with the failed checks' reasons."""
        deps = ctx.deps
        rows: list[dict[str, Any]] = []
        if deps.store is not None:
            from agent.analysis.evidence import earlier_rejections as stored

            rows += stored(deps.store, deps.issue_id)
        for chain, gate in deps.attempts:
            if not gate.passed:
                rows.append({"chain_id": chain.id, "root": chain.root_node.statement,
                             "failed": {n: c.reason for n, c in gate.checks if not c.passed}})
        return _clean(deps, rows)

    @agent.tool
    def offline_draft(ctx: RunContext[Deps]) -> dict[str, Any]:
        """The knowledge-base analyst's draft from the same evidence and its gate verdict (a starting point)."""
        deps = ctx.deps
        outcome = _offline(deps)
        chosen = outcome.chosen
        out: dict[str, Any] = {"mode": chosen.mode.id if chosen else None, "reason": outcome.reason}
        if chosen is not None:
            out["chain"] = chosen.chain.to_json()
            out["gate_passed"] = bool(chosen.gate and chosen.gate.passed)
        return _clean(deps, out)

    @agent.output_validator
    def gate_check(ctx: RunContext[Deps], chain: Chain) -> Chain:
        deps = ctx.deps
        result = deps.gate(chain)
        deps.attempts.append((chain, result))
        if result.passed or len(deps.attempts) >= deps.max_attempts:
            return chain
        raise ModelRetry(render("analysis_retry.j2", attempt=len(deps.attempts), max_attempts=deps.max_attempts,
                                reasons=result.failed_reasons()))

    return agent


def _offline(deps: Deps) -> Any:
    if deps.offline is None:
        from agent.analysis.knowledge import load_modes
        from agent.analysis.offline import analyse

        deps.offline = analyse(deps.ctx, load_modes(deps.cfg), deps.gate)
    return deps.offline


# --------------------------------------------------------------------------- the model


def make_model(mc: "ModelConfig") -> Any:
    """An OpenAI-compatible chat model whose HTTP transport retries 429/5xx/timeouts with backoff (tenacity)."""
    import httpx2
    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.retries import AsyncHTTPX2TenacityTransport, RetryConfig, wait_retry_after
    from tenacity import retry_if_exception, stop_after_attempt, wait_exponential

    key = os.environ.get(mc.api_key_env) if mc.api_key_env else None
    if not key:
        if mc.base_url is None:
            raise ModelUnavailable(f"environment variable {mc.api_key_env or 'OPENAI_API_KEY'} is not set "
                                   f"(analysis.model.api_key_env)")
        key = "unused"  # local servers (Ollama, llama.cpp, vLLM) accept any key

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, httpx2.HTTPStatusError):
            code = exc.response.status_code
            return code == 429 or code >= 500
        return isinstance(exc, (httpx2.TimeoutException, httpx2.ConnectError, httpx2.RemoteProtocolError,
                                httpx2.ReadError))

    def validate(resp: Any) -> None:
        if resp.status_code == 429 or resp.status_code >= 500:
            resp.raise_for_status()

    transport = AsyncHTTPX2TenacityTransport(
        config=RetryConfig(
            retry=retry_if_exception(retryable),
            wait=wait_retry_after(fallback_strategy=wait_exponential(multiplier=0.5, max=20), max_wait=60),
            stop=stop_after_attempt(max(1, mc.max_retries + 1)),
            reraise=True,
        ),
        validate_response=validate,
    )
    http = httpx2.AsyncClient(transport=transport, timeout=mc.timeout_s)
    client = AsyncOpenAI(api_key=key, base_url=mc.base_url, max_retries=0, http_client=http, timeout=mc.timeout_s)
    return OpenAIChatModel(mc.model, provider=OpenAIProvider(openai_client=client))


def _unavailable(exc: BaseException, mc: "ModelConfig | None") -> ModelUnavailable:
    """One line saying why the model cannot be used."""
    where = (mc.base_url if mc is not None else None) or "api.openai.com"
    name = mc.model if mc is not None else "the model"
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        what = {401: "the API key was rejected (HTTP 401)", 403: f"the API key may not use {name} (HTTP 403)",
                404: f"model {name!r} or the endpoint path was not found (HTTP 404)"}.get(code, f"HTTP {code}")
        return ModelUnavailable(f"model endpoint {where}: {what}")
    text = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return ModelUnavailable(f"model endpoint {where} unreachable: {text[:300]}")


# --------------------------------------------------------------------------- one analysis


def run_agent(deps: Deps, model: Any, prompt: str) -> Chain:
    """Run the agent; transport problems that outlast the retries become ModelUnavailable."""
    import httpx2
    from pydantic_ai.exceptions import ModelAPIError, UnexpectedModelBehavior

    agent = build_agent(model, deps.gate.settings, output_retries=deps.max_attempts)
    try:
        result = agent.run_sync(prompt, deps=deps)
    except UnexpectedModelBehavior as exc:
        if deps.attempts:  # the model stopped answering in shape after some drafts: judge the last one
            return deps.attempts[-1][0]
        raise _unavailable(exc, deps.cfg.analysis.model) from None
    except (ModelAPIError, httpx2.HTTPError, OSError) as exc:
        raise _unavailable(exc, deps.cfg.analysis.model) from None
    except SelfhealError:
        raise
    except Exception as exc:  # anything else from the model side: the offline analyst still gets the issue analysed
        raise _unavailable(exc, deps.cfg.analysis.model) from None
    return result.output


def user_prompt(deps: Deps, notes: list[str]) -> str:
    from agent.analysis.offline import similar_archive

    ctx = deps.ctx
    failures = [_signal_row(s) for s in ctx.signals
                if s.level in ("ERROR", "CRITICAL") and (ctx.service is None or s.service == ctx.service)]
    text = render("analysis_issue.j2", issue_id=deps.issue_id, recurrence=ctx.recurrence,
                  symptom=_signal_row(ctx.symptom), failures=failures, archived=similar_archive(ctx), notes=notes)
    return deps.redactor.redact(text)


def result_from(deps: Deps, chain: Chain | None, model_name: str) -> AnalysisResult:
    gate = None
    for c, g in reversed(deps.attempts):
        if c is chain:
            gate = g
            break
    if chain is not None and gate is None:
        gate = deps.gate(chain)
        deps.attempts.append((chain, gate))
    passed = bool(gate and gate.passed)
    n = len(deps.attempts)
    if passed:
        reason = f"model {model_name}: chain to root '{chain.root_node.statement}' passed the gate after {n} draft(s)"  # type: ignore[union-attr]
    elif chain is None:
        reason = f"model {model_name} returned no chain"
    else:
        reason = (f"model {model_name}: no chain passed the gate in {n} draft(s); last rejected: "
                  + " | ".join(gate.failed_reasons() if gate else []))
    return AnalysisResult(escalated=not passed, chain=chain, gate=gate, reason=reason, analyst=f"model:{model_name}",
                          mode=None)


def draft_with_model(store: "Store | None", cfg: "Config", issue: dict[str, Any], symptom: Signal, ctx: "Context",
                     gate: "Gatekeeper", clock: "Clock", model: Any = None
                     ) -> tuple[AnalysisResult, list[tuple[Chain, GateResult | None, str | None]]]:
    """Draft with the configured model (or `model`, e.g. a FunctionModel in tests). Raises ModelUnavailable."""
    from agent.analysis.redact import Redactor

    mc = cfg.analysis.model
    if model is None:
        if mc is None:
            raise ModelUnavailable("no analysis.model configured")
        model = make_model(mc)
    name = mc.model if mc is not None else getattr(model, "model_name", "model")
    deps = Deps(cfg=cfg, clock=clock, ctx=ctx, gate=gate, redactor=Redactor(cfg.redact), issue_id=issue["id"],
                store=store, max_attempts=max(1, cfg.analysis.max_redrafts + 1))
    chain = run_agent(deps, model, user_prompt(deps, []))
    result = result_from(deps, chain, name)
    drafts: list[tuple[Chain, GateResult | None, str | None]] = [(c, g, None) for c, g in deps.attempts]
    if result.chain is not None and not any(c is result.chain for c, _, _ in drafts):
        drafts.append((result.chain, result.gate, None))
    return result, drafts
