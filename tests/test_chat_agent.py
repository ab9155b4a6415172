"""The model-backed answerer: a pydantic-ai agent with read-only tools over the store.

Driven by FunctionModel/TestModel (no model requests allowed), and once over the wire against a local
OpenAI-compatible server on 127.0.0.1 that plays a scripted model, so the OpenAI wiring is exercised
without a network or a real model.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic_ai import models
from pydantic_ai.messages import ModelResponse, ToolCallPart, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from agent.chat import OFFLINE_BY_CHOICE_FOOTER, OFFLINE_FOOTER, OfflineAnswerer, make_answerer
from agent.chat_agent import ChatReply, ModelAnswerer, system_prompt, unknown_references
from agent.config import Config
from agent.errors import SelfhealError
from agent.store import Store

models.ALLOW_MODEL_REQUESTS = False
DATA = Path(__file__).parent / "data" / "report"


@pytest.fixture(scope="module")
def store():
    spec = importlib.util.spec_from_file_location("report_fixture", DATA / "fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s = Store.open(None)
    mod.build(s)
    yield s
    s.close()


def _returns(messages) -> list[ToolReturnPart]:
    return [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]


def test_the_agent_looks_things_up_with_its_tools_and_cites_ids(store):
    seen: dict[str, object] = {}

    def model(messages, info: AgentInfo) -> ModelResponse:
        assert {t.name for t in info.function_tools} == {
            "list_issues", "issue_timeline", "issue_chains", "issue_fixes", "signals_around", "metrics", "sql"}
        back = _returns(messages)
        if not back:
            return ModelResponse(parts=[ToolCallPart("list_issues", {"status": "needs-human"})])
        name = back[0].tool_name
        seen[name] = back[0].content
        if name == "list_issues":
            (issue,) = back[0].content
            return ModelResponse(parts=[ToolCallPart("issue_chains", {"issue_id": issue["id"]}),
                                        ToolCallPart("issue_timeline", {"issue_id": issue["id"]})])
        chains = next(p.content for p in back if p.tool_name == "issue_chains")
        seen["issue_timeline"] = next(p.content for p in back if p.tool_name == "issue_timeline")
        c = chains[-1]
        text = (f"ISS-0003 needs a human: chain {c['id']} was rejected by the gate "
                f"({c['gate']['checks']['counterfactual']['reason']}).")
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name,
                                                 {"answer": text, "issues": ["ISS-0003"], "signals": ["s18"]})])

    bot = ModelAnswerer(store, FunctionModel(model), model_name="scripted")
    a = bot.answer("what needs a human and why?")
    assert seen["list_issues"] == [dict(seen["list_issues"][0])]
    assert seen["list_issues"][0]["id"] == "ISS-0003" and seen["list_issues"][0]["status"] == "needs-human"
    timeline = seen["issue_timeline"]
    assert [e["event"] for e in timeline["events"]] == ["opened", "analysing", "escalated"]
    assert [o["signal_id"] for o in timeline["occurrences"]] == ["s18", "s19"]
    assert "C-0004 was rejected" in a.text and "not necessary" in a.text
    assert a.refs == {"issues": ["ISS-0003"], "signals": ["s18"], "chains": ["C-0004"], "fixes": []}
    assert a.answerer == "model:scripted" and "offline" not in a.footer and "scripted" in a.footer


def test_answers_naming_ids_the_store_lacks_are_sent_back(store):
    calls = []

    def model(messages, info: AgentInfo) -> ModelResponse:
        calls.append(messages[-1])
        back = _returns(messages)
        if back and "not in the store" in str(back[0].content):
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name,
                                                     {"answer": "ISS-0002 was resolved by FIX-0002.", "issues": ["ISS-0002"]})])
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name,
                                                 {"answer": "ISS-0099 was fixed by FIX-0042 (C-0777).",
                                                  "issues": ["ISS-0099"], "signals": ["s999"]})])

    a = ModelAnswerer(store, FunctionModel(model), model_name="m").answer("what was fixed?")
    assert a.text == "ISS-0002 was resolved by FIX-0002."
    retry = str(_returns([calls[-1]])[0].content)
    for bad in ("ISS-0099", "FIX-0042", "C-0777", "s999"):
        assert bad in retry


def test_a_model_that_keeps_inventing_ids_is_an_error_not_an_answer(store):
    def model(messages, info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"answer": "ISS-4242 is on fire"})])

    with pytest.raises(SelfhealError, match="the model m could not answer"):
        ModelAnswerer(store, FunctionModel(model), model_name="m").answer("anything on fire?")


def test_the_sql_tool_reads_views_and_refuses_everything_else(store):
    results = []

    def model(messages, info: AgentInfo) -> ModelResponse:
        back = _returns(messages)
        if not back:
            return ModelResponse(parts=[ToolCallPart("sql", {"query": "DELETE FROM issues"})])
        results.append(back[0].content)
        if len(results) == 1:
            return ModelResponse(parts=[ToolCallPart("sql", {"query": "SELECT * FROM issues"})])
        if len(results) == 2:
            return ModelResponse(parts=[ToolCallPart("sql", {"query": "SELECT count(*) AS n FROM v_issues WHERE status = 'resolved'"})])
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"answer": "2 issues are resolved."})])

    a = ModelAnswerer(store, FunctionModel(model), model_name="m").answer("how many issues are resolved?")
    assert "only SELECT" in str(results[0]) and "DELETE" in str(results[0])
    assert "only the views" in str(results[1])
    assert results[2] == {"columns": ["n"], "rows": [[2]], "truncated": False}
    assert a.text == "2 issues are resolved."
    assert store.scalar("SELECT count(*) FROM issues") == 6


def test_every_tool_runs_against_the_store_with_test_model(store):
    model = TestModel(call_tools=["list_issues", "metrics"],
                      custom_output_args={"answer": "ISS-0001 recurred; repeat issues 1.", "issues": ["ISS-0001"],
                                          "signals": ["s25"]})
    bot = ModelAnswerer(store, model, model_name="test")
    a = bot.answer("how are we doing?")
    assert a.refs["issues"] == ["ISS-0001"] and a.refs["signals"] == ["s25"]
    # the conversation is kept for follow-up questions
    first = len(bot.history)
    bot.answer("and ISS-0001?")
    assert len(bot.history) > first
    assert any(isinstance(p, UserPromptPart) and p.content == "how are we doing?" for m in bot.history for p in m.parts)


def test_the_system_prompt_comes_from_the_template(store):
    text = system_prompt(store, None)
    assert "Never invent" in text and "v_issues(id, num, fingerprint" in text
    assert "The store has 6 issues (4 active) and 35 signals." in text


def test_unknown_references_checks_every_kind(store):
    reply = ChatReply(answer="ISS-0001, C-0006 and FIX-0003 are real; ISS-0777 is not", issues=["ISS-0002"],
                      signals=["s1", "nope"])
    assert unknown_references(store, reply) == ["ISS-0777", "nope"]


def test_without_a_model_the_offline_answerer_is_used(store):
    assert isinstance(make_answerer(store, Config()), OfflineAnswerer)
    cfg = Config.model_validate({"analysis": {"model": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}}})
    bot = make_answerer(store, cfg, offline=True)
    assert isinstance(bot, OfflineAnswerer)
    # no model is pretended, and none is denied: the footer says the configured one was not asked
    assert bot.answer("what is open?").footer == OFFLINE_BY_CHOICE_FOOTER
    assert make_answerer(store, Config()).answer("huh?").footer == OFFLINE_FOOTER


# --------------------------------------------------------------------------- over the wire


class _ScriptedOpenAI(BaseHTTPRequestHandler):
    """Plays a model on /v1/chat/completions: first asks for list_issues, then answers from what came back."""

    requests: list[dict] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        tools = [m for m in body["messages"] if m["role"] == "tool"]
        if not tools:
            call = {"id": "call_1", "type": "function",
                    "function": {"name": "list_issues", "arguments": json.dumps({"status": "needs-human"})}}
        else:
            issues = json.loads(tools[-1]["content"])
            answer = {"answer": f"{issues[0]['id']} needs a human.", "issues": [issues[0]["id"]], "signals": []}
            out = next(t["function"]["name"] for t in body["tools"] if t["function"]["name"] not in
                       ("list_issues", "issue_timeline", "issue_chains", "issue_fixes", "signals_around", "metrics", "sql"))
            call = {"id": "call_2", "type": "function", "function": {"name": out, "arguments": json.dumps(answer)}}
        reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "tool_calls",
                              "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
                 "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def local_model_server():
    _ScriptedOpenAI.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_configured_model_over_an_openai_compatible_endpoint(store, local_model_server, monkeypatch):
    monkeypatch.setenv("SELFHEAL_TEST_KEY", "sk-local")
    cfg = Config.model_validate({"analysis": {"model": {"model": "local-model", "base_url": local_model_server,
                                                        "api_key_env": "SELFHEAL_TEST_KEY", "max_retries": 0}}})
    with models.override_allow_model_requests(True):  # only 127.0.0.1 is reachable here
        bot = make_answerer(store, cfg)
        assert isinstance(bot, ModelAnswerer)
        a = bot.answer("what needs a human?")
    assert a.text == "ISS-0003 needs a human." and a.answerer == "model:local-model"
    first, second = _ScriptedOpenAI.requests
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-local"
    assert first["body"]["model"] == "local-model"
    assert "Never invent" in first["body"]["messages"][0]["content"]
    tool_msg = next(m for m in second["body"]["messages"] if m["role"] == "tool")
    assert json.loads(tool_msg["content"])[0]["id"] == "ISS-0003"


def test_an_unreachable_endpoint_is_one_clear_error(store):
    cfg = Config.model_validate({"analysis": {"model": {"model": "m", "base_url": "http://127.0.0.1:9/v1",
                                                        "api_key_env": None, "max_retries": 0, "timeout_s": 2}}})
    with models.override_allow_model_requests(True):
        bot = make_answerer(store, cfg)
        with pytest.raises(SelfhealError) as err:
            bot.answer("what is open?")
    assert "\n" not in str(err.value) and "http://127.0.0.1:9/v1" in str(err.value)
