"""Domain errors → HTTP statuses with clear bodies (the only place that maps them)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from quarry.agents.errors import AgentError, LLMError
from quarry.core.errors import ConfigurationError, QuarryError
from quarry.retrieval.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    DocumentError,
    DocumentNotFoundError,
    DocumentTooLargeError,
    InvalidNameError,
    InvalidQueryError,
    UnsupportedTypeError,
)
from quarry.workers.broker import BrokerUnavailableError, QueueFullError
from quarry.workers.jobs import JobNotFoundError

STATUS: list[tuple[type[Exception], int]] = [
    (CollectionNotFoundError, 404),
    (DocumentNotFoundError, 404),
    (JobNotFoundError, 404),
    (CollectionExistsError, 409),
    (InvalidNameError, 400),
    (InvalidQueryError, 400),
    (DocumentTooLargeError, 413),
    (UnsupportedTypeError, 415),
    (DocumentError, 422),
    (LLMError, 502),
    (AgentError, 500),
    (ConfigurationError, 503),
    (BrokerUnavailableError, 503),
    (QueueFullError, 429),
]


def status_for(exc: Exception) -> int:
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 500)


def install(app: FastAPI) -> None:
    @app.exception_handler(QuarryError)
    async def quarry_error(_request: Request, exc: QuarryError) -> JSONResponse:
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is None and isinstance(exc, BrokerUnavailableError):
            retry_after = 5
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return JSONResponse(
            {"detail": str(exc), "error": type(exc).__name__}, status_code=status_for(exc), headers=headers
        )
