"""Evaluation jobs: `quarry eval` run by a worker (admin only, since the QA files are read
from the server's disk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, status

from quarry.api.deps import AdminDep, ServicesDep, visible_job
from quarry.api.routers.jobs import job_out
from quarry.api.schemas import JobOut, _In, error_responses

router = APIRouter(prefix="/v1/evals", tags=["evals"], responses=error_responses(401, 403, 422))


class EvalCreate(_In):
    dataset: str
    path: str
    corpus: str | None = None
    collection: str | None = None
    limit: int | None = None
    systems: list[str] | None = None
    ks: list[int] | None = None


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, responses=error_responses(429, 503))
def create(body: EvalCreate, services: ServicesDep, principal: AdminDep) -> JobOut:
    from pydantic import ValidationError

    from quarry.evals.runner import EvalConfig

    fields: dict[str, Any] = {k: v for k, v in body.model_dump().items() if v is not None}
    try:
        config = EvalConfig(**fields)
    except ValidationError as exc:
        raise HTTPException(422, f"invalid eval: {exc.errors()[0]['msg']}") from None
    if not Path(config.path).exists():
        raise HTTPException(422, f"no such file or folder on the server: {config.path}")
    services.check_queue()  # 503/429 before anything is stored
    job = services.jobs.create("eval", principal.tenant, config.collection or "", config.model_dump(mode="json"))
    services.enqueue(job)
    return job_out(job)


@router.get("/{job_id}", response_model=JobOut, responses=error_responses(404))
def get(job_id: str, services: ServicesDep, principal: AdminDep) -> JobOut:
    return job_out(visible_job(services, principal, job_id, "eval"))
