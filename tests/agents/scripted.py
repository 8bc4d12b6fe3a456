"""A scripted chat model for planner and graph logic (it fakes an external model)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from quarry.agents import prompts
from quarry.core.chat import Completion, Message, StreamChunk, Usage


class ScriptedModel:
    """Answers by role, recognised from the system prompt; every call is recorded."""

    name = "scripted"

    def __init__(
        self,
        plan: dict[str, Any],
        answers: dict[str, str],
        writer: str = "The answer [1].",
        extend: Callable[[str], dict[str, Any]] | None = None,
        delays: dict[str, float] | None = None,
    ) -> None:
        self.plan = plan
        self.answers = answers  # sub-question -> answer ("" = not found)
        self.writer = writer
        self.extend = extend or (lambda _user: {"ops": [{"op": "finish"}]})
        self.delays = delays or {}
        self.calls: list[tuple[str, str]] = []

    def _role(self, messages: Sequence[Message]) -> str:
        system = messages[0].content
        for role, prompt in (
            ("plan", prompts.PLANNER_SYSTEM),
            ("extend", prompts.EXTEND_SYSTEM),
            ("queries", prompts.QUERIES_SYSTEM),
            ("read", prompts.READER_SYSTEM),
            ("write", prompts.WRITER_SYSTEM),
        ):
            if system == prompt:
                return role
        return "research"

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        stop: Sequence[str] | None = None,
    ) -> Completion:
        role = self._role(messages)
        user = messages[-1].content
        self.calls.append((role, user))
        if role == "plan":
            payload: Any = self.plan
        elif role == "extend":
            payload = self.extend(user)
        elif role == "queries":
            question = re.search(r"Sub-question: (.*)", user)
            payload = {"queries": [question.group(1) if question else user]}
        elif role == "read":
            question = user.rsplit("Question: ", 1)[-1].strip()
            await asyncio.sleep(self.delays.get(question, 0.0))
            answer = self.answers.get(question, "")
            payload = {"found": bool(answer), "answer": answer, "passages": [1] if answer else []}
        else:
            payload = {"questions": ["What is alpha?", "What is beta?"]}
        return Completion(text=json.dumps(payload), usage=Usage(prompt_tokens=10, completion_tokens=5))

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> AsyncIterator[StreamChunk]:
        self.calls.append((self._role(messages), messages[-1].content))
        for piece in re.split(r"(?<= )", self.writer):
            yield StreamChunk(delta=piece)
        yield StreamChunk(usage=Usage(prompt_tokens=20, completion_tokens=7), finish_reason="stop")

    async def aclose(self) -> None:
        return None


class BrokenWriter(ScriptedModel):
    """Plans and reads as scripted; writing fails with an error no layer expects."""

    async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
        if self._role(messages) == "write":
            raise RuntimeError("a bug in the writer")
        return await super().complete(messages, **kwargs)

    async def stream(self, messages: Sequence[Message], **kwargs: Any) -> AsyncIterator[StreamChunk]:
        raise RuntimeError("a bug in the writer")
        yield  # an async generator
