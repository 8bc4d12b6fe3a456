"""Domain types that cross package boundaries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    PARSING = "parsing"
    CHUNKING = "chunking"
    EMBEDDING = "embedding"
    INDEXED = "indexed"
    FAILED = "failed"


class SourceDocument(BaseModel):
    """A document as a loader produced it: text plus what we know of its origin."""

    model_config = ConfigDict(frozen=True)

    source: str = Field(description="File name relative to the ingested root, or a given name.")
    title: str
    text: str
    media_type: str
    content_hash: str = Field(description="sha256 of the original bytes (or of the text given).")
    size_bytes: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class Chunk(BaseModel):
    """A span of a document's text, the unit of retrieval and citation."""

    ordinal: int
    text: str
    start_char: int = Field(ge=0, description="Offset of the chunk's first character in the document text.")
    end_char: int = Field(ge=0, description="Offset one past the chunk's last character.")
    token_count: int
    heading: str = Field("", description="Title and heading path the chunk sits under.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def context_text(self) -> str:
        """What gets embedded and indexed: the heading context followed by the text."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


class CollectionInfo(BaseModel):
    id: int
    name: str
    created_at: datetime
    document_count: int = 0
    chunk_count: int = 0
    index_kind: str = "flat"


class DocumentInfo(BaseModel):
    id: int
    collection: str
    source: str
    title: str
    media_type: str
    content_hash: str
    status: DocumentStatus
    error: str | None = None
    size_bytes: int = 0
    chunk_count: int = 0
    created_at: datetime
    updated_at: datetime


class Hit(BaseModel):
    """One retrieved chunk. `score` is higher-is-better everywhere; its scale depends on
    `score_kind` (fused: convex fusion of normalised dense and BM25 scores, rrf: reciprocal
    rank fusion, graph: RRF of hybrid and Personalized PageRank, rerank: cross-encoder
    probability in [0, 1], dense: cosine similarity, bm25: BM25 over the whole collection's
    statistics)."""

    chunk_id: int
    document_id: int
    document: str = Field(description="The document's source name or given title.")
    title: str
    text: str
    start_char: int
    end_char: int
    score: float
    score_kind: str
    rank: int = Field(ge=1)
    dense_score: float | None = None
    sparse_score: float | None = None
    rerank_score: float | None = None
    heading: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentFailure(BaseModel):
    source: str
    error: str


class IngestReport(BaseModel):
    """What one ingestion call did, document by document."""

    collection: str
    added: list[str] = Field(default_factory=list)
    replaced: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    failed: list[DocumentFailure] = Field(default_factory=list)
    skipped: list[DocumentFailure] = Field(
        default_factory=list, description="Files left out on purpose (unsupported types, when asked to skip them)."
    )
    chunks: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


class NodeState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    NOT_FOUND = "not_found"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (NodeState.DONE, NodeState.NOT_FOUND, NodeState.FAILED)


class Evidence(BaseModel):
    """A passage a searcher read, with where it came from."""

    chunk_id: int
    document_id: int
    document: str
    title: str
    text: str
    start_char: int
    end_char: int
    score: float
    node_id: str | None = None
    heading: str = Field("", description="Title and heading path the passage sits under.")

    @classmethod
    def from_hit(cls, hit: Hit, score: float | None = None, node_id: str | None = None) -> Evidence:
        """The passage of a retrieval hit, with the hit's score unless another is given."""
        return cls(
            chunk_id=hit.chunk_id,
            document_id=hit.document_id,
            document=hit.document,
            title=hit.title,
            text=hit.text,
            start_char=hit.start_char,
            end_char=hit.end_char,
            score=hit.score if score is None else score,
            node_id=node_id,
            heading=hit.heading,
        )


class PlanNode(BaseModel):
    """One sub-question of a plan."""

    id: str
    question: str
    parents: list[str] = Field(default_factory=list)
    state: NodeState = NodeState.WAITING
    depth: int = 0
    queries: list[str] = Field(default_factory=list)
    answer: str | None = None
    evidence_ids: list[int] = Field(default_factory=list)
    error: str | None = None
    seconds: float | None = None
    worker: str | None = Field(None, description="Where the node ran, when on a remote worker.")


class Citation(BaseModel):
    """What a `[n]` marker in an answer points at."""

    n: int = Field(ge=1)
    chunk_id: int
    document_id: int
    document: str
    title: str
    start_char: int
    end_char: int
    snippet: str
    span_start: int | None = Field(None, description="Offset of the cited sentence in the document, if known.")
    span_end: int | None = None


class Answer(BaseModel):
    """A cited answer to a question, with the plan and everything gathered for it."""

    question: str
    collection: str
    answer: str
    short_answer: str | None = Field(None, description="The bare answer (a name, date, yes/no) when one was found.")
    citations: list[Citation] = Field(default_factory=list)
    nodes: list[PlanNode] = Field(default_factory=list)
    edges: list[tuple[str, str]] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    unsupported: list[str] = Field(default_factory=list, description="Answer sentences no citation supports.")
    extractive: bool = False
    partial: bool = Field(False, description="True when a budget ran out and the answer uses what was gathered.")
    notes: list[str] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int | None = Field(None, description="Prompt tokens the server's prefix cache served.")
    timings: dict[str, float] = Field(default_factory=dict)
