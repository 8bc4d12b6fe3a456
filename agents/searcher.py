"""The searcher: answers one node of the plan from the collection.

It writes 1-3 queries (parents' answers fill in bridge entities), retrieves each with the
hybrid pipeline (reranking included when configured), fuses the lists, reorders the
passages for the reader (best first, second best last), and reads them: with the chat
model when one is configured, else extractively."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, Field

from quarry.agents import prompts
from quarry.agents.errors import LLMError
from quarry.agents.reader import ExtractiveReader
from quarry.core.chat import ChatModel, Usage
from quarry.core.settings import AgentSettings
from quarry.core.types import Evidence, Hit, PlanNode
from quarry.retrieval.fusion import reciprocal_rank_fusion
from quarry.retrieval.library import Library
from quarry.retrieval.reorder import reorder_for_reader

_WH = re.compile(
    r"^(what|which|who|whom|whose|when|where|why|how( many| much| long| old)?)\s+(is|are|was|were|did|does|do)?\s*",
    re.I,
)


class NodeTask(BaseModel):
    """Everything a searcher needs, serialisable so a remote worker can run it."""

    collection: str
    tenant: str = "default"
    node_id: str
    question: str
    parents: list[PlanNode] = Field(default_factory=list)


class NodeResult(BaseModel):
    node_id: str
    queries: list[str]
    evidence: list[Evidence]
    found: bool
    answer: str | None = None
    evidence_ids: list[int] = Field(default_factory=list, description="Chunks the answer rests on.")
    usage: Usage = Field(default_factory=Usage)
    worker: str | None = Field(None, description="The worker that ran the node (remote execution).")


class NodeExecutor(Protocol):
    """Runs searcher nodes: in-process, or on workers (the service's Celery executor)."""

    async def run(self, task: NodeTask) -> NodeResult: ...


class LongReader(Protocol):
    """Answers a node from one whole long document (`agents.long_reader.LongDocumentReader`)."""

    async def target(self, evidence: Sequence[Evidence]) -> int | None: ...

    async def read(
        self, task: NodeTask, queries: list[str], evidence: list[Evidence], document_id: int
    ) -> NodeResult: ...


class Searcher:
    def __init__(
        self,
        library: Library,
        settings: AgentSettings,
        reader: ExtractiveReader,
        model: ChatModel | None = None,
        long_reader: LongReader | None = None,
    ) -> None:
        self.library = library
        self.settings = settings
        self.reader = reader
        self.model = model
        self.long_reader = long_reader

    async def run(self, task: NodeTask) -> NodeResult:
        usage = Usage()
        queries, used = await self._queries(task)
        usage += used
        evidence = await self._retrieve(task, queries)
        if not evidence:
            return NodeResult(node_id=task.node_id, queries=queries, evidence=[], found=False, usage=usage)
        if self.long_reader is not None:
            document_id = await self.long_reader.target(evidence)
            if document_id is not None:  # the question is about one long document: read all of it
                long_result = await self.long_reader.read(task, queries, evidence, document_id)
                long_result.usage += usage
                return long_result
        if self.model is not None:
            result = await self._read_with_model(task, queries, evidence[: self.settings.evidence_per_node])
            result.usage += usage
            return result
        read = evidence[: self.settings.evidence_per_node]
        reading = await asyncio.to_thread(self.reader.read, task.question, read, self.settings.answer_sentences)
        cited = sorted({read[s.evidence].chunk_id for s in reading.sentences[:1]}) if reading.found else []
        return NodeResult(
            node_id=task.node_id,
            queries=queries,
            evidence=evidence,
            found=reading.found,
            answer=reading.answer,
            evidence_ids=cited,
            usage=usage,
        )

    async def _queries(self, task: NodeTask) -> tuple[list[str], Usage]:
        if self.model is not None:
            try:
                completion = await self.model.complete(
                    prompts.queries_messages(task.question, task.parents), json_schema=prompts.QUERIES_SCHEMA
                )
                queries = [q.strip() for q in json.loads(completion.text)["queries"] if q.strip()]
                if queries:
                    return queries[: self.settings.queries_per_node], completion.usage
            except (LLMError, ValueError, KeyError, TypeError):
                pass  # fall back to the queries below; the node still runs
        queries = [task.question]
        keywords = _WH.sub("", task.question).rstrip("?").strip()
        if keywords and keywords.lower() != task.question.lower().rstrip("?") and self.settings.queries_per_node > 1:
            queries.append(keywords)
        return queries, Usage()

    async def _retrieve(self, task: NodeTask, queries: list[str]) -> list[Evidence]:
        """The node's passages, best first: the first node (the question itself) gathers the
        whole evidence budget, so the agent never holds less than one search of that size;
        follow-up nodes gather what they read."""
        s = self.settings
        k = max(s.evidence_budget if not task.parents else s.hits_per_query, s.evidence_per_node)

        def search_all() -> list[list[Hit]]:
            return [self.library.search(task.collection, q, k=k, mode=s.search_mode) for q in queries]

        lists = await asyncio.to_thread(search_all)
        by_id = {h.chunk_id: h for hits in lists for h in hits}
        fused = reciprocal_rank_fusion([[h.chunk_id for h in hits] for hits in lists])
        top = [by_id[cid] for cid, _ in fused[:k]]
        return [
            Evidence.from_hit(h, score=score, node_id=task.node_id) for h, (_, score) in zip(top, fused, strict=False)
        ]

    async def _read_with_model(self, task: NodeTask, queries: list[str], evidence: list[Evidence]) -> NodeResult:
        assert self.model is not None
        ordered = reorder_for_reader(evidence) if self.settings.reorder else evidence
        try:
            completion = await self.model.complete(
                prompts.reader_messages(task.question, task.parents, ordered), json_schema=prompts.READER_SCHEMA
            )
            payload = json.loads(completion.text)
            found = bool(payload["found"]) and bool(str(payload["answer"]).strip())
            used = [ordered[i - 1].chunk_id for i in payload.get("passages", []) if 1 <= int(i) <= len(ordered)]
        except (ValueError, KeyError, TypeError) as exc:
            raise LLMError(f"the reader's output for node {task.node_id} is unusable: {exc}") from exc
        return NodeResult(
            node_id=task.node_id,
            queries=queries,
            evidence=evidence,
            found=found,
            answer=str(payload["answer"]).strip() if found else None,
            evidence_ids=used if found else [],
            usage=completion.usage,
        )


class LocalExecutor:
    """Runs nodes in this process (the default)."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher

    async def run(self, task: NodeTask) -> NodeResult:
        return await self.searcher.run(task)
