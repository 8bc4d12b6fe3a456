"""The llama-index baseline: what a user would reach for instead of Quarry, with the same
embedding model. Shared by `quarry eval` and benchmarks/retrieval_quality.py.

llama-index's default `VectorStoreIndex.from_documents` (default node parser, in-memory
vector store) and `as_retriever(similarity_top_k=...)`. The title is document metadata,
embedded as llama-index does by default; the passage id is metadata kept out of the
embedded and LLM text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quarry.core.errors import ConfigurationError


@dataclass(frozen=True)
class BaselinePassage:
    """A document to index: id, title and text."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class RetrievedNode:
    """One retrieved llama-index node, mapped back to the passage it came from."""

    passage_id: str
    node_id: str
    title: str
    text: str
    score: float


class LlamaIndexRetriever:
    """llama-index's default vector retriever. `build` indexes passages (or loads an index
    of them persisted earlier); the embedding model loads on construction."""

    def __init__(self, model_path: str, batch_size: int = 64, top_k: int = 30, device: str | None = None) -> None:
        try:
            from llama_index.embeddings.huggingface import HuggingFaceEmbedding
        except ImportError as exc:
            raise ConfigurationError(
                "the llama-index baseline needs llama-index-core and llama-index-embeddings-huggingface "
                "(pip install 'quarry[dev]')"
            ) from exc
        kwargs: dict[str, Any] = {"device": device} if device else {}
        self.embed = HuggingFaceEmbedding(model_name=model_path, embed_batch_size=batch_size, **kwargs)
        self.top_k = top_k
        self._retriever: Any = None

    def build(self, passages: Sequence[BaselinePassage], persist_dir: Path | None = None) -> bool:
        """Index the passages, or load the index persisted in `persist_dir` by an earlier
        build (the caller keys the folder by the passages). True when loaded."""
        from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage

        if persist_dir is not None and (persist_dir / "docstore.json").is_file():
            storage = StorageContext.from_defaults(persist_dir=str(persist_dir))
            index = load_index_from_storage(storage, embed_model=self.embed)
            self._retriever = index.as_retriever(similarity_top_k=self.top_k)
            return True
        docs = [
            Document(
                text=p.text,
                metadata={"title": p.title, "passage_id": p.id},
                excluded_embed_metadata_keys=["passage_id"],
                excluded_llm_metadata_keys=["passage_id"],
            )
            for p in passages
        ]
        index = VectorStoreIndex.from_documents(docs, embed_model=self.embed)
        if persist_dir is not None:
            persist_dir.mkdir(parents=True, exist_ok=True)
            index.storage_context.persist(persist_dir=str(persist_dir))
        self._retriever = index.as_retriever(similarity_top_k=self.top_k)
        return False

    def warm_up(self) -> None:
        """Load the embedding model (so that timing an index build leaves it out)."""
        self.embed.get_text_embedding("warm-up")

    def retrieve(self, question: str) -> list[RetrievedNode]:
        """The top_k nodes, best first."""
        return [
            RetrievedNode(
                passage_id=str(n.node.metadata["passage_id"]),
                node_id=str(n.node.node_id),
                title=str(n.node.metadata.get("title", "")),
                text=n.node.get_content(),
                score=float(n.score or 0.0),
            )
            for n in self.retriever.retrieve(question)
        ]

    @property
    def retriever(self) -> Any:
        if self._retriever is None:
            raise RuntimeError("LlamaIndexRetriever.build has not been called")
        return self._retriever

    def ranked_passages(self, question: str, depth: int) -> list[str]:
        """The first `depth` distinct passage ids, best first."""
        from quarry.evals.metrics import distinct

        return distinct((n.passage_id for n in self.retrieve(question)), depth)
