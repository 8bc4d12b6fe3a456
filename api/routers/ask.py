"""Search and questions: JSON, and a server-sent event stream of the agent's events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from quarry.agents.events import ErrorEvent
from quarry.api.deps import PrincipalDep, ServicesDep, check_scope
from quarry.api.errors import status_for
from quarry.api.schemas import AnswerOut, AskRequest, SearchRequest, SearchResponse
from quarry.core.errors import QuarryError

router = APIRouter(prefix="/v1/collections", tags=["search"])


@router.post("/{name}/search", response_model=SearchResponse)
async def search(name: str, body: SearchRequest, services: ServicesDep, principal: PrincipalDep) -> SearchResponse:
    check_scope(principal, name)
    library = services.library.for_tenant(principal.tenant)
    hits = await asyncio.to_thread(
        library.search, name, body.query, body.k, body.document_ids, body.sources, body.mode, body.rerank
    )
    return SearchResponse(query=body.query, hits=hits)


@router.post("/{name}/ask", response_model=AnswerOut)
async def ask(name: str, body: AskRequest, services: ServicesDep, principal: PrincipalDep) -> AnswerOut:
    check_scope(principal, name)
    async with services.ask_slots:
        answer = await services.agent(principal.tenant).ask(name, body.question)
    return AnswerOut.model_validate(answer.model_dump())


@router.post("/{name}/ask/stream")
async def ask_stream(
    name: str, body: AskRequest, request: Request, services: ServicesDep, principal: PrincipalDep
) -> StreamingResponse:
    """Server-sent events: `plan`, `node_started`, `node_evidence`, `node_answer`, `token`,
    `citations`, then `done` (or `error`). Each event's data is one JSON object."""
    check_scope(principal, name)
    agent = services.agent(principal.tenant)
    # fail before streaming when the collection or question is bad: a plain HTTP error
    agent.library.collection(name)
    agent.library.retriever.validate(body.question)

    async def events() -> AsyncIterator[str]:
        try:
            async with services.ask_slots:
                async for event in agent.stream(name, body.question):
                    if await request.is_disconnected():
                        break
                    yield f"event: {event.type}\ndata: {event.model_dump_json()}\n\n"
        except QuarryError as exc:
            error = ErrorEvent(message=str(exc))
            yield f"event: error\ndata: {json.dumps({**error.model_dump(), 'status': status_for(exc)})}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
