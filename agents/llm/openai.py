"""Any OpenAI-compatible /chat/completions endpoint, first of all a `vllm serve` server
(`vllm serve MODEL --enable-prefix-caching`), spoken to through the official `openai` SDK."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

import openai
from openai import AsyncOpenAI, omit
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionMessageParam

from quarry.agents.errors import LLMError, LLMUnavailableError
from quarry.agents.llm.structured import complete_json
from quarry.core.chat import Completion, Message, StreamChunk, Usage
from quarry.core.settings import LLMSettings


class OpenAIChatModel:
    """Chat completions through `openai.AsyncOpenAI`, which retries timeouts, connection
    errors, 408, 409, 429 and 5xx `llm.max_retries` times (exponential backoff with
    jitter, Retry-After honoured). `client` is used as given and left open by `aclose`;
    without one the model owns a client built from the settings."""

    def __init__(self, settings: LLMSettings, client: AsyncOpenAI | None = None) -> None:
        if not settings.model:
            raise LLMUnavailableError(
                "the openai backend needs llm.model (QUARRY_LLM__MODEL): the model name the endpoint serves"
            )
        self.settings = settings
        self.name: str = settings.model
        self._url = settings.base_url.rstrip("/") + "/chat/completions"
        self._owns_client = client is None
        # The SDK insists on a key; with none configured, no Authorization header is sent.
        self._client = client or AsyncOpenAI(
            api_key=settings.api_key or "unused",
            base_url=settings.base_url,
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )
        self._headers: dict[str, Any] = {"Authorization": omit} if client is None and not settings.api_key else {}

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
        """Deltas as the server sends them; the last chunk carries the finish reason and the
        usage (None if the endpoint reports none). Failures before the response starts are
        retried like `complete`; a stream broken later raises LLMError."""
        started = False
        finish: str | None = None
        usage: Usage | None = None
        try:
            events = await self._client.chat.completions.create(
                **self._request(messages, max_tokens, temperature, stop),
                stream=True,
                stream_options={"include_usage": True},
            )
            async with events:
                async for event in events:
                    if event.usage is not None:
                        usage = _usage(event.usage)
                    for choice in event.choices or []:
                        if choice.delta is not None and choice.delta.content:
                            started = True
                            yield StreamChunk(delta=choice.delta.content)
                        finish = choice.finish_reason or finish
        except (openai.OpenAIError, ValueError) as exc:
            if started:
                raise LLMError(f"{self.name}: the stream broke off: {_describe(exc)}") from exc
            raise self._error(exc) from exc
        yield StreamChunk(usage=usage, finish_reason=finish)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    # -- internals -------------------------------------------------------------------

    def _request(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        temperature: float | None,
        stop: Sequence[str] | None,
    ) -> dict[str, Any]:
        return {
            "model": self.name,
            "messages": [cast(ChatCompletionMessageParam, m.model_dump()) for m in messages],
            "max_tokens": max_tokens if max_tokens is not None else self.settings.max_tokens,
            "temperature": temperature if temperature is not None else self.settings.temperature,
            "stop": list(stop) if stop else omit,
            "extra_headers": self._headers,
        }

    async def _complete(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        temperature: float | None,
        stop: Sequence[str] | None,
        response_format: dict[str, Any] | None,
    ) -> Completion:
        try:
            reply = await self._client.chat.completions.create(
                **self._request(messages, max_tokens, temperature, stop),
                response_format=cast(Any, response_format) if response_format is not None else omit,
            )
        except (openai.OpenAIError, ValueError) as exc:
            raise self._error(exc) from exc
        try:
            choice = reply.choices[0]
            return Completion(
                text=choice.message.content or "", usage=_usage(reply.usage), finish_reason=choice.finish_reason
            )
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMError(f"{self.name}: malformed response from {self._url}: {str(reply)[:300]}") from exc

    def _error(self, exc: Exception) -> LLMError:
        """An SDK failure as an LLMError that says what the server said, and how often
        the request was tried when the SDK retried it."""
        if not isinstance(exc, openai.APIStatusError | openai.APIConnectionError):
            return LLMError(f"{self.name}: {self._url}: {_describe(exc)}")
        attempts = int(exc.request.headers.get("x-stainless-retry-count", "0")) + 1
        if isinstance(exc, openai.APIStatusError):
            if attempts == 1:
                return LLMError(f"{self.name}: {self._url} answered {exc.status_code}: {_server_message(exc)}")
            problem = f"HTTP {exc.status_code}: {_server_message(exc)}"
        else:
            problem = _describe(exc.__cause__ or exc)
        return LLMError(f"{self.name}: {self._url} failed after {attempts} attempts: {problem}")


def _usage(raw: CompletionUsage | None) -> Usage:
    if raw is None:
        return Usage()
    details = raw.prompt_tokens_details
    return Usage(
        prompt_tokens=raw.prompt_tokens or 0,
        completion_tokens=raw.completion_tokens or 0,
        cached_prompt_tokens=details.cached_tokens if details is not None else None,
    )


def _server_message(exc: openai.APIStatusError) -> str:
    """The server's own message: OpenAI `{"error": {"message"}}` (the SDK unwraps
    `error`), vLLM `{"message"}`, FastAPI `{"detail"}`; else the start of the body."""
    body = exc.body
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    return str(body)[:500] if body else exc.message


def _schema_name(schema: dict[str, Any]) -> str:
    """`json_schema.name` must match ^[a-zA-Z0-9_-]{1,64}$."""
    title = str(schema.get("title") or "response")
    return re.sub(r"[^a-zA-Z0-9_-]", "_", title)[:64] or "response"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
