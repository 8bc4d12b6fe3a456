"""API keys (admin), health and metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from quarry.api.deps import AdminDep, PrincipalDep, ServicesDep
from quarry.api.schemas import Health, KeyCreate, KeyCreated, KeyOut, WhoAmI, error_responses

router = APIRouter(tags=["admin"])
KEY_ERRORS = error_responses(401, 403, 422)


@router.post("/v1/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated, responses=KEY_ERRORS)
def create_key(body: KeyCreate, services: ServicesDep, _admin: AdminDep) -> KeyCreated:
    info, token = services.keys.create(body.name, body.tenant, body.collections, body.rights)
    return KeyCreated(
        id=info.id, name=info.name, tenant=info.tenant, collections=info.collections, rights=info.rights, token=token
    )


@router.get("/v1/me", response_model=WhoAmI, responses=error_responses(401, 422))
def who_am_i(principal: PrincipalDep) -> WhoAmI:
    """What the calling key may do (the web UI shows only the controls it may use)."""
    return WhoAmI(
        tenant=principal.tenant,
        collections=principal.collections,
        rights=principal.rights,
        admin=principal.admin,
        write=principal.may_write(),
    )


@router.get("/v1/keys", response_model=list[KeyOut], responses=KEY_ERRORS)
def list_keys(services: ServicesDep, _admin: AdminDep) -> list[KeyOut]:
    return [KeyOut.model_validate(k.model_dump()) for k in services.keys.list_keys()]


@router.delete(
    "/v1/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**KEY_ERRORS, **error_responses(404)}
)
def revoke_key(key_id: str, services: ServicesDep, _admin: AdminDep) -> Response:
    if not services.keys.revoke(key_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/v1/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "Degraded: the database, Redis or every worker unreachable"}},
)
async def health(
    services: ServicesDep,
    response: Response,
    authorization: Annotated[str | None, Header(description="With the admin key, `details` gives the reasons.")] = None,
) -> Health:
    """Database, Redis and workers reachable (no key needed)."""
    from quarry.api.health import check

    result = await check(services, authorization)
    if result.status != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return result


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
