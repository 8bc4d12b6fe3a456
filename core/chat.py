"""The one small interface every language-model backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int | None = Field(
        None, description="Prompt tokens served from a prefix cache, when the backend reports it."
    )

    def __add__(self, other: Usage) -> Usage:
        cached = None
        if self.cached_prompt_tokens is not None or other.cached_prompt_tokens is not None:
            cached = (self.cached_prompt_tokens or 0) + (other.cached_prompt_tokens or 0)
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_prompt_tokens=cached,
        )


class Completion(BaseModel):
    text: str
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None


class StreamChunk(BaseModel):
    """A piece of a streamed completion; the last chunk carries the usage."""

    delta: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


@runtime_checkable
class ChatModel(Protocol):
    """A chat model. `json_schema` constrains the output to JSON matching the schema
    (natively where the backend can, else by prompting, validating and retrying)."""

    name: str

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        stop: Sequence[str] | None = None,
    ) -> Completion: ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> AsyncIterator[StreamChunk]: ...

    async def aclose(self) -> None: ...
