"""Domain errors → HTTP statuses with clear bodies (the only place that maps them)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
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
    (InvalidNameError, 422),  # well-formed requests whose names or queries break the rules
    (InvalidQueryError, 422),
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


def status_named(name: str | None) -> int:
    """The status of a Quarry error known by its type's name only (the `error` of an agent's
    error event); 500 for any other name."""
    kinds: list[type[Exception]] = [QuarryError]
    while kinds:
        kind = kinds.pop()
        if kind.__name__ == name:
            return next((code for known, code in STATUS if issubclass(kind, known)), 500)
        kinds.extend(kind.__subclasses__())
    return 500


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

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            app.openapi_schema = document_errors(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# What every operation that takes a key may answer, whatever its route declares: no or a bad
# key (401), a key without the right (403), outside its tenant or collections (404, where the
# path or body names something), and invalid input (422, which FastAPI documents with a body
# shape that our own 422s lack).
KEYED_ERRORS = (401, 403, 404, 422)


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Every 4xx the API returns, in the OpenAPI schema with its body (ErrorOut)."""
    from pydantic.json_schema import models_json_schema

    from quarry.api.schemas import ERROR_TEXT, ErrorOut

    _, defs = models_json_schema([(ErrorOut, "serialization")], ref_template="#/components/schemas/{model}")
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            params = operation.get("parameters", [])
            keyed = any(p.get("in") == "header" and p.get("name") == "authorization" for p in params)
            names_something = any(p.get("in") == "path" for p in params) or "requestBody" in operation
            codes = tuple(c for c in KEYED_ERRORS if c != 404 or names_something) if keyed else ()
            if params or "requestBody" in operation:
                codes = (*codes, 422) if 422 not in codes else codes
            responses = operation.setdefault("responses", {})
            for code in codes:
                entry = responses.setdefault(str(code), {"description": ERROR_TEXT[code]})
                if code == 422 or "content" not in entry:
                    entry.update(description=ERROR_TEXT[code], content=body)
    rest = json.dumps({k: v for k, v in schema.items() if k != "components"})
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, replaced by ErrorOut
        if f"#/components/schemas/{name}" not in rest:
            schemas.pop(name, None)
    return schema
