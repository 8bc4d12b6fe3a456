"""The systems compared side by side: single-shot retrieve-then-read over Quarry's dense,
BM25 and hybrid retrieval and over llama-index's default vector retriever, and the agent
graph. Each answers one item and reports what it retrieved, what it cited and how long
each stage took."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from quarry.agents.events import discard
from quarry.agents.graph import AgentGraph
from quarry.agents.reader import ExtractiveReader
from quarry.agents.searcher import LocalExecutor, NodeResult, NodeTask, Searcher
from quarry.agents.writer import EXTRACTIVE_NOTE, NOT_FOUND, Writer
from quarry.core.chat import ChatModel
from quarry.core.settings import AgentSettings, Settings
from quarry.core.types import Evidence, NodeState, PlanNode
from quarry.evals.baselines import BaselinePassage, LlamaIndexRetriever
from quarry.evals.errors import EvalError
from quarry.evals.types import QAItem
from quarry.retrieval.library import Library
from quarry.retrieval.reorder import reorder_for_reader

BASE_SYSTEMS = ("dense", "bm25", "hybrid", "graph", "llamaindex", "agent")
_ALIASES = {"sparse": "bm25", "llama-index": "llamaindex"}
_SUFFIXES = ("-no-rerank", "-no-reorder")
_MARKER = re.compile(r"\s*\[\d{1,3}\]")

Retrieve = Callable[[str, str], list[Evidence]]  # (question, collection) -> passages, best first


class Prediction(BaseModel):
    """What a system did for one item."""

    ranked: list[Evidence] = Field(description="Retrieved passages, best first.")
    answer: str = Field(description="The answer text, citation markers and notes removed.")
    short_answer: str | None = None
    cited: list[Evidence] = Field(default_factory=list, description="The passages the answer cites.")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage, and total.")
    prompt_tokens: int = 0
    completion_tokens: int = 0


class System(Protocol):
    name: str

    async def answer(self, item: QAItem, collection: str) -> Prediction: ...


@dataclass(frozen=True)
class SystemSpec:
    """A system name: a base system, optionally with reranking or reordering switched off."""

    base: str
    rerank: bool = True
    reorder: bool = True

    @property
    def name(self) -> str:
        return self.base + ("" if self.rerank else "-no-rerank") + ("" if self.reorder else "-no-reorder")


def parse_system(text: str, rerank: bool = True, reorder: bool = True) -> SystemSpec:
    """`hybrid`, `agent-no-rerank`, `dense-no-reorder`, ... ; the flags switch off for all."""
    name = text.strip().lower()
    while suffix := next((s for s in _SUFFIXES if name.endswith(s)), None):
        name = name[: -len(suffix)]
        rerank = rerank and suffix != "-no-rerank"
        reorder = reorder and suffix != "-no-reorder"
    name = _ALIASES.get(name, name)
    if name not in BASE_SYSTEMS:
        raise EvalError(
            f"unknown system {text!r}: use {', '.join(BASE_SYSTEMS)}, optionally with -no-rerank or -no-reorder"
        )
    return SystemSpec(name, rerank, reorder)


def default_systems() -> list[str]:
    """Every base system; llama-index's only where its HuggingFace embeddings are installed
    (the `dev` extra)."""
    import importlib.util

    try:
        have_llama = importlib.util.find_spec("llama_index.embeddings.huggingface") is not None
    except ModuleNotFoundError:
        have_llama = False
    return [s for s in BASE_SYSTEMS if s != "llamaindex" or have_llama]


def clean_answer(text: str) -> str:
    """An answer without citation markers or the extractive note."""
    return _MARKER.sub("", text.replace(EXTRACTIVE_NOTE, "")).strip()


def library_retrieve(library: Library, mode: str, rerank: bool, fetch: int) -> Retrieve:
    """Quarry's `Library.search` in one mode, `fetch` hits in rank order."""

    def retrieve(question: str, collection: str) -> list[Evidence]:
        hits = library.search(collection, question, k=fetch, mode=mode, rerank=rerank)
        return [Evidence.from_hit(h) for h in hits]

    return retrieve


class SingleShot:
    """Retrieve once, read the top passages (extractive reader, or the writer with a chat
    model), cite what the answer rests on."""

    def __init__(
        self,
        name: str,
        retrieve: Retrieve,
        reader: ExtractiveReader,
        settings: Settings,
        reorder: bool = True,
        model: ChatModel | None = None,
    ) -> None:
        self.name = name
        self.retrieve = retrieve
        self.reader = reader
        self.settings = settings
        self.reorder = reorder
        self.model = model
        self.writer = Writer(reader, model) if model is not None else None

    async def answer(self, item: QAItem, collection: str) -> Prediction:
        started = time.perf_counter()
        ranked = await asyncio.to_thread(self.retrieve, item.question, collection)
        retrieved = time.perf_counter()
        top = ranked[: self.settings.agents.evidence_per_node]
        passages = reorder_for_reader(top) if self.reorder else list(top)
        timings = {"retrieve": retrieved - started}
        if self.writer is None:
            reading = await asyncio.to_thread(
                self.reader.read, item.question, passages, self.settings.agents.answer_sentences
            )
            timings["read"] = time.perf_counter() - retrieved
            timings["total"] = time.perf_counter() - started
            if not reading.found:
                return Prediction(ranked=ranked, answer=NOT_FOUND, timings=timings)
            return Prediction(
                ranked=ranked,
                answer=" ".join(s.text for s in reading.sentences),
                short_answer=reading.answer,
                cited=[passages[s.evidence] for s in reading.sentences[:1]],
                timings=timings,
            )
        node = PlanNode(id="n1", question=item.question, state=NodeState.DONE if passages else NodeState.NOT_FOUND)
        draft = await self.writer.write(item.question, [node], {"n1": passages}, discard)
        checked = self.writer.check(draft)
        timings["write"] = time.perf_counter() - retrieved
        timings["total"] = time.perf_counter() - started
        by_chunk = {p.chunk_id: p for p in passages}
        return Prediction(
            ranked=ranked,
            answer=clean_answer(checked.text),
            short_answer=draft.short_answer,
            cited=[by_chunk[c.chunk_id] for c in checked.citations if c.chunk_id in by_chunk],
            timings=timings,
            prompt_tokens=draft.usage.prompt_tokens,
            completion_tokens=draft.usage.completion_tokens,
        )


@dataclass
class _Clock:
    retrieve: float = 0.0
    nodes: float = 0.0


class _TimedSearcher(Searcher):
    """The agents' searcher, timing its retrieval and its whole node runs (summed over the
    nodes of a question; nodes that run at once overlap)."""

    def __init__(
        self, library: Library, settings: AgentSettings, reader: ExtractiveReader, model: ChatModel | None
    ) -> None:
        super().__init__(library, settings, reader, model)
        self.clock = _Clock()

    async def run(self, task: NodeTask) -> NodeResult:
        started = time.perf_counter()
        try:
            return await super().run(task)
        finally:
            self.clock.nodes += time.perf_counter() - started

    async def _retrieve(self, task: NodeTask, queries: list[str]) -> list[Evidence]:
        started = time.perf_counter()
        try:
            return await super()._retrieve(task, queries)
        finally:
            self.clock.retrieve += time.perf_counter() - started


class AgentSystem:
    """The agent graph (plan → execute → write), answering one question at a time."""

    def __init__(self, name: str, library: Library, settings: Settings, model: ChatModel | None = None) -> None:
        self.name = name
        reader = ExtractiveReader.for_library(library)
        self.searcher = _TimedSearcher(library, settings.agents, reader, model)
        self.graph = AgentGraph(library, settings=settings, model=model, executor=LocalExecutor(self.searcher))

    async def answer(self, item: QAItem, collection: str) -> Prediction:
        self.searcher.clock = _Clock()
        answer = await self.graph.ask(collection, item.question)
        clock = self.searcher.clock
        evidence = {e.chunk_id: e for e in answer.evidence}
        timings = {
            "plan": answer.timings.get("plan", 0.0),
            "retrieve": clock.retrieve,
            "read": max(0.0, clock.nodes - clock.retrieve),
            "write": answer.timings.get("write", 0.0),
            "total": answer.timings.get("total", 0.0),
        }
        return Prediction(
            ranked=list(answer.evidence),  # the agent's own ranking, cut to its evidence budget
            answer=clean_answer(answer.answer),
            short_answer=answer.short_answer,
            cited=[evidence[c.chunk_id] for c in answer.citations if c.chunk_id in evidence],
            timings=timings,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
        )


class LlamaIndexRetrieve:
    """llama-index's default vector retriever, one index per collection, built on first
    use (or loaded from `cache_dir`, keyed by `cache_key(collection)`)."""

    def __init__(
        self,
        passages_of: Callable[[str], list[BaselinePassage]],
        model_path: str,
        batch_size: int,
        fetch: int,
        cache_dir: Path | None = None,
        cache_key: Callable[[str], str] | None = None,
        device: str | None = None,
    ) -> None:
        self.passages_of = passages_of
        self.model_path = model_path
        self.batch_size = batch_size
        self.fetch = fetch
        self.cache_dir = cache_dir
        self.cache_key = cache_key or (lambda c: c)
        self.device = device
        self._retrievers: dict[str, LlamaIndexRetriever] = {}
        self._ids: dict[str, int] = {}

    def prepare(self, collection: str) -> None:
        """Build (or load) the index of a collection now."""
        if collection in self._retrievers:
            return
        retriever = LlamaIndexRetriever(self.model_path, self.batch_size, self.fetch, self.device)
        persist = self.cache_dir / self.cache_key(collection) if self.cache_dir is not None else None
        retriever.build(self.passages_of(collection), persist)
        self._retrievers[collection] = retriever

    def __call__(self, question: str, collection: str) -> list[Evidence]:
        self.prepare(collection)
        out = []
        for node in self._retrievers[collection].retrieve(question):
            chunk_id = self._ids.setdefault(node.node_id, len(self._ids) + 1)
            out.append(
                Evidence(
                    chunk_id=chunk_id,
                    document_id=0,
                    document=node.passage_id,
                    title=node.title,
                    text=node.text,
                    start_char=0,
                    end_char=len(node.text),
                    score=node.score,
                )
            )
        return out
