"""Research jobs: create, follow (progress and the report so far), read, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import PlainTextResponse, Response

from quarry.agents.research import assemble
from quarry.api.deps import PrincipalDep, ServicesDep, check_scope
from quarry.api.routers.jobs import job_out
from quarry.api.schemas import JobOut, ResearchCreate
from quarry.core.types import Answer
from quarry.workers.jobs import JobInfo, JobStatus

router = APIRouter(prefix="/v1/research", tags=["research"])


def _job(services: Any, job_id: str, tenant: str) -> JobInfo:
    job: JobInfo = services.jobs.get(job_id, tenant)
    if job.kind != "research":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no research job {job_id!r}")
    return job


def _partial(job: JobInfo) -> dict[str, Any]:
    answers = [Answer.model_validate(a) for a in job.partial]
    report = assemble(job.collection, job.params.get("topic"), answers)
    return {
        "markdown": report.markdown(),
        "sections": [s.model_dump(mode="json") for s in report.sections],
        "references": [r.model_dump(mode="json") for r in report.references],
    }


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def create(body: ResearchCreate, services: ServicesDep, principal: PrincipalDep) -> JobOut:
    if not body.questions and not body.topic:
        raise HTTPException(422, "give a topic or a list of questions")
    check_scope(principal, body.collection)
    services.library.for_tenant(principal.tenant).collection(body.collection)  # 404 before queuing
    questions = [q.strip() for q in body.questions or [] if q.strip()]
    params = {"questions": questions, "topic": body.topic, "sections": body.sections}
    services.check_queue()  # 503/429 before anything is stored
    job = services.jobs.create("research", principal.tenant, body.collection, params, len(questions))
    services.enqueue(job)
    return job_out(job)


@router.get("/{job_id}", response_model=JobOut)
def get(job_id: str, services: ServicesDep, principal: PrincipalDep) -> JobOut:
    job = _job(services, job_id, principal.tenant)
    return job_out(job, partial=_partial(job), with_result=False)


@router.get("/{job_id}/result", response_model=None)
def result(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    format: Annotated[str, Query(pattern="^(json|markdown)$")] = "json",
) -> Response | dict[str, Any]:
    job = _job(services, job_id, principal.tenant)
    if job.status is not JobStatus.SUCCEEDED or not job.result:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the job is {job.status.value}; no report yet")
    if format == "markdown":
        return PlainTextResponse(job.result["markdown"], media_type="text/markdown; charset=utf-8")
    report: dict[str, Any] = job.result["report"]
    return {**report, "markdown": job.result["markdown"]}


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel(job_id: str, services: ServicesDep, principal: PrincipalDep) -> JobOut:
    _job(services, job_id, principal.tenant)
    if principal.collections != ["*"] and not principal.admin:
        check_scope(principal, services.jobs.get(job_id, principal.tenant).collection)
    return job_out(services.jobs.request_cancel(job_id, principal.tenant))
