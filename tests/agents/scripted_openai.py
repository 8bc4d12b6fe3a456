"""A real HTTP server playing an OpenAI-compatible model from a script of replies."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass
class Reply:
    """One scripted answer: a JSON body, or SSE events when `events` is set."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    events: list[Any] | None = None


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


def chat_reply(
    text: str, prompt_tokens: int = 10, completion_tokens: int = 5, cached: int | None = None, finish: str = "stop"
) -> Reply:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": usage,
    }
    return Reply(body=body)


def stream_reply(deltas: list[str], prompt_tokens: int = 10, cached: int | None = None) -> Reply:
    """OpenAI's stream shape: role chunk, content chunks, finish chunk, usage chunk, [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": len(deltas)}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    events: list[Any] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": d}) for d in deltas]
    events += [chunk({}, "stop"), {"object": "chat.completion.chunk", "choices": [], "usage": usage}, "[DONE]"]
    return Reply(events=events)


def _sse(events: list[Any], pause_s: float, headers: dict[str, str] | None = None) -> StreamingResponse:
    """Server-sent events, one `data:` line each, `pause_s` apart."""

    async def sse() -> AsyncIterator[bytes]:
        for event in events:
            data = event if isinstance(event, str) else json.dumps(event)
            yield f"data: {data}\n\n".encode()
            await asyncio.sleep(pause_s)

    return StreamingResponse(sse(), media_type="text/event-stream", headers=headers)


class ScriptedOpenAI:
    """Serves POST /v1/chat/completions from `replies` in order and records each request; or,
    given a `model` (a ScriptedModel), answers each request by its role, as a planning model
    behind a real endpoint does (for the service and the UI end to end)."""

    def __init__(self, model: Any = None) -> None:
        self.model = model
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._handle)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Reply) -> None:
        self.replies.clear()
        self.received.clear()
        self.replies.extend(replies)

    async def _handle(self, request: Request) -> Response:
        self.received.append(Received(headers=dict(request.headers), body=await request.json()))
        if self.model is not None:
            return await self._from_model(self.received[-1].body)
        if not self.replies:
            return JSONResponse({"error": {"message": "no scripted reply left"}}, status_code=500)
        reply = self.replies.popleft()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.events is None:
            return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
        return _sse(reply.events, pause_s=0.001, headers=reply.headers)

    async def _from_model(self, body: dict[str, Any]) -> Response:
        from quarry.core.chat import Message

        messages = [Message(role=m["role"], content=m["content"]) for m in body["messages"]]
        if not body.get("stream"):
            completion = await self.model.complete(messages)
            return JSONResponse(chat_reply(completion.text).body)
        deltas = [chunk.delta async for chunk in self.model.stream(messages) if chunk.delta]
        return _sse(stream_reply(deltas).events or [], pause_s=0.05)  # a model writes at its own pace

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the scripted server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
