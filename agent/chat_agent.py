"""The model-backed chat answerer: a pydantic-ai agent with read-only tools over the store.

Tools: list and filter issues, an issue's timeline, its chains with gate
results, its fixes with verifications, signals around a time, the report
figures, and one SELECT over the v_* views. An output validator refuses answers
that name ids the store does not hold, so the model goes back to the tools
instead of inventing facts. Tests drive it with FunctionModel/TestModel; the
wire format is exercised against a local OpenAI-compatible server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_ai import Agent, ModelRetry, RunContext

from agent.chat import ACTIVE, Answer, ChatSettings, _t, chain_in_words
from agent.errors import InputError, SelfhealError
from agent.models import rfc3339
from agent.report import compute_report, gate_all_passed
from agent.store import Store
from agent.store import report as q

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"


class ChatReply(BaseModel):
    """What the agent answers: text, and the ids of the issues and signals it relies on."""

    answer: str = Field(description="the answer in plain text, naming issues (ISS-0001), chains, fixes and signals by id")
    issues: list[str] = Field(default_factory=list, description="ids of the issues the answer relies on")
    signals: list[str] = Field(default_factory=list, description="ids of the signals the answer relies on")


@dataclass
class ChatDeps:
    store: Store
    now: datetime | None
    settings: ChatSettings


_ID_TOKENS = {"issue": re.compile(r"\bISS-\d+\b"), "chain": re.compile(r"\bC-\d+\b"), "fix": re.compile(r"\bFIX-\d+\b")}


def unknown_references(store: Store, reply: ChatReply) -> list[str]:
    """Ids an answer mentions or lists that the store does not hold."""
    missing = []
    for kind, rx in _ID_TOKENS.items():
        ids = set(rx.findall(reply.answer))
        if kind == "issue":
            ids |= set(reply.issues)
        missing += sorted(ids - q.existing(store, kind, sorted(ids)))
    missing += sorted(set(reply.signals) - q.existing(store, "signal", sorted(set(reply.signals))))
    return missing


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def system_prompt(store: Store, now: datetime | None) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    if not (PROMPTS_DIR / "chat_system.j2").is_file():
        raise SelfhealError(f"prompt template missing: {PROMPTS_DIR / 'chat_system.j2'}")
    env = Environment(loader=FileSystemLoader(str(PROMPTS_DIR)), undefined=StrictUndefined, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True)
    issues = q.issue_rows(store)
    counts = {"issues": len(issues), "active": sum(1 for i in issues if i["status"] in ACTIVE),
              "signals": sum(q.signal_counts(store).values())}
    return env.get_template("chat_system.j2").render(now=_t(now), counts=counts, views=q.view_columns(store))


def build_agent(model: Any, instructions: str):
    """A pydantic-ai Agent over ChatDeps with read-only tools; `model` is a pydantic-ai model (FunctionModel in tests)."""
    # The tools are coroutines that never await: pydantic-ai runs a model's parallel tool calls as tasks on
    # one event loop, so they take turns on the store's single DuckDB connection instead of racing in threads.
    agent = Agent(model, output_type=ChatReply, deps_type=ChatDeps, instructions=instructions, retries=3,
                  name="selfheal-chat")

    def _issue_or_retry(ctx: RunContext[ChatDeps], issue_id: str) -> dict[str, Any]:
        row = next((i for i in q.issue_rows(ctx.deps.store) if i["id"] == issue_id.strip().upper()), None)
        if row is None:
            raise ModelRetry(f"no issue {issue_id!r}; list_issues shows the ids that exist")
        return row

    @agent.tool
    async def list_issues(ctx: RunContext[ChatDeps], status: str | None = None, kind: str | None = None,
                    service: str | None = None, opened_within_hours: float | None = None) -> list[dict[str, Any]]:
        """Issues with their current status. status: open, analysing, fixing, verifying, needs-human, resolved, or
        'active' for any unresolved; kind: failure or warning; opened_within_hours: opened in the last N hours."""
        rows = q.issue_rows(ctx.deps.store)
        if status:
            rows = [r for r in rows if (r["status"] in ACTIVE if status == "active" else r["status"] == status)]
        if kind:
            rows = [r for r in rows if r["kind"] == kind]
        if service:
            rows = [r for r in rows if r["service"] == service]
        if opened_within_hours and ctx.deps.now:
            since = ctx.deps.now - timedelta(hours=opened_within_hours)
            rows = [r for r in rows if r["opened_at"] >= since]
        keep = ("id", "title", "kind", "status", "source", "service", "opened_at", "last_change", "resolved_at",
                "reopened", "occurrences", "first_signal")
        return _plain([{k: r[k] for k in keep} for r in rows[-ctx.deps.settings.sql_max_rows:]])

    @agent.tool
    async def issue_timeline(ctx: RunContext[ChatDeps], issue_id: str) -> dict[str, Any]:
        """One issue's state changes (with reasons, chains, fixes) and occurrences (signals), in time order."""
        issue = _issue_or_retry(ctx, issue_id)
        events = q.issue_event_rows(ctx.deps.store, issue["id"])
        occ = q.occurrence_rows(ctx.deps.store, issue["id"])
        return _plain({"issue": issue, "events": events, "occurrences": occ[: ctx.deps.settings.sql_max_rows]})

    @agent.tool
    async def issue_chains(ctx: RunContext[ChatDeps], issue_id: str) -> list[dict[str, Any]]:
        """The why-chains drafted for an issue, each with its gate result (four checks, reasons) and archive outcome."""
        issue = _issue_or_retry(ctx, issue_id)
        gates = {g["chain_id"]: g for g in q.gate_rows(ctx.deps.store, issue["id"])}
        archive = q.archive_rows(ctx.deps.store)
        out = []
        for c in q.chain_rows(ctx.deps.store, issue["id"]):
            g = gates.get(c["id"])
            out.append({"id": c["id"], "analyst": c["analyst"], "mode": c["mode"], "created_at": c["created_at"],
                        "in_words": chain_in_words(c["chain"], indent=""), "chain": c["chain"],
                        "gate": None if g is None else {"passed": gate_all_passed(g), "checks": g["checks"], "ts": g["ts"]},
                        "archived": [a["outcome"] for a in archive if a["chain_id"] == c["id"]]})
        return _plain(out)

    @agent.tool
    async def issue_fixes(ctx: RunContext[ChatDeps], issue_id: str) -> list[dict[str, Any]]:
        """The fixes planned or applied for an issue, their life (applied, verified, rolled back) and verification steps."""
        issue = _issue_or_retry(ctx, issue_id)
        events = q.fix_event_rows(ctx.deps.store, issue["id"])
        verifs = q.verification_rows(ctx.deps.store, issue["id"])
        return _plain([{**f, "events": [e for e in events if e["fix_id"] == f["id"]],
                        "verifications": [v for v in verifs if v["fix_id"] == f["id"]]}
                       for f in q.fix_rows(ctx.deps.store, issue["id"])])

    @agent.tool
    async def signals_around(ctx: RunContext[ChatDeps], time: str, before_minutes: float = 60, after_minutes: float = 15,
                       service: str | None = None, min_level: str | None = None) -> list[dict[str, Any]]:
        """Signals (with triage verdicts) from before_minutes before to after_minutes after an RFC 3339 time."""
        from agent.models import LEVELS, parse_ts

        try:
            at = parse_ts(time)
        except ValueError as exc:
            raise ModelRetry(str(exc)) from None
        level = min_level.upper() if min_level else None
        if level and level not in LEVELS:
            raise ModelRetry(f"min_level must be one of {', '.join(LEVELS)}")
        rows = q.signals_between(ctx.deps.store, at - timedelta(minutes=before_minutes), at + timedelta(minutes=after_minutes),
                                 service=service, min_level=level, limit=ctx.deps.settings.sql_max_rows)
        return _plain(rows)

    @agent.tool
    async def metrics(ctx: RunContext[ChatDeps]) -> dict[str, Any]:
        """The report: issues tracked, formal RCA, active, MTTR (latest cycle and per cycle), repeat issues,
        recurrences escalated, learning velocity, noise and genuine signals, noise per source, gate rejections."""
        r = compute_report(ctx.deps.store, now=ctx.deps.now)
        keep = ("issues_tracked", "issues_with_formal_rca", "active_issues", "mttr_hours_latest_cycle", "repeat_issues",
                "recurrences_escalated", "learning_velocity_per_week", "noise_signals", "genuine_signals", "now",
                "lifetime", "latest_cycle", "mttr_per_cycle", "repeat_failure_modes", "recurrences",
                "failure_classes_eliminated", "noise_by_source", "gate_rejections", "stage_hours", "detection_lead_time")
        return _plain({k: r[k] for k in keep})

    @agent.tool
    async def sql(ctx: RunContext[ChatDeps], query: str) -> dict[str, Any]:
        """Run one read-only SELECT over the v_* views (listed in the instructions); at most a few hundred rows."""
        try:
            cols, rows, truncated = q.run_select(ctx.deps.store, query, limit=ctx.deps.settings.sql_max_rows,
                                                 views_only=True)
        except InputError as exc:
            raise ModelRetry(str(exc)) from None
        return _plain({"columns": cols, "rows": [list(r) for r in rows], "truncated": truncated})

    @agent.output_validator
    def _grounded(ctx: RunContext[ChatDeps], reply: ChatReply) -> ChatReply:
        missing = unknown_references(ctx.deps.store, reply)
        if missing:
            raise ModelRetry(f"these ids are not in the store: {', '.join(missing)}; answer only with ids the tools returned")
        return reply

    return agent


def build_model(cfg: Any):
    """The configured OpenAI-compatible chat model (OpenAI, Ollama, vLLM, llama.cpp server)."""
    import os

    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    m = cfg.analysis.model
    key = os.environ.get(m.api_key_env) if m.api_key_env else None
    if not key and not m.base_url:
        raise SelfhealError(f"analysis.model needs an API key in ${m.api_key_env} (or a base_url of a local server)")
    client = AsyncOpenAI(base_url=m.base_url, api_key=key or "not-needed", timeout=m.timeout_s, max_retries=m.max_retries)
    return OpenAIChatModel(m.model, provider=OpenAIProvider(openai_client=client))


class ModelAnswerer:
    """Answers through a pydantic-ai agent with read-only tools over the store; keeps the conversation."""

    def __init__(self, store: Store, model: Any, *, model_name: str, now: datetime | None = None,
                 settings: ChatSettings | None = None, endpoint: str | None = None):
        self.store = store
        self.endpoint = endpoint
        self.now = now or q.latest_record_ts(store)
        self.settings = settings or ChatSettings()
        self.model_name = model_name
        self.agent = build_agent(model, system_prompt(store, self.now))
        self.history: list[Any] = []

    def answer(self, question: str) -> Answer:
        from pydantic_ai.exceptions import AgentRunError, UserError

        text = (question or "").strip()
        if not text:
            raise InputError("empty question")
        try:
            result = self.agent.run_sync(text, deps=ChatDeps(self.store, self.now, self.settings),
                                         message_history=self.history or None)
        except (AgentRunError, UserError) as exc:
            where = f" at {self.endpoint}" if self.endpoint else ""
            raise SelfhealError(f"the model {self.model_name}{where} could not answer: {_first_line(exc)}") from None
        except Exception as exc:  # transport errors from the OpenAI client: one line, the chat goes on
            if type(exc).__module__.startswith(("openai", "httpx", "httpcore")):
                raise SelfhealError(f"request to the model {self.model_name} failed: {type(exc).__name__}: {_first_line(exc)}") from None
            raise
        self.history = result.all_messages()
        reply: ChatReply = result.output
        chains = sorted(set(_ID_TOKENS["chain"].findall(reply.answer)))
        fixes = sorted(set(_ID_TOKENS["fix"].findall(reply.answer)))
        issues = list(dict.fromkeys(list(reply.issues) + _ID_TOKENS["issue"].findall(reply.answer)))
        return Answer(question, "model", reply.answer,
                      {"issues": issues, "signals": list(dict.fromkeys(reply.signals)), "chains": chains, "fixes": fixes},
                      {}, answerer=f"model:{self.model_name}", footer=f"— answered by {self.model_name} from the store's records")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
