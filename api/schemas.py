"""Request and response bodies of the REST API (separate from domain types)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from quarry.api.keys import KeyInfo, Right
from quarry.core.settings import MAX_QUERY_CHARS
from quarry.core.types import Citation, Evidence, Hit, PlanNode

# Tenant and collection names, everywhere (the X-Quarry-Tenant header, keys, paths, bodies);
# the same rule as retrieval's collection names.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_RULE = (
    "1-64 letters, digits, '_', '-' or '.', starting with a letter or digit; not null, none or undefined "
    "(what a client sends for a missing value)"
)
RESERVED_NAMES = frozenset({"null", "none", "undefined"})


def check_name(value: str) -> str:
    """A tenant or collection name is not a word clients write for a missing value."""
    if value.casefold() in RESERVED_NAMES:
        raise ValueError(f"{value!r} is not a name: {NAME_RULE}")
    return value


Name = Annotated[
    str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN, description=NAME_RULE), AfterValidator(check_name)
]
MIN_QUESTION_CHARS = 3  # what the planner accepts as a question (PlanNode.question)


def _aware(value: datetime) -> datetime:
    """Stored timestamps are UTC; SQLite returns them without a zone, so one is added."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, AfterValidator(_aware)]


class ErrorOut(BaseModel):
    """The body of every 4xx and 5xx answer."""

    detail: str | list[dict[str, Any]] | dict[str, Any] = Field(
        description="What went wrong: a message; a list of field errors (request validation); or, for a "
        "rejected upload, a message with one error per file."
    )
    error: str | None = Field(None, description="The error's type, when a Quarry error caused it.")


ERROR_TEXT = {
    400: "Bad request",
    401: "Missing, invalid or revoked API key",
    403: "The key may not do this (read-only, not admin, or outside its collections)",
    404: "Not found, or outside the key's tenant or collections",
    409: "Conflict with the current state",
    413: "Too large",
    415: "Unsupported file type",
    422: "Invalid input (request validation, or content that cannot be processed)",
    429: "Too many jobs queued; retry after the Retry-After header's seconds",
    502: "The language model failed",
    503: "Not configured or unavailable",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the ErrorOut body."""
    return {code: {"model": ErrorOut, "description": ERROR_TEXT.get(code, "Error")} for code in codes}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectionCreate(_In):
    name: Name = Field(examples=["papers"])


class CollectionOut(BaseModel):
    name: str
    created_at: Timestamp
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
    question: str = Field(
        min_length=1,
        description=f"{MIN_QUESTION_CHARS} to search.max_query_chars (at most {MAX_QUERY_CHARS}) characters; "
        "outside them, 422 with the limit.",
    )


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
    collection: Name
    questions: list[Annotated[str, Field(max_length=MAX_QUERY_CHARS)]] | None = Field(
        None, min_length=1, max_length=50, description=f"Each of {MIN_QUESTION_CHARS} characters or more."
    )
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
    created_at: Timestamp
    updated_at: Timestamp
    result: dict[str, Any] | None = None
    partial: dict[str, Any] | None = Field(None, description="Research: the report so far.")
    skipped: list[dict[str, str]] = Field(
        default_factory=list,
        description="Upload: files left out with skip_unsupported, each with the reason (in the 202 answer and "
        "in the job's status from then on).",
    )


class KeyCreate(_In):
    name: str = Field(min_length=1, max_length=128)
    tenant: Name
    collections: list[Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")]] = Field(
        default_factory=lambda: ["*"], min_length=1, description=f"`*` (every collection) or names: {NAME_RULE}."
    )
    rights: Right = Right.READ


class KeyOut(KeyInfo):
    created_at: Timestamp  # with its zone, always


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
