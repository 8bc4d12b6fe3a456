"""Job status (ingestion and research), within the key's tenant and collections."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from quarry.api.deps import PrincipalDep, ServicesDep, visible_job
from quarry.api.schemas import JobOut, error_responses
from quarry.workers.jobs import JobInfo

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=error_responses(401, 422))

LIST_LIMIT = 100  # newest jobs listed


def label(job: JobInfo) -> str:
    """A one-line description of what a job works on."""
    params = job.params or {}
    if params.get("topic"):
        return str(params["topic"])
    questions = params.get("questions") or []
    if questions:
        more = len(questions) - 1
        return str(questions[0]) + (f" (and {more} more question{'s' if more > 1 else ''})" if more else "")
    files = params.get("files") or len(params.get("paths") or params.get("documents") or [])
    if files:
        return f"{files} file{'s' if files != 1 else ''}"
    return str(params.get("dataset") or job.kind)


def job_out(job: JobInfo, partial: dict[str, Any] | None = None, with_result: bool = True) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        collection=job.collection,
        label=label(job),
        status=job.status.value,
        done=job.done,
        total=job.total,
        progress=round(job.progress, 4),
        error=job.error,
        attempts=job.attempts,
        created_at=job.created_at,
        updated_at=job.updated_at,
        result=job.result if with_result else None,
        partial=partial,
        skipped=list(job.params.get("skipped") or []),  # an upload's files left out, kept with its job
    )


@router.get("/{job_id}", response_model=JobOut, responses=error_responses(404))
def get_job(job_id: str, services: ServicesDep, principal: PrincipalDep) -> JobOut:
    return job_out(visible_job(services, principal, job_id))


@router.get("", response_model=list[JobOut])
def list_jobs(
    services: ServicesDep,
    principal: PrincipalDep,
    kind: Annotated[Literal["ingest", "research", "eval"] | None, Query()] = None,
) -> list[JobOut]:
    """The newest jobs on the collections the key may see."""
    scoped = not principal.admin and "*" not in principal.collections
    jobs = services.jobs.list_for(principal.tenant, kind, limit=LIST_LIMIT * 10 if scoped else LIST_LIMIT)
    return [job_out(j, with_result=False) for j in jobs if principal.may_see(j.collection)][:LIST_LIMIT]
