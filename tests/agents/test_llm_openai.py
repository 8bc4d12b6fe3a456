"""The OpenAI-compatible backend against a real local HTTP server playing a model."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from quarry.agents.errors import LLMError, LLMOutputError
from quarry.agents.llm import Message, OpenAIChatModel, StreamChunk
from quarry.core.settings import LLMSettings
from tests.agents.scripted_openai import Reply, ScriptedOpenAI, chat_reply, stream_reply

QUESTION = [Message(role="system", content="Be brief."), Message(role="user", content="Capital of France?")]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"queries": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["queries"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[ScriptedOpenAI]:
    server = ScriptedOpenAI()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(scripted_server: ScriptedOpenAI) -> ScriptedOpenAI:
    scripted_server.script()
    return scripted_server


def settings_for(server: ScriptedOpenAI, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {"backend": "openai", "model": "scripted", "base_url": server.base_url, "max_retries": 2}
    return LLMSettings(**(values | overrides))


def run_complete(settings: LLMSettings, **kwargs: Any) -> Any:
    async def go() -> Any:
        model = OpenAIChatModel(settings)
        try:
            return await model.complete(QUESTION, **kwargs)
        finally:
            await model.aclose()

    return asyncio.run(go())


def run_stream(settings: LLMSettings) -> list[StreamChunk]:
    async def go() -> list[StreamChunk]:
        model = OpenAIChatModel(settings)
        try:
            return [chunk async for chunk in model.stream(QUESTION, max_tokens=20)]
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_completion_text_usage_and_request(server: ScriptedOpenAI) -> None:
    server.script(chat_reply("Paris.", prompt_tokens=12, completion_tokens=3, cached=8))
    done = run_complete(settings_for(server, max_tokens=64, temperature=0.0), stop=["\n\n"])
    assert done.text == "Paris."
    assert done.finish_reason == "stop"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.cached_prompt_tokens) == (12, 3, 8)
    [request] = server.received
    assert request.body["model"] == "scripted"
    assert request.body["messages"] == [m.model_dump() for m in QUESTION]
    assert request.body["max_tokens"] == 64
    assert request.body["temperature"] == 0.0
    assert request.body["stop"] == ["\n\n"]
    assert "response_format" not in request.body
    assert "stream" not in request.body
    assert "authorization" not in request.headers


def test_cached_tokens_absent_stays_none(server: ScriptedOpenAI) -> None:
    server.script(chat_reply("Paris."))
    done = run_complete(settings_for(server), max_tokens=7, temperature=0.5)
    assert done.usage.cached_prompt_tokens is None
    assert server.received[0].body["max_tokens"] == 7
    assert server.received[0].body["temperature"] == 0.5


def test_api_key_sent_as_bearer(server: ScriptedOpenAI) -> None:
    server.script(chat_reply("ok"))
    run_complete(settings_for(server, api_key="sk-test-123"))
    assert server.received[0].headers["authorization"] == "Bearer sk-test-123"


def test_json_schema_request_and_validation(server: ScriptedOpenAI) -> None:
    server.script(chat_reply('{"queries": ["capital of France"]}'))
    done = run_complete(settings_for(server), json_schema=SCHEMA)
    assert done.text == '{"queries": ["capital of France"]}'
    response_format = server.received[0].body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"] == SCHEMA
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["name"]


def test_invalid_json_then_valid_on_retry(server: ScriptedOpenAI) -> None:
    server.script(
        chat_reply("sure! here it is", prompt_tokens=20, completion_tokens=4),
        chat_reply('{"queries": ["paris"]}', prompt_tokens=40, completion_tokens=6),
    )
    done = run_complete(settings_for(server), json_schema=SCHEMA)
    assert done.text == '{"queries": ["paris"]}'
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (60, 10)
    assert len(server.received) == 2
    retry_messages = server.received[1].body["messages"]
    assert retry_messages[: len(QUESTION)] == [m.model_dump() for m in QUESTION]
    assert retry_messages[-2] == {"role": "assistant", "content": "sure! here it is"}
    assert retry_messages[-1]["role"] == "user"
    assert "not valid JSON" in retry_messages[-1]["content"]
    assert "response_format" in server.received[1].body


def test_schema_violation_twice_raises_output_error(server: ScriptedOpenAI) -> None:
    server.script(chat_reply('{"queries": []}'), chat_reply('{"queries": [], "extra": 1}'))
    with pytest.raises(LLMOutputError, match="JSON schema") as caught:
        run_complete(settings_for(server), json_schema=SCHEMA)
    assert len(server.received) == 2
    assert "does not match the schema" in server.received[1].body["messages"][-1]["content"]
    assert "extra" in str(caught.value) or "queries" in str(caught.value)


def test_invalid_schema_is_refused_before_any_request(server: ScriptedOpenAI) -> None:
    with pytest.raises(LLMError, match="invalid JSON schema"):
        run_complete(settings_for(server), json_schema={"type": "no-such-type"})
    assert server.received == []


def retries_logged(caplog: pytest.LogCaptureFixture) -> int:
    """Retries the SDK announced (it logs each one before waiting)."""
    return sum("Retrying request" in record.getMessage() for record in caplog.records)


@pytest.fixture
def sdk_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="openai")
    return caplog


def test_429_honours_retry_after(server: ScriptedOpenAI) -> None:
    busy = Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "1"})
    server.script(busy, chat_reply("Paris."))
    started = time.monotonic()
    done = run_complete(settings_for(server))
    assert done.text == "Paris."
    assert time.monotonic() - started >= 1.0  # waited as the server asked, not the 0.5 s backoff
    assert len(server.received) == 2


def test_500_twice_then_success_with_backoff(server: ScriptedOpenAI) -> None:
    failed = Reply(status=500, body={"object": "error", "message": "engine hiccup"})
    server.script(failed, failed, chat_reply("Paris."))
    done = run_complete(settings_for(server, max_retries=2))
    assert done.text == "Paris."
    assert len(server.received) == 3
    assert [r.headers["x-stainless-retry-count"] for r in server.received] == ["0", "1", "2"]


def test_5xx_exhausts_retries_with_server_message(server: ScriptedOpenAI) -> None:
    failed = Reply(status=503, body={"object": "error", "message": "engine overloaded"})
    server.script(failed, failed, failed)
    with pytest.raises(LLMError, match="engine overloaded") as caught:
        run_complete(settings_for(server, max_retries=1))
    assert "2 attempts" in str(caught.value)
    assert "503" in str(caught.value)
    assert len(server.received) == 2


def test_400_raises_server_message_without_retry(server: ScriptedOpenAI) -> None:
    server.script(Reply(status=400, body={"error": {"message": "max_tokens is too large: 99999"}}))
    with pytest.raises(LLMError, match="max_tokens is too large: 99999") as caught:
        run_complete(settings_for(server))
    assert not isinstance(caught.value, LLMOutputError)
    assert "400" in str(caught.value)
    assert len(server.received) == 1


def test_timeout_retries_then_raises(server: ScriptedOpenAI) -> None:
    slow = Reply(body={}, delay_s=1.5)
    server.script(slow, slow, slow)
    with pytest.raises(LLMError, match="Timeout") as caught:
        run_complete(settings_for(server, timeout_s=0.2, max_retries=2))
    assert "3 attempts" in str(caught.value)
    assert len(server.received) == 3


def test_connection_refused_is_retried_then_raises(sdk_log: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = LLMSettings(backend="openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(LLMError, match="ConnectError") as caught:
        run_complete(settings)
    assert "3 attempts" in str(caught.value)
    assert retries_logged(sdk_log) == 2


def test_stream_deltas_and_final_usage(server: ScriptedOpenAI) -> None:
    deltas = ["The capital ", "of France ", "is Paris."]
    server.script(stream_reply(deltas, prompt_tokens=11, cached=4))
    chunks = run_stream(settings_for(server))
    assert "".join(c.delta for c in chunks) == "The capital of France is Paris."
    assert [c.delta for c in chunks[:-1]] == deltas
    assert all(c.usage is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.cached_prompt_tokens) == (11, 3, 4)
    assert final.finish_reason == "stop"
    body = server.received[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 20


def test_stream_retries_before_first_delta(server: ScriptedOpenAI) -> None:
    server.script(Reply(status=502, body={"detail": "bad gateway"}), stream_reply(["ok"]))
    chunks = run_stream(settings_for(server))
    assert "".join(c.delta for c in chunks) == "ok"
    assert len(server.received) == 2
    assert server.received[1].body["stream"] is True


def test_stream_client_error_raises(server: ScriptedOpenAI) -> None:
    server.script(Reply(status=404, body={"error": {"message": "model 'scripted' does not exist"}}))
    with pytest.raises(LLMError, match="does not exist"):
        run_stream(settings_for(server))
    assert len(server.received) == 1


def test_stream_error_event_raises(server: ScriptedOpenAI) -> None:
    server.script(Reply(events=[{"error": {"message": "engine died"}}]))
    with pytest.raises(LLMError, match="engine died"):
        run_stream(settings_for(server))
