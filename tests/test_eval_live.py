"""`selfheal eval --mode live [--record]` against a real OpenAI-compatible HTTP server on 127.0.0.1, and the
cassette it records replayed with the server gone (`--mode replay`)."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from agent.config import Config
from agent.errors import InputError
from agent.evals.runner import run_eval

CHECKOUT = Path(__file__).parent / "data" / "eval" / "incidents" / "checkout-image-cache"
KEY = "sk-test-live-eval-0000"


def recorded_chain_arguments() -> str:
    """The final_result arguments (the chain, as JSON text) of the incident's hand-written cassette."""
    tape = yaml.safe_load((CHECKOUT / "cassettes" / "analysis.yaml").read_text())
    body = json.loads(tape["interactions"][1]["response"]["body"]["string"])
    return body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]


def completion(n: int, name: str, arguments: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-local-{n}", "object": "chat.completion", "created": 1764473000 + n, "model": "local-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": f"call_{n}", "type": "function",
                                "function": {"name": name, "arguments": arguments}}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}


class FakeOpenAI(ThreadingHTTPServer):
    """Chat completions like a model that searches the signals once, then answers with its chain."""

    def __init__(self, status: int = 200):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.chain = recorded_chain_arguments()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body})
        if self.server.status != 200:
            reply: dict[str, Any] = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                               "code": "invalid_api_key"}}
        elif any(m.get("role") == "tool" for m in body["messages"]):
            reply = completion(2, "final_result", self.server.chain)
        else:
            reply = completion(1, "search_signals", json.dumps({"minutes_before": 240, "service": "checkout-api"}))
        data = json.dumps(reply).encode()
        self.send_response(self.server.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def serve(status: int = 200) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _local_fake_model_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests drive the live mode against a scripted OpenAI-compatible server on 127.0.0.1, never a real model."""
    from pydantic_ai import models

    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", True)


@pytest.fixture
def incident(tmp_path: Path) -> Path:
    folder = tmp_path / "incidents" / "checkout-image-cache"
    shutil.copytree(CHECKOUT, folder)
    shutil.rmtree(folder / "cassettes")
    return folder


def model_cfg(home: Path, base_url: str, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("SELFHEAL_EVAL_TEST_KEY", KEY)
    return Config(home=home, analysis={"model": {"model": "local-model", "base_url": base_url,
                                                 "api_key_env": "SELFHEAL_EVAL_TEST_KEY", "max_retries": 0,
                                                 "timeout_s": 10}})


def test_live_mode_records_a_cassette_that_replay_runs_without_the_server(
        tmp_path: Path, incident: Path, monkeypatch: pytest.MonkeyPatch):
    server_ctx = serve()
    server = next(server_ctx)
    try:
        cfg = model_cfg(tmp_path / "home", server.base_url, monkeypatch)
        live = run_eval(incident, cfg, mode="live", record=True)
        assert live.passed, live.violations
        case = live.cases[0]
        assert case.analyst == "model:local-model" and case.checks["root_cause"].passed
        assert len(server.requests) == 2
        assert all(r["path"] == "/v1/chat/completions" and r["auth"] == f"Bearer {KEY}" for r in server.requests)
        assert {t["function"]["name"] for t in server.requests[0]["body"]["tools"]} >= {"search_signals", "final_result"}
    finally:
        next(server_ctx, None)  # the server is gone from here on

    tape = incident / "cassettes" / "analysis.yaml"
    assert case.model["cassette"] == str(tape) and tape.is_file()
    text = tape.read_text()
    assert KEY not in text and "authorization" not in text.lower()
    assert len(yaml.safe_load(text)["interactions"]) == 2

    replay = run_eval(incident, Config(home=tmp_path / "home2"), mode="replay")
    assert replay.passed, replay.violations
    again = replay.cases[0]
    assert again.model["model"] == "local-model" and again.model["played"] == 2 and again.model["all_played"]
    assert again.root == case.root and again.verification["status"] == "verified"


def test_live_mode_stops_at_a_model_that_cannot_be_used(tmp_path: Path, incident: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    for server in serve(status=401):
        cfg = model_cfg(tmp_path / "home", server.base_url, monkeypatch)
        with pytest.raises(InputError) as err:
            run_eval(incident, cfg, mode="live")
        assert str(err.value).startswith("checkout-image-cache: the model cannot be used: model endpoint "
                                         f"{server.base_url}: the API key was rejected (HTTP 401)")
        assert len(server.requests) == 1  # a 401 is not retried


def test_record_needs_live_mode(tmp_path: Path, incident: Path):
    with pytest.raises(InputError, match="--record writes the cassettes of a live run"):
        run_eval(incident, Config(home=tmp_path / "home"), mode="offline", record=True)


def test_offline_mode_never_asks_the_configured_model(tmp_path: Path, incident: Path, monkeypatch: pytest.MonkeyPatch):
    for server in serve():
        cfg = model_cfg(tmp_path / "home", server.base_url, monkeypatch)
        report = run_eval(incident, cfg, mode="offline")
        assert report.passed, report.violations
        case = report.cases[0]
        assert case.analyst == "offline" and case.checks["store"].passed is True
        assert server.requests == []  # neither the case nor the store path (analyze_issue) drafted with it
