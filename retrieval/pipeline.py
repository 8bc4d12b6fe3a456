"""Hybrid retrieval: dense + BM25 → fusion (→ with the passage graph's Personalized PageRank in
graph mode) → near-duplicate removal → optional cross-encoder reranking → optional
reordering for a reader."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from quarry.core.settings import SearchSettings
from quarry.core.types import Hit
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.entities import query_keys
from quarry.retrieval.errors import InvalidQueryError
from quarry.retrieval.fusion import fuse_hybrid, reciprocal_rank_fusion
from quarry.retrieval.graph import PassageGraph, seeds_from_hits
from quarry.retrieval.indexes import CollectionIndex
from quarry.retrieval.reorder import reorder_for_reader
from quarry.retrieval.rerank import CrossEncoderReranker
from quarry.retrieval.storage import Store, StoredChunk


class SearchMode(StrEnum):
    HYBRID = "hybrid"
    DENSE = "dense"
    SPARSE = "sparse"
    GRAPH = "graph"  # hybrid, fused with Personalized PageRank over the passage graph


class HybridRetriever:
    """Retrieves typed hits from one collection's indexes."""

    def __init__(
        self,
        store: Store,
        embedder: SentenceEmbedder,
        settings: SearchSettings,
        reranker: CrossEncoderReranker | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker

    def validate(self, query: str) -> str:
        if not isinstance(query, str) or not query.strip():
            raise InvalidQueryError("the query is empty")
        if len(query) > self.settings.max_query_chars:
            raise InvalidQueryError(
                f"the query has {len(query)} characters; the limit is {self.settings.max_query_chars}"
            )
        return query.strip()

    def search(
        self,
        index: CollectionIndex,
        query: str,
        k: int,
        allowed: np.ndarray | None = None,
        mode: SearchMode = SearchMode.HYBRID,
        rerank: bool = True,
        reorder: bool = False,
        graph: PassageGraph | None = None,
    ) -> list[Hit]:
        query = self.validate(query)
        if k < 1:
            raise InvalidQueryError("k must be at least 1")
        n = max(self.settings.candidates, k)
        dense: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        sparse: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        if mode in (SearchMode.HYBRID, SearchMode.GRAPH, SearchMode.DENSE):
            vector = self.embedder.encode([query])[0]
            dense = index.search_dense(vector, n, allowed)
        if mode in (SearchMode.HYBRID, SearchMode.GRAPH, SearchMode.SPARSE):
            sparse = index.search_sparse(query, n, allowed)
        dense_of = dict(zip(dense[0].tolist(), dense[1].tolist(), strict=True))
        sparse_of = dict(zip(sparse[0].tolist(), sparse[1].tolist(), strict=True))
        if mode in (SearchMode.HYBRID, SearchMode.GRAPH):
            ranked, kind = fuse_hybrid(dense, sparse, self.settings)
            if mode is SearchMode.GRAPH and graph is not None:
                ranked, kind = self._with_graph(query, ranked, graph, n), "graph"
        elif mode is SearchMode.DENSE:
            ranked, kind = list(dense_of.items()), "dense"
        else:
            ranked, kind = list(sparse_of.items()), "bm25"
        wanted = max(k, self.settings.rerank_candidates if rerank and self.reranker is not None else 0)
        chunks: dict[int, StoredChunk] = {}
        kept: list[tuple[int, float]] = []
        start, step = 0, 2 * wanted + 8
        while len(kept) < wanted and start < len(ranked):
            # only as many candidates as the answer needs are read from the database
            window = ranked[start : start + step]
            fetched = self.store.chunks([cid for cid, _ in window], with_embeddings=True)
            chunks.update(fetched)
            kept = self._drop_near_duplicates(kept + [(c, s) for c, s in window if c in fetched], chunks)
            start += step
        ranked = kept
        rerank_of: dict[int, float] = {}
        if rerank and self.reranker is not None and ranked:
            head = ranked[: max(k, self.settings.rerank_candidates)]
            probs = self.reranker.score(query, [chunks[cid].context_text for cid, _ in head])
            rerank_of = {cid: float(p) for (cid, _), p in zip(head, probs, strict=True)}
            ranked = sorted(rerank_of.items(), key=lambda kv: (-kv[1], kv[0]))
            kind = "rerank"
        hits = [
            _hit(chunks[cid], score, kind, rank, dense_of.get(cid), sparse_of.get(cid), rerank_of.get(cid))
            for rank, (cid, score) in enumerate(ranked[:k], start=1)
        ]
        return reorder_for_reader(hits) if reorder else hits

    def _with_graph(
        self, query: str, ranked: list[tuple[int, float]], graph: PassageGraph, n: int
    ) -> list[tuple[int, float]]:
        """The hybrid list fused with a Personalized PageRank walk seeded by the question's
        entities and the first hybrid hits."""
        entities = {key: 1.0 for key in query_keys(query, graph.entity_of_key)}
        walk = graph.rank(
            seeds_from_hits(ranked, self.settings.graph_seed_hits), entities, n, self.settings.graph_damping
        )
        return reciprocal_rank_fusion([[c for c, _ in ranked[:n]], [c for c, _ in walk]], k=self.settings.rrf_k)

    def _drop_near_duplicates(
        self, ranked: list[tuple[int, float]], chunks: dict[int, StoredChunk]
    ) -> list[tuple[int, float]]:
        """Keep the best of any group of hits whose embeddings are near-identical."""
        if len(ranked) < 2 or self.settings.dedup_threshold >= 1.0:
            return ranked
        vectors = np.stack([_vector(chunks[cid]) for cid, _ in ranked])  # (n, dim)
        similar = (vectors @ vectors.T) >= self.settings.dedup_threshold  # (n, n)
        kept: list[int] = []
        for i in range(len(ranked)):
            if not kept or not similar[i, kept].any():
                kept.append(i)
        return [ranked[i] for i in kept]


def _vector(chunk: StoredChunk) -> np.ndarray:
    assert chunk.embedding is not None, "chunks for de-duplication are read with their embeddings"
    return chunk.embedding


def _hit(
    chunk: StoredChunk,
    score: float,
    kind: str,
    rank: int,
    dense: float | None,
    sparse: float | None,
    rerank: float | None,
) -> Hit:
    return Hit(
        chunk_id=chunk.id,
        document_id=chunk.document_id,
        document=chunk.document,
        title=chunk.title,
        text=chunk.text,
        start_char=chunk.start_char,
        end_char=chunk.end_char,
        score=float(score),
        score_kind=kind,
        rank=rank,
        dense_score=dense,
        sparse_score=sparse,
        rerank_score=rerank,
        heading=chunk.heading,
        metadata=chunk.metadata,
    )
