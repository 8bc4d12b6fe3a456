"""The long-document reader: when a searcher node's evidence comes mostly from one long
document, the node is answered by reading that whole document with the memory engine
(`memory.LongContextEngine`: Squeezed Attention over the document's cached context, or
InfLLM memory units) instead of only the retrieved passages.

Nothing heavy happens at import; the engine (and its model) is passed in, or built from
settings on first use."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from quarry.agents.searcher import NodeResult, NodeTask
from quarry.core.chat import ChatModel, Usage
from quarry.core.settings import MemorySettings, Settings
from quarry.core.types import Evidence
from quarry.retrieval.storage import Store

if TYPE_CHECKING:
    from quarry.memory.engine import LongContextEngine

CITED_PASSAGES = 3  # evidence chunks of the document cited with a whole-document answer


class LongDocumentReader:
    """Answers one node from one long document."""

    def __init__(
        self,
        store: Store,
        settings: MemorySettings,
        engine: LongContextEngine | None = None,
        engine_factory: Callable[[], LongContextEngine] | None = None,
    ) -> None:
        if engine is None and engine_factory is None:
            raise ValueError("LongDocumentReader needs an engine or an engine factory")
        self.store = store
        self.settings = settings
        self._engine = engine
        self._factory = engine_factory
        self._engine_lock = threading.Lock()
        self._lengths: dict[tuple[int, int], int] = {}  # (document id, text length) -> model tokens

    @property
    def engine(self) -> LongContextEngine:
        """The engine, built by the factory on first use (once, whichever thread comes first)."""
        with self._engine_lock:
            if self._engine is None:
                assert self._factory is not None
                self._engine = self._factory()
            return self._engine

    async def target(self, evidence: Sequence[Evidence]) -> int | None:
        """The document the evidence points at, when at least `target_share` of it comes
        from one document of at least `min_document_tokens` tokens; else None."""
        if not evidence:
            return None
        document_id, count = Counter(e.document_id for e in evidence).most_common(1)[0]
        if count / len(evidence) < self.settings.target_share:
            return None
        text = await asyncio.to_thread(self.store.document_text, document_id)
        key = (document_id, len(text))
        if key not in self._lengths:
            self._lengths[key] = await asyncio.to_thread(self._count_tokens, text)
        return document_id if self._lengths[key] >= self.settings.min_document_tokens else None

    async def read(self, task: NodeTask, queries: list[str], evidence: list[Evidence], document_id: int) -> NodeResult:
        """The node's answer from the whole document (the evidence stays as retrieved;
        the first passages of that document are cited)."""
        from quarry.memory.prompts import NOT_FOUND

        text = await asyncio.to_thread(self.store.document_text, document_id)
        question = task.question
        known = [f"{p.question} {p.answer}" for p in task.parents if p.answer]
        if known:
            question += "\nKnown: " + " ".join(known)
        answer_text, usage = await self._answer(text, question)
        found = bool(answer_text) and NOT_FOUND not in answer_text.upper()
        cited = [e.chunk_id for e in evidence if e.document_id == document_id][:CITED_PASSAGES]
        return NodeResult(
            node_id=task.node_id,
            queries=queries,
            evidence=evidence,
            found=found,
            answer=answer_text if found else None,
            evidence_ids=cited if found else [],
            usage=usage,
        )

    def _count_tokens(self, text: str) -> int:
        return int(self.engine.count_tokens(text))

    async def _answer(self, text: str, question: str) -> tuple[str, Usage]:
        answer = await asyncio.to_thread(
            self.engine.answer,
            text,
            question,
            mechanism=self.settings.mechanism,
            max_new_tokens=self.settings.max_new_tokens,
        )
        return answer.text, Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)


class PrefixCacheReader(LongDocumentReader):
    """The same whole-document reading with a served model (a vLLM server, or in-process
    vLLM): the document is laid out first and byte-identical, the question last, so the
    server's prefix cache serves the document after its first question; the usage reports
    how many prompt tokens were cache hits."""

    def __init__(self, store: Store, settings: MemorySettings, model: ChatModel) -> None:
        self.store = store
        self.settings = settings
        self.model = model
        self._lengths: dict[tuple[int, int], int] = {}
        self._engine = None
        self._factory = None

    def _count_tokens(self, text: str) -> int:
        return len(text.split()) * 4 // 3  # about 4 tokens per 3 words of English; only a threshold

    async def _answer(self, text: str, question: str) -> tuple[str, Usage]:
        from quarry.memory.prefix import ask_with_prefix_cache

        reply = await ask_with_prefix_cache(self.model, text, question, max_tokens=self.settings.max_new_tokens)
        return reply.completion.text.strip(), reply.completion.usage


def make_memory_engine(settings: Settings, model: ChatModel | None) -> LongContextEngine:
    """The memory engine. Over an hf chat model it reads with that model's own weights and
    tokenizer (loaded once, by whichever of the two needs them first) and shares its
    generation lock; otherwise it loads `settings.llm.model` itself."""
    from quarry.agents.llm.hf import HFChatModel
    from quarry.memory.engine import LongContextEngine

    if isinstance(model, HFChatModel):
        weights, tokenizer = model.load()
        return LongContextEngine.from_settings(settings, weights, tokenizer, lock=model.generation_lock)
    return LongContextEngine.from_settings(settings)


def make_long_reader(
    settings: Settings,
    store: Store,
    model: ChatModel | None,
    engine_factory: Callable[[], LongContextEngine] | None = None,
) -> LongDocumentReader | None:
    """The whole-document reader the configured generator supports: the memory engine for
    in-process transformers models, prefix caching for vLLM/OpenAI-compatible servers, none
    in extractive mode."""
    if model is None or settings.llm.backend == "extractive":
        return None
    if settings.llm.backend == "hf":
        return LongDocumentReader(
            store, settings.memory, engine_factory=engine_factory or (lambda: make_memory_engine(settings, model))
        )
    return PrefixCacheReader(store, settings.memory, model)
