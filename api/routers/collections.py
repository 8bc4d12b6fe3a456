"""Collections and their documents."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile, status
from fastapi.routing import APIRoute

from quarry.api.deps import PrincipalDep, ServicesDep, WriterDep, check_scope
from quarry.api.routers.jobs import job_out
from quarry.api.schemas import CollectionCreate, CollectionOut, JobOut, TextDocuments, error_responses
from quarry.api.uploads import bounded_request, read_uploads
from quarry.core.types import DocumentInfo
from quarry.retrieval.errors import CollectionNotFoundError
from quarry.retrieval.loaders import media_type_for, safe_source_name

router = APIRouter(prefix="/v1/collections", tags=["collections"])

# Beyond what every keyed route may answer (401, 403, 404, 422; api.errors.document_errors):
# 409 a collection that exists; 503 a collection embedded with another model than the
# configured one (ConfigurationError), or no job queue; 429 a full queue; 400/413/415 uploads.
EMBEDDED = error_responses(503)
QUEUED = error_responses(409, 429, 503)


def _out(info: Any) -> CollectionOut:
    return CollectionOut(
        name=info.name,
        created_at=info.created_at,
        document_count=info.document_count,
        chunk_count=info.chunk_count,
        index_kind=info.index_kind,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CollectionOut, responses=error_responses(409))
def create_collection(body: CollectionCreate, services: ServicesDep, principal: WriterDep) -> CollectionOut:
    if not principal.may_see(body.name):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key may not create collection {body.name!r}")
    library = services.library.for_tenant(principal.tenant)
    library.create_collection(body.name)
    return _get(library, body.name)


def _get(library: Any, name: str) -> CollectionOut:
    for info in library.collections():
        if info.name == name:
            return _out(info)
    raise CollectionNotFoundError(f"no collection named {name!r}")


@router.get("", response_model=list[CollectionOut])
def list_collections(services: ServicesDep, principal: PrincipalDep) -> list[CollectionOut]:
    infos = services.library.for_tenant(principal.tenant).collections()
    return [_out(i) for i in infos if principal.may_see(i.name)]


@router.get("/{name}", response_model=CollectionOut)
def get_collection(name: str, services: ServicesDep, principal: PrincipalDep) -> CollectionOut:
    check_scope(principal, name)
    return _get(services.library.for_tenant(principal.tenant), name)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_collection(name: str, services: ServicesDep, principal: WriterDep) -> Response:
    check_scope(principal, name)
    services.library.for_tenant(principal.tenant).delete_collection(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class _BoundedUploadRoute(APIRoute):
    """The upload route reads its body through `bounded_request`: an upload over
    service.max_upload_bytes is refused from its Content-Length, or as soon as the bytes
    streamed in pass the limit, instead of after it has been spooled to disk whole."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            settings = request.app.state.services.settings
            return await handler(bounded_request(request, settings.service.max_upload_bytes))

        return bounded


SKIP_HELP = "Leave out files of unsupported types (images, CSS, ...) instead of rejecting the upload with 415."


async def upload_documents(
    name: str,
    services: ServicesDep,
    principal: WriterDep,
    files: Annotated[
        list[UploadFile],
        File(
            description="Files to ingest (.txt .md .html .pdf .docx .json .jsonl). The filename is the "
            "document's name and may hold folders (`guide/index.md`); names must differ within an upload."
        ),
    ],
    create: Annotated[bool, Query(description="Create the collection if it does not exist.")] = True,
    skip_unsupported: Annotated[bool, Query(description=SKIP_HELP)] = False,
    skip_unsupported_field: Annotated[bool, Form(alias="skip_unsupported", description=SKIP_HELP)] = False,
) -> JobOut:
    """Validate every file (all or nothing), stage them, and queue an ingestion job. A
    document with the same name as one in the collection is replaced (the job's result
    lists it under `replaced`)."""
    check_scope(principal, name)
    library = services.library.for_tenant(principal.tenant)
    checked = await read_uploads(files, services.settings, skip_unsupported or skip_unsupported_field)
    uploads = checked.files
    await asyncio.to_thread(services.check_queue)  # 503/429 before anything is stored
    collection = await asyncio.to_thread(_collection_for_upload, library, name, create)
    library.store.mark_queued(collection.id, [(source, media_type_for(source)) for source, _ in uploads])
    params: dict[str, Any] = {"files": len(uploads), **({"skipped": checked.skipped} if checked.skipped else {})}
    job = services.jobs.create("ingest", principal.tenant, name, params, len(uploads), uploads)
    services.enqueue(job)
    return job_out(job).model_copy(update={"skipped": checked.skipped})


router.add_api_route(
    "/{name}/documents",
    upload_documents,
    methods=["POST"],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={**QUEUED, **error_responses(400, 413, 415)},
    route_class_override=_BoundedUploadRoute,
)


def _collection_for_upload(library: Any, name: str, create: bool) -> Any:
    try:
        return library.collection(name)
    except CollectionNotFoundError:
        if not create:
            raise
        library.create_collection(name)
        return library.collection(name)


@router.post("/{name}/documents/text", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, responses=QUEUED)
def add_text_documents(name: str, body: TextDocuments, services: ServicesDep, principal: WriterDep) -> JobOut:
    """Queue documents given as JSON text."""
    check_scope(principal, name)
    library = services.library.for_tenant(principal.tenant)
    docs = []
    for d in body.documents:
        source = safe_source_name(d.name)
        if not d.text.strip():
            raise HTTPException(422, f"{source}: the text is empty")
        docs.append({"name": source, "text": d.text, "title": d.title})
    services.check_queue()  # 503/429 before anything is stored
    collection = _collection_for_upload(library, name, True)
    library.store.mark_queued(collection.id, [(str(d["name"]), "text/plain") for d in docs])
    job = services.jobs.create("ingest", principal.tenant, name, {"documents": docs}, len(docs))
    services.enqueue(job)
    return job_out(job)


@router.get("/{name}/documents", response_model=list[DocumentInfo], responses=EMBEDDED)
def list_documents(name: str, services: ServicesDep, principal: PrincipalDep) -> list[DocumentInfo]:
    check_scope(principal, name)
    return services.library.for_tenant(principal.tenant).documents(name)


@router.get("/{name}/documents/{document_id}", responses=EMBEDDED)
def get_document(
    name: str,
    document_id: int,
    services: ServicesDep,
    principal: PrincipalDep,
    start: Annotated[int | None, Query(ge=0)] = None,
    end: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    """A document's status and text (or the span `start:end` of it, for citations)."""
    check_scope(principal, name)
    library = services.library.for_tenant(principal.tenant)
    collection = library.collection(name)
    row = library.store.find_document(collection.id, document_id)
    info = next(d for d in library.store.documents(collection.id) if d.id == row.id)
    text = row.text
    return {**info.model_dump(mode="json"), "text": text[start or 0 : end if end is not None else len(text)]}


@router.delete("/{name}/documents/{document_id}", status_code=status.HTTP_204_NO_CONTENT, responses=EMBEDDED)
def delete_document(name: str, document_id: int, services: ServicesDep, principal: WriterDep) -> Response:
    check_scope(principal, name)
    services.library.for_tenant(principal.tenant).delete_document(name, document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
