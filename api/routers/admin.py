"""API keys (admin), health and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from quarry.api.deps import AdminDep, PrincipalDep, ServicesDep
from quarry.api.keys import KeyInfo
from quarry.api.schemas import Health, KeyCreate, KeyCreated, WhoAmI

router = APIRouter(tags=["admin"])


@router.post("/v1/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
def create_key(body: KeyCreate, services: ServicesDep, _admin: AdminDep) -> KeyCreated:
    info, token = services.keys.create(body.name, body.tenant, body.collections, body.rights)
    return KeyCreated(
        id=info.id, name=info.name, tenant=info.tenant, collections=info.collections, rights=info.rights, token=token
    )


@router.get("/v1/me", response_model=WhoAmI)
def who_am_i(principal: PrincipalDep) -> WhoAmI:
    """What the calling key may do (the web UI shows only the controls it may use)."""
    return WhoAmI(
        tenant=principal.tenant,
        collections=principal.collections,
        rights=principal.rights,
        admin=principal.admin,
        write=principal.may_write(),
    )


@router.get("/v1/keys", response_model=list[KeyInfo])
def list_keys(services: ServicesDep, _admin: AdminDep) -> list[KeyInfo]:
    return services.keys.list_keys()


@router.delete("/v1/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(key_id: str, services: ServicesDep, _admin: AdminDep) -> Response:
    if not services.keys.revoke(key_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/health", response_model=Health)
async def health(services: ServicesDep, response: Response) -> Health:
    """Database, Redis and workers reachable (no key needed)."""
    details: dict[str, str] = {}

    def db() -> bool:
        try:
            with services.library.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # reported in the body, not raised
            details["database"] = str(exc)[:200]
            return False

    def broker() -> tuple[bool, int]:
        if services.celery is None:
            details["redis"] = "no broker configured"
            return False, 0
        try:
            with services.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            details["redis"] = str(exc)[:200]
            return False, 0
        try:
            replies = services.celery.control.ping(timeout=0.5) or []
        except Exception as exc:
            details["workers"] = str(exc)[:200]
            replies = []
        return True, len(replies)

    database, (redis_ok, workers) = await asyncio.gather(asyncio.to_thread(db), asyncio.to_thread(broker))
    ok = database and redis_ok and workers > 0
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(
        status="ok" if ok else "degraded", database=database, redis=redis_ok, workers=workers, details=details
    )


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
