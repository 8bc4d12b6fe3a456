"""FastAPI dependencies: services and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request, status

from quarry.api.keys import Principal
from quarry.api.schemas import MIN_QUESTION_CHARS, NAME_PATTERN, NAME_RULE, check_name
from quarry.api.services import Services
from quarry.workers.jobs import JobInfo, JobNotFoundError


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_principal(
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
    x_quarry_tenant: Annotated[
        str | None, Header(description=f"Admin only: act as this tenant ({NAME_RULE}).", pattern=NAME_PATTERN)
    ] = None,
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
    if x_quarry_tenant:
        try:
            check_name(x_quarry_tenant)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"X-Quarry-Tenant: {exc}") from None
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


CollectionName = Annotated[str, Path(description=f"A collection name: {NAME_RULE}.", pattern=NAME_PATTERN)]


def check_scope(principal: Principal, collection: str) -> None:
    """A collection outside the key's scope does not exist for it."""
    if not principal.may_see(collection):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection named {collection!r}")


def visible_job(services: Services, principal: Principal, job_id: str, kind: str | None = None) -> JobInfo:
    """A job of the key's tenant on a collection in the key's scope (of `kind`, if given);
    any other job answers 404 exactly as one that does not exist."""
    job = services.jobs.get(job_id, principal.tenant)  # another tenant's job: JobNotFoundError
    if not principal.may_see(job.collection):
        raise JobNotFoundError(f"no job {job_id!r}")
    if kind is not None and job.kind != kind:
        raise JobNotFoundError(f"no {kind} job {job_id!r}")
    return job


def check_question(question: str, max_chars: int) -> str:
    """A question the agent can plan (422 with the limits otherwise), stripped."""
    text = question.strip()
    if len(text) < MIN_QUESTION_CHARS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"the question has {len(text)} character(s) besides spaces; a question needs at least "
            f"{MIN_QUESTION_CHARS} (and at most {max_chars})",
        )
    if len(question) > max_chars:
        message = f"the question has {len(question)} characters; the limit is {max_chars}"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)
    return text
