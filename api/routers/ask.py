"""Search and questions: JSON, and a server-sent event stream of the agent's events."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import cast

from fastapi import APIRouter
from sse_starlette import EventSourceResponse

from quarry.agents.events import ErrorEvent, Event
from quarry.api.deps import CollectionName, PrincipalDep, ServicesDep, check_question, check_scope
from quarry.api.errors import status_for, status_named
from quarry.api.schemas import AnswerOut, AskRequest, SearchRequest, SearchResponse, error_responses
from quarry.core.errors import QuarryError

log = logging.getLogger("quarry.api")
router = APIRouter(prefix="/v1/collections", tags=["search"], responses=error_responses(401, 404, 422, 503))


@router.post("/{name}/search", response_model=SearchResponse)
async def search(
    name: CollectionName, body: SearchRequest, services: ServicesDep, principal: PrincipalDep
) -> SearchResponse:
    check_scope(principal, name)
    library = services.library.for_tenant(principal.tenant)
    hits = await asyncio.to_thread(
        library.search, name, body.query, body.k, body.document_ids, body.sources, body.mode, body.rerank
    )
    return SearchResponse(query=body.query, hits=hits)


@router.post("/{name}/ask", response_model=AnswerOut, responses=error_responses(502))
async def ask(name: CollectionName, body: AskRequest, services: ServicesDep, principal: PrincipalDep) -> AnswerOut:
    check_scope(principal, name)
    await asyncio.to_thread(services.library.for_tenant(principal.tenant).collection, name)  # 404 first
    question = check_question(body.question, services.settings.search.max_query_chars)
    async with services.ask_slots:
        answer = await services.agent(principal.tenant).ask(name, question)
    return AnswerOut.model_validate(answer.model_dump())


@router.post(
    "/{name}/ask/stream",
    response_class=EventSourceResponse,
    responses={200: {"description": "Server-sent events.", "content": {"text/event-stream": {}}}},
)
async def ask_stream(
    name: CollectionName, body: AskRequest, services: ServicesDep, principal: PrincipalDep
) -> EventSourceResponse:
    """Server-sent events: `plan`, `node_started`, `node_evidence`, `node_answer`, `token`,
    `citations`, then `done` (or `error`). Each event's data is one JSON object; a comment
    line (`: ping`) every `service.sse_ping_s` keeps the stream open while the planner
    thinks. A client that goes away stops the run."""
    check_scope(principal, name)
    agent = services.agent(principal.tenant)
    # fail before streaming when the collection or question is bad: a plain HTTP error
    agent.library.collection(name)
    question = check_question(body.question, services.settings.search.max_query_chars)

    async def events() -> AsyncIterator[dict[str, str]]:
        # on a disconnect EventSourceResponse cancels this generator; closing the run's
        # stream then cancels the run itself
        ended = False  # a `done` or `error` event was sent
        try:
            run = cast(AsyncGenerator[Event, None], agent.stream(name, question))  # an async generator
            async with services.ask_slots, aclosing(run):
                async for event in run:
                    if isinstance(event, ErrorEvent) and event.node_id is None:  # the run's own end
                        ended = True
                        yield _error(event.message, status_named(event.error), event.error)
                        continue
                    ended = ended or event.type == "done"
                    yield {"event": event.type, "data": event.model_dump_json()}
        except QuarryError as exc:
            yield _error(str(exc), status_for(exc), type(exc).__name__)
            return
        except Exception as exc:  # the status line is sent: the client must still learn the run failed
            log.exception("answer stream failed")
            yield _error(f"internal error: {type(exc).__name__}", 500)
            return
        if not ended:  # the run stopped without saying why: a client waiting for `done` must not hang
            log.error("the answer stream for collection %r ended without done or error", name)
            yield _error("the run stopped before it had an answer (an internal error; see the server's log)", 500)

    # "\n" line ends (the response's `sep` applies to dicts): the framing clients already read
    return EventSourceResponse(events(), ping=services.settings.service.sse_ping_s, sep="\n")


def _error(message: str, status: int, error: str | None = None) -> dict[str, str]:
    """An `error` event: the message and the HTTP status the error would have had."""
    event = ErrorEvent(message=message, error=error)
    return {"event": "error", "data": json.dumps({**event.model_dump(), "status": status})}
