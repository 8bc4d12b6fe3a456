"""Research jobs: create, follow (progress and the report so far), read, cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import PlainTextResponse, Response

from quarry.agents.research import assemble
from quarry.api.deps import PrincipalDep, ServicesDep, check_question, check_scope, visible_job
from quarry.api.routers.jobs import job_out
from quarry.api.schemas import JobOut, ResearchCreate, error_responses
from quarry.core.types import Answer
from quarry.workers.jobs import JobInfo, JobStatus

router = APIRouter(prefix="/v1/research", tags=["research"], responses=error_responses(401, 422))


def _partial(job: JobInfo) -> dict[str, Any]:
    answers = [Answer.model_validate(a) for a in job.partial]
    report = assemble(job.collection, job.params.get("topic"), answers)
    return {
        "markdown": report.markdown(),
        "sections": [s.model_dump(mode="json") for s in report.sections],
        "references": [r.model_dump(mode="json") for r in report.references],
    }


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, responses=error_responses(404, 429, 503))
def create(body: ResearchCreate, services: ServicesDep, principal: PrincipalDep) -> JobOut:
    if not body.questions and not body.topic:
        raise HTTPException(422, "give a topic or a list of questions")
    check_scope(principal, body.collection)
    limit = services.settings.search.max_query_chars
    questions = [check_question(q, limit) for q in body.questions or [] if q.strip()]
    if body.questions and not questions:
        raise HTTPException(422, "every question is empty")
    if body.topic is not None and not body.topic.strip():
        raise HTTPException(422, "the topic is empty")
    services.library.for_tenant(principal.tenant).collection(body.collection)  # 404 before queuing
    params = {"questions": questions, "topic": body.topic, "sections": body.sections}
    services.check_queue()  # 503/429 before anything is stored
    job = services.jobs.create("research", principal.tenant, body.collection, params, len(questions))
    services.enqueue(job)
    return job_out(job)


@router.get("/{job_id}", response_model=JobOut, responses=error_responses(404))
def get(job_id: str, services: ServicesDep, principal: PrincipalDep) -> JobOut:
    job = visible_job(services, principal, job_id, "research")
    return job_out(job, partial=_partial(job), with_result=False)


@router.get(
    "/{job_id}/result",
    response_model=None,
    responses={
        **error_responses(404, 409),
        200: {
            "description": "The report: JSON (sections, references, markdown) or markdown.",
            "content": {"application/json": {}, "text/markdown": {"schema": {"type": "string"}}},
        },
    },
)
def result(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
) -> Response | dict[str, Any]:
    job = visible_job(services, principal, job_id, "research")
    if job.status is not JobStatus.SUCCEEDED or not job.result:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the job is {job.status.value}; no report yet")
    if format == "markdown":
        return PlainTextResponse(job.result["markdown"], media_type="text/markdown; charset=utf-8")
    report: dict[str, Any] = job.result["report"]
    return {**report, "markdown": job.result["markdown"]}


@router.post("/{job_id}/cancel", response_model=JobOut, responses=error_responses(404))
def cancel(job_id: str, services: ServicesDep, principal: PrincipalDep) -> JobOut:
    visible_job(services, principal, job_id, "research")
    return job_out(services.jobs.request_cancel(job_id, principal.tenant))
