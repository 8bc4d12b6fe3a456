"""Request and response bodies of the REST API (separate from domain types)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from quarry.api.keys import Right
from quarry.core.settings import MAX_QUERY_CHARS
from quarry.core.types import Citation, Evidence, Hit, PlanNode


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectionCreate(_In):
    name: str = Field(min_length=1, max_length=64, examples=["papers"])


class CollectionOut(BaseModel):
    name: str
    created_at: datetime
    document_count: int
    chunk_count: int
    index_kind: str


class TextDocument(_In):
    name: str = Field(min_length=1, max_length=512, description="Source name of the document.")
    text: str = Field(min_length=1)
    title: str | None = Field(None, max_length=1000)


class TextDocuments(_In):
    documents: list[TextDocument] = Field(min_length=1, max_length=10_000)


class SearchRequest(_In):
    query: str = Field(min_length=1)
    k: int = Field(10, ge=1, le=200)
    mode: Literal["hybrid", "dense", "sparse", "graph"] | None = Field(
        None,
        description="hybrid, dense, sparse or graph (Personalized PageRank over the passage graph, fused "
        "with hybrid); default: the service's search.mode.",
    )
    document_ids: list[int] | None = None
    sources: list[str] | None = Field(None, description="Source names; `*` is a wildcard.")
    rerank: bool = True


class SearchResponse(BaseModel):
    query: str
    hits: list[Hit]


class AskRequest(_In):
    question: str = Field(min_length=1)


class AnswerOut(BaseModel):
    question: str
    answer: str
    short_answer: str | None
    citations: list[Citation]
    nodes: list[PlanNode]
    edges: list[tuple[str, str]]
    evidence: list[Evidence]
    unsupported: list[str]
    extractive: bool
    partial: bool
    notes: list[str]
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int | None = None
    timings: dict[str, float]


class ResearchCreate(_In):
    collection: str = Field(min_length=1, max_length=64)
    questions: list[Annotated[str, Field(max_length=MAX_QUERY_CHARS)]] | None = Field(None, min_length=1, max_length=50)
    topic: str | None = Field(None, min_length=1, max_length=1000)
    sections: int = Field(5, ge=1, le=12, description="Sections planned for a topic.")


class JobOut(BaseModel):
    id: str
    kind: str
    collection: str
    label: str = Field("", description="What the job is about: a research topic or first question, or the files.")
    status: str
    done: int
    total: int
    progress: float
    error: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    result: dict[str, Any] | None = None
    partial: dict[str, Any] | None = Field(None, description="Research: the report so far.")


class KeyCreate(_In):
    name: str = Field(min_length=1, max_length=128)
    tenant: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    collections: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    rights: Right = Right.READ


class KeyCreated(BaseModel):
    id: str
    name: str
    tenant: str
    collections: list[str]
    rights: Right
    token: str = Field(description="Shown once; only its hash is stored.")


class WhoAmI(BaseModel):
    tenant: str
    collections: list[str]
    rights: Right
    admin: bool
    write: bool = Field(description="The key may create, upload and delete.")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    redis: bool
    workers: int
    details: dict[str, str] = Field(default_factory=dict)
