"""Typed events a question's run emits; the CLI, the API's SSE stream and the UI consume
them. Every event has a `type` discriminator and serialises to one JSON object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from quarry.core.types import Answer, Citation, Evidence, PlanNode


class PlanUpdated(BaseModel):
    type: Literal["plan"] = "plan"
    nodes: list[PlanNode]
    edges: list[tuple[str, str]]
    rejected: list[str] = Field(default_factory=list, description="Graph operations refused, with the reason.")


class NodeStarted(BaseModel):
    type: Literal["node_started"] = "node_started"
    node_id: str
    question: str


class NodeEvidence(BaseModel):
    type: Literal["node_evidence"] = "node_evidence"
    node_id: str
    queries: list[str]
    evidence: list[Evidence]


class NodeAnswered(BaseModel):
    type: Literal["node_answer"] = "node_answer"
    node: PlanNode


class AnswerToken(BaseModel):
    type: Literal["token"] = "token"
    text: str


class CitationsChecked(BaseModel):
    type: Literal["citations"] = "citations"
    citations: list[Citation]
    unsupported: list[str]


class Done(BaseModel):
    type: Literal["done"] = "done"
    answer: Answer


class ErrorEvent(BaseModel):
    """A node failed (`node_id` set), or the run itself ended with an error (`error`: the
    exception's type, as in the API's error bodies)."""

    type: Literal["error"] = "error"
    message: str
    node_id: str | None = None
    error: str | None = None


Event = Annotated[
    PlanUpdated | NodeStarted | NodeEvidence | NodeAnswered | AnswerToken | CitationsChecked | Done | ErrorEvent,
    Field(discriminator="type"),
]
EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)
Emit = Callable[[Event], Awaitable[None]]


async def discard(_event: Event) -> None:
    """An emitter that drops events."""
