"""FastAPI dependencies: services and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from quarry.api.keys import Principal
from quarry.api.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_principal(
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
    x_quarry_tenant: Annotated[str | None, Header(description="Admin only: act as this tenant.")] = None,
) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = authorization.split(" ", 1)[1].strip()
    admin = services.settings.service.admin_key
    principal = services.keys.authenticate(token, admin.get_secret_value() if admin else None)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    if principal.admin and x_quarry_tenant:
        principal = principal.model_copy(update={"tenant": x_quarry_tenant})
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_write(principal: PrincipalDep) -> Principal:
    if not principal.may_write():
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this API key may only read")
    return principal


WriterDep = Annotated[Principal, Depends(require_write)]


def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only the admin key manages API keys")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


def check_scope(principal: Principal, collection: str) -> None:
    """A collection outside the key's scope does not exist for it."""
    if not principal.may_see(collection):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection named {collection!r}")
