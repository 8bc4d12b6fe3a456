"""Jobs (ingestion, research) in the metadata database, where the API reads their progress.

State changes are single conditional UPDATEs, so two workers handed the same job (a
redelivery) cannot both claim it, and a finished job is never reopened."""

from __future__ import annotations

import uuid
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

    def claim(self, job_id: str, worker: str, lease_s: float, max_attempts: int) -> bool:
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
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def heartbeat(
        self, job_id: str, done: int | None = None, total: int | None = None, partial: list[Any] | None = None
    ) -> None:
        """Record progress; raises JobCancelledError when the job was cancelled."""
        values: dict[str, Any] = {"heartbeat_at": _now(), "updated_at": _now()}
        if done is not None:
            values["done"] = done
        if total is not None:
            values["total"] = total
        if partial is not None:
            values["partial"] = partial
        with self._sessions.begin() as s:
            s.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.status == JobStatus.RUNNING.value).values(**values)
            )
            if s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id)):
                raise JobCancelledError(f"job {job_id} was cancelled")

    def finish(
        self, job_id: str, status: JobStatus, result: dict[str, Any] | None = None, error: str | None = None
    ) -> bool:
        with self._sessions.begin() as s:
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status.in_([JobStatus.RUNNING.value, JobStatus.QUEUED.value]))
                .values(status=status.value, result=result, error=error, updated_at=_now(), heartbeat_at=_now())
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

    def stale(self, lease_s: float) -> list[JobInfo]:
        """Unfinished jobs nobody has touched for longer than the lease."""
        cutoff = _now() - timedelta(seconds=lease_s)
        with self._sessions() as s:
            rows = s.scalars(
                select(JobRow).where(
                    JobRow.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
                    JobRow.heartbeat_at < cutoff,
                )
            )
            return [_info(r) for r in rows]

    def requeue(self, job_id: str) -> None:
        """Put a stale job back in the queue (its broker message was just sent again): the
        next worker claims it at once, and a zombie worker's heartbeats no longer count."""
        with self._sessions.begin() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
                .values(status=JobStatus.QUEUED.value, worker=None, heartbeat_at=_now(), updated_at=_now())
            )
