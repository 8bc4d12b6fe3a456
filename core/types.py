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
    `score_kind` (rrf: reciprocal rank fusion, rerank: cross-encoder probability in [0, 1],
    dense: cosine similarity, sparse: BM25)."""

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
    chunks: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed
