"""Planners turn a question into graph operations: a model-driven one (JSON operations
validated against a schema) and a heuristic one for extractive mode."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Protocol

from quarry.agents import prompts
from quarry.agents.errors import LLMError
from quarry.agents.plan import PLAN_OPS_SCHEMA, AddEdge, AddNode, Finish, PlanGraph, parse_ops
from quarry.agents.reader import ExtractiveReader
from quarry.agents.text import capitalised_spans
from quarry.core.chat import ChatModel, Usage
from quarry.core.types import Evidence, NodeState, PlanNode

Op = AddNode | AddEdge | Finish


@dataclass
class PlannerReply:
    ops: list[Op]
    rejected: list[str]
    usage: Usage


class Planner(Protocol):
    async def initial(self, question: str) -> PlannerReply: ...

    async def extend(
        self, question: str, graph: PlanGraph, finished: PlanNode, evidence: list[Evidence]
    ) -> PlannerReply: ...


class ModelPlanner:
    """Asks a chat model for graph operations under a JSON schema."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model

    async def initial(self, question: str) -> PlannerReply:
        reply = await self._ask(prompts.plan_messages(question))
        if not any(isinstance(op, AddNode) for op in reply.ops):
            # a plan without nodes cannot answer anything: fall back to the question itself
            reply.ops.insert(0, AddNode(id="n1", question=question))
            reply.rejected.append("planner added no node; the question itself became the only node")
        return reply

    async def extend(
        self, question: str, graph: PlanGraph, finished: PlanNode, evidence: list[Evidence]
    ) -> PlannerReply:
        return await self._ask(prompts.extend_messages(question, graph.snapshot()))

    async def _ask(self, messages: list[prompts.Message]) -> PlannerReply:
        try:
            completion = await self.model.complete(messages, json_schema=PLAN_OPS_SCHEMA)
        except LLMError as exc:
            return PlannerReply([], [f"planner failed: {exc}"], Usage())
        try:
            payload = json.loads(completion.text)
        except json.JSONDecodeError:
            return PlannerReply([], ["planner output is not JSON"], completion.usage)
        ops, rejected = parse_ops(payload)
        return PlannerReply(ops, rejected, completion.usage)


# -- heuristics for extractive mode ---------------------------------------------------------

_CHOICE = re.compile(r"^(?P<stem>(?:which|who|what)\b[^,:?]*?)\s*[,:]\s*(?P<a>.+?)\s+or\s+(?P<b>.+?)\s*\??$", re.I)
_COMPARATIVE = (
    r"first|last|older|oldest|younger|youngest|earlier|later|newer|more\s+\w+|less\s+\w+|fewer\s+\w+|"
    r"larger|bigger|smaller|taller|shorter|longer|higher|lower|greater|\w+er"
)
_CHOICE_BARE = re.compile(
    rf"^(?P<stem>(?:which|who|what)\b.*?\b(?:{_COMPARATIVE}))\s*[,:]?\s+(?P<a>.+?)\s+or\s+(?P<b>.+?)\s*\??$", re.I
)
_BOTH_FIRST = re.compile(
    r"^(?P<aux>are|were|is|was)\s+both\s+(?:[\w\s'’-]+?,\s*)?(?P<a>.+?)\s+and\s+(?P<b>.+?),?\s+"
    r"(?P<rest>(?:a|an|the)?\s*[\w'’-]+(?:\s+[\w'’-]+){0,5})\s*\??$",
    re.I,
)
_BOTH = re.compile(
    r"^(?P<aux>are|were|is|was|do|did|does|have|has)\s+(?P<a>.+?)\s+and\s+(?P<b>.+?)\s+"
    r"(?P<kind>both|the same|of the same|from the same|in the same)\s*(?P<rest>.*?)\s*\??$",
    re.I,
)
_RELATIVE = re.compile(r"\b(?:the|a|an)\s+(?:[\w'’-]+\s+){0,4}?(?:who|that|which|whose|whom)\b.*?(?=\?|$)", re.I)


@dataclass(frozen=True)
class Comparison:
    kind: str  # "choice" (which of A or B) or "same"/"both"
    stem: str
    a: str
    b: str
    rest: str = ""


def parse_comparison(question: str) -> Comparison | None:
    q = question.strip()
    m = _CHOICE.match(q) or _CHOICE_BARE.match(q)
    if m:
        return Comparison("choice", m.group("stem").strip(), _strip(m.group("a")), _strip(m.group("b")))
    m = _BOTH.match(q) or _BOTH_FIRST.match(q)
    if m:
        rest = m.group("rest").strip()
        same = re.search(r"\bsame\s+([\w'’-]+)", rest, re.I)
        kind_word = m.groupdict().get("kind") or "both"
        if same:
            return Comparison("same", m.group("aux"), _strip(m.group("a")), _strip(m.group("b")), same.group(1))
        kind = "both" if kind_word.lower() == "both" else "same"
        return Comparison(kind, m.group("aux"), _strip(m.group("a")), _strip(m.group("b")), rest)
    return None


def _strip(entity: str) -> str:
    return entity.strip(" ?,.\"'")


def comparison_questions(c: Comparison) -> list[str]:
    if c.kind == "choice":
        return [f"{c.stem}: {c.a}?", f"{c.stem}: {c.b}?"]
    if c.kind == "same":
        prop = c.rest or "nationality"
        return [f"What is the {prop} of {c.a}?", f"What is the {prop} of {c.b}?"]
    return [f"{c.stem.capitalize()} {c.a} {c.rest}?".replace("  ", " "), f"{c.stem.capitalize()} {c.b} {c.rest}?"]


def is_bridge(question: str) -> bool:
    return bool(_RELATIVE.search(question)) and parse_comparison(question) is None


def bridge_question(question: str, entity: str) -> str:
    """The question with its described entity ("the woman who ...") replaced by the name found."""
    replaced, count = _RELATIVE.subn(entity, question, count=1)
    return replaced if count else f"{entity}: {question}"


class HeuristicPlanner:
    """Plans without a model: comparisons become one node per entity; bridge questions
    retrieve, take the bridge entity from the best passages, and retrieve again."""

    def __init__(self, reader: ExtractiveReader) -> None:
        self.reader = reader

    async def initial(self, question: str) -> PlannerReply:
        comparison = parse_comparison(question)
        if comparison:
            ops: list[Op] = [
                AddNode(id=f"n{i}", question=q) for i, q in enumerate(comparison_questions(comparison), start=1)
            ]
            return PlannerReply([*ops, Finish()], [], Usage())
        return PlannerReply([AddNode(id="n1", question=question)], [], Usage())

    async def extend(
        self, question: str, graph: PlanGraph, finished: PlanNode, evidence: list[Evidence]
    ) -> PlannerReply:
        if graph.finished:
            return PlannerReply([], [], Usage())
        if finished.id != "n1" or not is_bridge(question) or finished.state is not NodeState.DONE:
            return PlannerReply([Finish()], [], Usage())
        entity = self.bridge_entity(question, evidence)
        if entity is None:
            return PlannerReply([Finish()], [], Usage())
        hop = AddNode(id="n2", question=bridge_question(question, entity), parents=["n1"])
        return PlannerReply([hop, Finish()], [], Usage())

    def bridge_entity(self, question: str, evidence: list[Evidence]) -> str | None:
        """A name in the sentences that best match the question, not already in it."""
        for sentence in self.reader.rank(question, evidence)[:3]:
            spans = capitalised_spans(sentence.text, exclude=question)
            spans.sort(key=lambda s: -min(len(s.split()), 2))
            if spans:
                return spans[0]
        return None
