"""Jobs (ingestion, research) in the metadata database, where the API reads their progress.

State changes are single conditional UPDATEs, so two workers handed the same job (a
redelivery) cannot both claim it, and a finished job is never reopened. A claim is fenced:
its heartbeats, release and finish match the worker and the attempt that took it, so a
worker that stalled past its lease cannot touch a job handed to another since."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from quarry.core.errors import QuarryError
from quarry.retrieval.storage import Base


class JobNotFoundError(QuarryError):
    pass


class JobCancelledError(QuarryError):
    """Raised inside a task when its job was cancelled."""


class JobLostError(QuarryError):
    """Raised inside a task whose claim lapsed: the job was handed to another worker."""


@dataclass(frozen=True)
class Claim:
    """One worker's hold on one attempt of a job."""

    job_id: str
    worker: str
    attempt: int


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def _now() -> datetime:
    return datetime.now(UTC)


class JobRow(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    collection: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    partial: Mapped[list[Any]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class UploadRow(Base):
    """Uploaded files waiting for their ingestion job, in the shared database so that any
    worker on any machine can read them."""

    __tablename__ = "job_uploads"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    ordinal: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(512))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class JobInfo(BaseModel):
    id: str
    kind: str
    tenant: str
    collection: str
    status: JobStatus
    params: dict[str, Any] = Field(default_factory=dict)
    done: int = 0
    total: int = 0
    partial: list[Any] = Field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    cancel_requested: bool = False
    created_at: datetime
    updated_at: datetime

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else (1.0 if self.status.finished else 0.0)


def _info(row: JobRow) -> JobInfo:
    return JobInfo.model_validate(row, from_attributes=True)


class JobStore:
    """Jobs in the database of a Store, whose start created the tables (migrations)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def create(
        self,
        kind: str,
        tenant: str,
        collection: str,
        params: dict[str, Any],
        total: int = 0,
        uploads: list[tuple[str, bytes]] | None = None,
    ) -> JobInfo:
        """A queued job, with its uploaded files staged in the same transaction."""
        with self._sessions.begin() as s:
            row = JobRow(
                id=str(uuid.uuid4()),
                kind=kind,
                tenant=tenant,
                collection=collection,
                status=JobStatus.QUEUED.value,
                params=params,
                total=total,
                partial=[],
            )
            s.add(row)
            s.flush()
            for i, (source, data) in enumerate(uploads or []):
                s.add(UploadRow(job_id=row.id, ordinal=i, source=source, data=data))
            return _info(row)

    def upload_sources(self, job_id: str) -> list[str]:
        with self._sessions() as s:
            rows = s.scalars(select(UploadRow.source).where(UploadRow.job_id == job_id).order_by(UploadRow.ordinal))
            return list(rows)

    def queued_siblings(self, job: JobInfo, limit: int) -> list[JobInfo]:
        """Other queued jobs of the same kind, tenant and collection, oldest first: an ingest
        worker takes them along, so that many small jobs make one index write."""
        with self._sessions() as s:
            rows = s.scalars(
                select(JobRow)
                .where(
                    JobRow.kind == job.kind,
                    JobRow.tenant == job.tenant,
                    JobRow.collection == job.collection,
                    JobRow.status == JobStatus.QUEUED.value,
                    JobRow.cancel_requested.is_(False),
                    JobRow.id != job.id,
                )
                .order_by(JobRow.created_at)
                .limit(limit)
            )
            return [_info(r) for r in rows]

    def uploads(self, job_id: str) -> list[tuple[str, bytes]]:
        with self._sessions() as s:
            rows = s.execute(
                select(UploadRow.source, UploadRow.data).where(UploadRow.job_id == job_id).order_by(UploadRow.ordinal)
            )
            return [(r.source, r.data) for r in rows]

    def drop_uploads(self, job_id: str) -> None:
        with self._sessions.begin() as s:
            s.execute(delete(UploadRow).where(UploadRow.job_id == job_id))

    def get(self, job_id: str, tenant: str | None = None) -> JobInfo:
        """A job; with `tenant`, only that tenant's (another tenant's job does not exist)."""
        with self._sessions() as s:
            row = s.get(JobRow, job_id)
            if row is None or (tenant is not None and row.tenant != tenant):
                raise JobNotFoundError(f"no job {job_id!r}")
            return _info(row)

    def list_for(self, tenant: str, kind: str | None = None, limit: int = 100) -> list[JobInfo]:
        with self._sessions() as s:
            query = select(JobRow).where(JobRow.tenant == tenant).order_by(JobRow.created_at.desc()).limit(limit)
            if kind:
                query = query.where(JobRow.kind == kind)
            return [_info(r) for r in s.scalars(query)]

    def claim(self, job_id: str, worker: str, lease_s: float, max_attempts: int) -> Claim | None:
        """Atomically take a queued job, or a running one whose worker stopped beating."""
        stale = _now() - timedelta(seconds=lease_s)
        with self._sessions.begin() as s:
            result = s.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.attempts < max_attempts,
                    JobRow.cancel_requested.is_(False),
                    or_(
                        JobRow.status == JobStatus.QUEUED.value,
                        (JobRow.status == JobStatus.RUNNING.value) & (JobRow.heartbeat_at < stale),
                    ),
                )
                .values(
                    status=JobStatus.RUNNING.value,
                    worker=worker,
                    attempts=JobRow.attempts + 1,
                    heartbeat_at=_now(),
                    updated_at=_now(),
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None
            attempt = s.scalar(select(JobRow.attempts).where(JobRow.id == job_id))  # the row is ours until commit
            return Claim(job_id, worker, int(attempt or 0))

    @staticmethod
    def _held(claim: Claim) -> Any:
        return (
            (JobRow.id == claim.job_id)
            & (JobRow.status == JobStatus.RUNNING.value)
            & (JobRow.worker == claim.worker)
            & (JobRow.attempts == claim.attempt)
        )

    def heartbeat(
        self, claim: Claim, done: int | None = None, total: int | None = None, partial: list[Any] | None = None
    ) -> None:
        """Record progress; raises JobCancelledError when the job was cancelled, and
        JobLostError when the claim lapsed and the job went to another worker."""
        values: dict[str, Any] = {"heartbeat_at": _now(), "updated_at": _now()}
        if done is not None:
            values["done"] = done
        if total is not None:
            values["total"] = total
        if partial is not None:
            values["partial"] = partial
        with self._sessions.begin() as s:
            held = s.execute(update(JobRow).where(self._held(claim)).values(**values)).rowcount  # type: ignore[attr-defined]
            if s.scalar(select(JobRow.cancel_requested).where(JobRow.id == claim.job_id)):
                raise JobCancelledError(f"job {claim.job_id} was cancelled")
        if not held:
            raise JobLostError(f"job {claim.job_id}: attempt {claim.attempt} lapsed and was handed over")

    def finish(
        self,
        claim: Claim,
        status: JobStatus,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        done: int | None = None,
    ) -> bool:
        """End the job, only if `claim` still holds it (and record `done`, if given)."""
        values: dict[str, Any] = {"status": status.value, "result": result, "error": error}
        if done is not None:
            values["done"] = done
        with self._sessions.begin() as s:
            res = s.execute(
                update(JobRow).where(self._held(claim)).values(**values, updated_at=_now(), heartbeat_at=_now())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def release(self, claim: Claim) -> bool:
        """Give a claimed job back to the queue (a transient error): the retry claims it at
        once instead of waiting for the lease to lapse."""
        with self._sessions.begin() as s:
            res = s.execute(
                update(JobRow)
                .where(self._held(claim))
                .values(status=JobStatus.QUEUED.value, worker=None, heartbeat_at=_now(), updated_at=_now())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def request_cancel(self, job_id: str, tenant: str) -> JobInfo:
        """Ask a job to stop: a queued job is cancelled at once, a running one at its next
        heartbeat."""
        self.get(job_id, tenant)
        with self._sessions.begin() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id).values(cancel_requested=True, updated_at=_now()))
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == JobStatus.QUEUED.value)
                .values(status=JobStatus.CANCELLED.value, error="cancelled before it started")
            )
        return self.get(job_id, tenant)

    def delete(self, job_id: str) -> None:
        """Remove a job that was never handed to the broker (its uploads go with it)."""
        with self._sessions.begin() as s:
            s.execute(delete(UploadRow).where(UploadRow.job_id == job_id))
            s.execute(delete(JobRow).where(JobRow.id == job_id))

    def count_queued(self) -> int:
        with self._sessions() as s:
            return int(s.scalar(select(func.count()).where(JobRow.status == JobStatus.QUEUED.value)) or 0)

    def stale(self, lease_s: float) -> list[JobInfo]:
        """Unfinished jobs nobody has touched for longer than the lease: running ones whose
        worker stopped beating, and queued ones (waiting, or whose message was lost)."""
        cutoff = _now() - timedelta(seconds=lease_s)
        with self._sessions() as s:
            rows = s.scalars(
                select(JobRow).where(
                    JobRow.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
                    JobRow.heartbeat_at < cutoff,
                )
            )
            return [_info(r) for r in rows]

    def close_stale(self, job_id: str, lease_s: float, status: JobStatus, error: str) -> bool:
        """End an unfinished job that is still untouched for longer than the lease."""
        cutoff = _now() - timedelta(seconds=lease_s)
        with self._sessions.begin() as s:
            res = s.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
                    JobRow.heartbeat_at < cutoff,
                )
                .values(status=status.value, error=error, worker=None, updated_at=_now(), heartbeat_at=_now())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def requeue(self, job_id: str, lease_s: float) -> bool:
        """Put a job whose lease lapsed back in the queue (its message is sent again next):
        the next worker claims it at once, and the stalled worker's claim no longer holds."""
        cutoff = _now() - timedelta(seconds=lease_s)
        with self._sessions.begin() as s:
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == JobStatus.RUNNING.value, JobRow.heartbeat_at < cutoff)
                .values(status=JobStatus.QUEUED.value, worker=None, heartbeat_at=_now(), updated_at=_now())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def fail_spent(self, job_id: str, max_attempts: int, error: str) -> bool:
        """Fail a queued job that has no delivery left (a worker just refused to claim it)."""
        with self._sessions.begin() as s:
            res = s.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.status == JobStatus.QUEUED.value,
                    JobRow.attempts >= max_attempts,
                    JobRow.cancel_requested.is_(False),
                )
                .values(status=JobStatus.FAILED.value, error=error, updated_at=_now(), heartbeat_at=_now())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def resend(self, job_id: str, lease_s: float) -> bool:
        """Count one more delivery of a queued job whose broker message was lost (it is sent
        again next), so that a job no worker ever takes fails after `job_max_attempts`."""
        cutoff = _now() - timedelta(seconds=lease_s)
        with self._sessions.begin() as s:
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == JobStatus.QUEUED.value, JobRow.heartbeat_at < cutoff)
                .values(attempts=JobRow.attempts + 1, heartbeat_at=_now(), updated_at=_now())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]
