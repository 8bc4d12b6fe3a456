"""Planners turn a question into graph operations: a model-driven one (JSON operations
validated against a schema) and a heuristic one for extractive mode."""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from quarry.agents import prompts
from quarry.agents.errors import LLMError
from quarry.agents.hops import Term, choose_bridges, open_terms
from quarry.agents.plan import PLAN_OPS_SCHEMA, AddEdge, AddNode, Finish, PlanGraph, parse_ops
from quarry.agents.reader import ExtractiveReader
from quarry.core.chat import ChatModel, Usage
from quarry.core.types import Evidence, NodeState, PlanNode
from quarry.retrieval.entities import query_keys
from quarry.retrieval.graph import PassageGraph

Op = AddNode | AddEdge | Finish


@dataclass
class PlannerReply:
    ops: list[Op]
    rejected: list[str]
    usage: Usage


class Planner(Protocol):
    async def initial(self, question: str) -> PlannerReply: ...

    async def extend(
        self, question: str, graph: PlanGraph, finished: PlanNode, evidence: list[Evidence], collection: str = ""
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
        self, question: str, graph: PlanGraph, finished: PlanNode, evidence: list[Evidence], collection: str = ""
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


@dataclass(frozen=True)
class Comparison:
    kind: str  # "choice" (which of A or B), "same"/"both", or "difference" (between A and B)
    stem: str
    a: str
    b: str
    rest: str = ""


_DIFFERENCE = re.compile(
    r"^(?:what|how)\s+(?:is|are|'s)?\s*(?:the\s+)?(?:main\s+|key\s+)?(?:differences?|difference)\s+between\s+"
    r"(?P<a>.+?)\s+and\s+(?P<b>.+?)\s*\??$|^how\s+(?:does|do|is|are)\s+(?P<a2>.+?)\s+differ\s+from\s+(?P<b2>.+?)\s*\??$",
    re.I,
)


def parse_comparison(question: str) -> Comparison | None:
    q = question.strip()
    m = _DIFFERENCE.match(q)
    if m:
        a, b = m.group("a") or m.group("a2"), m.group("b") or m.group("b2")
        return Comparison("difference", "what is", _strip(a), _strip(b))
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


_ASKS = r"(?:what|which|who|whom|whose|where|when|why|how|is|are|was|were|does|do|did|can|could|should|will|would)"
# "..., and which option starts several workers?": a second question joined to the first
# (not "who" nor a bare auxiliary: "... and who's third album is X", "... and is based where"
# continue the first question's subject; "and is it ..." asks anew)
_AND_ASKS = re.compile(
    r",?\s+and\s+(?=(?:what|which|where|when|why|how)\b|(?:is|are|does|do|can|should)\s+(?:it|they|there|this|that)\b)",
    re.I,
)
_LAST_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def question_parts(question: str) -> list[str]:
    """The questions a question asks at once ("On which address does it listen, and which
    option starts several workers?"), each standing alone: sentences of context before the
    asking one, and a clause that leads the first part ("When I start it in production,"),
    go with every part. One question gives a list of one."""
    text = question.strip()
    sentences = _LAST_SENTENCE.split(text)
    context, asking = " ".join(sentences[:-1]), sentences[-1]
    pieces = [p.strip(" ,") for p in _AND_ASKS.split(asking)]
    if len(pieces) < 2 or any(len(p.split()) < 3 for p in pieces) or parse_comparison(text):
        return [text]
    # the first part asks on its own, perhaps after a leading clause ("When I start it, on which ...")
    first = re.match(
        rf"(?:(?P<lead>.+?),\s*)?(?P<rest>(?:in |on |at |for |with |from |by |to )?{_ASKS}\b.*)$",
        pieces[0],
        re.I | re.S,
    )
    if first is None:
        return [text]
    lead = f"{first['lead'].strip()}, " if first["lead"] else ""
    pieces[0] = first["rest"]
    parts = []
    for piece in pieces:
        body = piece.rstrip("?").strip()
        body = body[0].upper() + body[1:] if not lead else body
        parts.append(f"{context} {lead}{body}?".strip())
    return parts


def _strip(entity: str) -> str:
    return entity.strip(" ?,.\"'")


def comparison_questions(c: Comparison) -> list[str]:
    if c.kind == "difference":
        return [f"What is {c.a}?", f"What is {c.b}?"]
    if c.kind == "choice":
        return [f"{c.stem}: {c.a}?", f"{c.stem}: {c.b}?"]
    if c.kind == "same":
        prop = c.rest or "nationality"
        return [f"What is the {prop} of {c.a}?", f"What is the {prop} of {c.b}?"]
    return [f"{c.stem.capitalize()} {c.a} {c.rest}?".replace("  ", " "), f"{c.stem.capitalize()} {c.b} {c.rest}?"]


@dataclass
class _Chain:
    """Where one branch of a question's plan stands (kept per node: a hop inherits it)."""

    terms: list[Term]
    exclude: set[str] = field(default_factory=set)
    arrived: str | None = None  # the entity the last hop went to


class HeuristicPlanner:
    """Plans without a model: comparisons become one node per entity, a question that asks
    two things at once one node per part (`question_parts`), other questions one node.
    Each branch then follows its chain: a hop searches for a bridge entity that the best
    passages lead to (chosen through the passage graph, `agents.hops`) together with the
    branch's terms still open, until none are open, no passage leads anywhere new, or
    `max_hops` is reached. The first hop of a branch may try `hop_beam` bridges."""

    def __init__(
        self,
        reader: ExtractiveReader,
        graph_of: Callable[[str], PassageGraph] | None = None,
        max_hops: int = 3,
        hop_beam: int = 3,
    ) -> None:
        self.reader = reader
        self.graph_of = graph_of
        self.max_hops = max_hops
        self.hop_beam = hop_beam
        self._chains: weakref.WeakKeyDictionary[PlanGraph, dict[str, _Chain]] = weakref.WeakKeyDictionary()

    async def initial(self, question: str) -> PlannerReply:
        comparison = parse_comparison(question)
        questions = comparison_questions(comparison) if comparison else question_parts(question)
        ops: list[Op] = [AddNode(id=f"n{i}", question=q) for i, q in enumerate(questions, start=1)]
        return PlannerReply(ops, [], Usage())

    async def extend(
        self, question: str, graph: PlanGraph, finished: PlanNode, evidence: list[Evidence], collection: str = ""
    ) -> PlannerReply:
        done = PlannerReply([], [], Usage())  # this branch ends; the plan ends when no branch runs
        if graph.finished or finished.state is NodeState.FAILED or not evidence or finished.depth >= self.max_hops:
            return done
        if finished.parents and finished.state is NodeState.NOT_FOUND:
            return done  # a hop that found nothing leads nowhere
        stem = self.reader.analyzer
        chains = self._chains.setdefault(graph, {})
        chain = chains.get(finished.id)
        if chain is None:  # a branch's first node
            chain = _Chain(open_terms(finished.question, stem), set(query_keys(finished.question)))
        passage_graph = self.graph_of(collection) if self.graph_of and collection else None
        beam = self.hop_beam if not finished.parents else 1
        answer = finished.answer if finished.state is NodeState.DONE else None
        bridges = choose_bridges(
            chain.terms, evidence, passage_graph, stem, chain.exclude, chain.arrived, answer, beam=beam
        )
        ops: list[Op] = []
        exclude = chain.exclude | {b.entity for b in bridges}
        asked = {n.question.lower() for n in graph.nodes.values()}
        for bridge in bridges:
            if not bridge.remaining or bridge.query().lower() in asked:
                continue
            asked.add(bridge.query().lower())
            taken = [op.id for op in ops if isinstance(op, AddNode)]
            hop = AddNode(id=graph.new_id(taken=taken), question=bridge.query(), parents=[finished.id])
            chains[hop.id] = _Chain(list(bridge.remaining), set(exclude), bridge.entity)
            ops.append(hop)
        return PlannerReply(ops, [], Usage())
