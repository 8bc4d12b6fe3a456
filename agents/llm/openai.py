"""Any OpenAI-compatible /chat/completions endpoint, first of all a `vllm serve` server
(`vllm serve MODEL --enable-prefix-caching`), spoken to with httpx."""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx

from quarry.agents.errors import LLMError, LLMUnavailableError
from quarry.agents.llm.structured import complete_json
from quarry.core.chat import Completion, Message, StreamChunk, Usage
from quarry.core.settings import LLMSettings

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
# transient transport failures; others (bad URL scheme, proxy set-up) fail at once
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0

Sleep = Callable[[float], Awaitable[None]]


class OpenAIChatModel:
    """Chat completions over HTTP, with retries (exponential backoff with jitter,
    Retry-After honoured) on timeouts, connection errors, 429 and 5xx.

    `client` is used as given and left open by `aclose`; without one the model owns an
    `httpx.AsyncClient`. `sleep` and `rng` exist so that tests can observe the backoff."""

    def __init__(
        self,
        settings: LLMSettings,
        client: httpx.AsyncClient | None = None,
        *,
        backoff_s: float = 0.5,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not settings.model:
            raise LLMUnavailableError(
                "the openai backend needs llm.model (QUARRY_LLM__MODEL): the model name the endpoint serves"
            )
        self.settings = settings
        self.name: str = settings.model
        self._url = settings.base_url.rstrip("/") + "/chat/completions"
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=settings.timeout_s)
        self._timeout = httpx.Timeout(settings.timeout_s)
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        stop: Sequence[str] | None = None,
    ) -> Completion:
        """One completion; with `json_schema` the endpoint constrains decoding
        (`response_format: json_schema`) and the reply is validated, retried once."""
        if json_schema is None:
            return await self._complete(messages, max_tokens, temperature, stop, None)
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(json_schema), "schema": json_schema, "strict": True},
        }

        async def call(conversation: list[Message]) -> Completion:
            return await self._complete(conversation, max_tokens, temperature, stop, response_format)

        return await complete_json(call, messages, json_schema, model_name=self.name)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        """Deltas as the server sends them (SSE); the last chunk carries the finish reason
        and the usage (None if the endpoint reports none). Failures before the first delta
        are retried like `complete`; a stream broken later raises LLMError."""
        body = self._body(messages, max_tokens, temperature, stop)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        attempts = self.settings.max_retries + 1
        last = ""
        for attempt in range(attempts):
            started = False
            delay: float | None = None
            try:
                async with self._client.stream(
                    "POST", self._url, json=body, headers=self._headers(), timeout=self._timeout
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        last, delay = self._failed_status(response, attempt)
                    else:
                        async for chunk in _read_stream(response):
                            started = True
                            yield chunk
                        return
            except TRANSIENT_ERRORS as exc:
                if started:
                    raise LLMError(f"{self.name}: the stream broke off: {_describe(exc)}") from exc
                last, delay = _describe(exc), self._backoff(attempt)
            except httpx.HTTPError as exc:
                raise LLMError(f"{self.name}: request to {self._url} failed: {_describe(exc)}") from exc
            if attempt + 1 < attempts:
                await self._sleep(delay if delay is not None else self._backoff(attempt))
        raise LLMError(f"{self.name}: {self._url} failed after {attempts} attempts: {last}")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- internals -------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if self.settings.api_key:
            return {"Authorization": f"Bearer {self.settings.api_key}"}
        return {}

    def _body(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        temperature: float | None,
        stop: Sequence[str] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens if max_tokens is not None else self.settings.max_tokens,
            "temperature": temperature if temperature is not None else self.settings.temperature,
        }
        if stop:
            body["stop"] = list(stop)
        return body

    async def _complete(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        temperature: float | None,
        stop: Sequence[str] | None,
        response_format: dict[str, Any] | None,
    ) -> Completion:
        body = self._body(messages, max_tokens, temperature, stop)
        if response_format is not None:
            body["response_format"] = response_format
        payload = await self._post(body)
        try:
            choice = payload["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(f"{self.name}: malformed response from {self._url}: {str(payload)[:300]}") from exc
        return Completion(text=text, usage=_usage(payload.get("usage")), finish_reason=finish)

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        attempts = self.settings.max_retries + 1
        last = ""
        for attempt in range(attempts):
            delay: float | None = None
            try:
                response = await self._client.post(self._url, json=body, headers=self._headers(), timeout=self._timeout)
            except TRANSIENT_ERRORS as exc:
                last = _describe(exc)
            except httpx.HTTPError as exc:
                raise LLMError(f"{self.name}: request to {self._url} failed: {_describe(exc)}") from exc
            else:
                if response.status_code < 400:
                    try:
                        payload = response.json()
                    except ValueError as exc:
                        raise LLMError(
                            f"{self.name}: {self._url} answered with non-JSON: {response.text[:300]}"
                        ) from exc
                    if not isinstance(payload, dict):
                        raise LLMError(f"{self.name}: malformed response from {self._url}: {str(payload)[:300]}")
                    return payload
                last, delay = self._failed_status(response, attempt)
            if attempt + 1 < attempts:
                await self._sleep(delay if delay is not None else self._backoff(attempt))
        raise LLMError(f"{self.name}: {self._url} failed after {attempts} attempts: {last}")

    def _failed_status(self, response: httpx.Response, attempt: int) -> tuple[str, float]:
        """For a retryable status, what went wrong and how long to wait; else raise."""
        message = _error_message(response)
        if response.status_code not in RETRY_STATUSES:
            raise LLMError(f"{self.name}: {self._url} answered {response.status_code}: {message}")
        wait = _retry_after(response)
        return f"HTTP {response.status_code}: {message}", wait if wait is not None else self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = min(MAX_BACKOFF_S, self._backoff_s * 2**attempt)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


async def _read_stream(response: httpx.Response) -> AsyncIterator[StreamChunk]:
    """OpenAI-style SSE: `data: {json}` events ending with `data: [DONE]`."""
    finish: str | None = None
    usage: Usage | None = None
    async for data in _sse_data(response):
        if data == "[DONE]":
            break
        try:
            event = json.loads(data)
        except json.JSONDecodeError as exc:
            raise LLMError(f"malformed stream event: {data[:300]}") from exc
        if "error" in event:
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise LLMError(f"the stream reported an error: {message}")
        if event.get("usage"):
            usage = _usage(event["usage"])
        for choice in event.get("choices") or []:
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                yield StreamChunk(delta=delta)
            finish = choice.get("finish_reason") or finish
    yield StreamChunk(usage=usage, finish_reason=finish)


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The data of each server-sent event (multi-line data joined with newlines)."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    details = raw.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cached_prompt_tokens=int(cached) if cached is not None else None,
    )


def _error_message(response: httpx.Response) -> str:
    """The server's own message: OpenAI `{"error": {"message"}}`, vLLM `{"message"}`, or
    FastAPI `{"detail"}`; else the start of the body."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if payload.get(key):
                return str(payload[key])
    return str(payload)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), capped."""
    seconds = _seconds(response.headers.get("retry-after-ms"), 1000.0)
    if seconds is None:
        seconds = _seconds(response.headers.get("retry-after"), 1.0)
    if seconds is None:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _seconds(raw: str | None, per_second: float) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw) / per_second
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _schema_name(schema: dict[str, Any]) -> str:
    """`json_schema.name` must match ^[a-zA-Z0-9_-]{1,64}$."""
    title = str(schema.get("title") or "response")
    return re.sub(r"[^a-zA-Z0-9_-]", "_", title)[:64] or "response"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
