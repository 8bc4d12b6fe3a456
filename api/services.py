"""What the API process holds for its lifetime, built in FastAPI's lifespan."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from quarry.agents.graph import AgentGraph
from quarry.api.keys import KeyStore
from quarry.core.chat import ChatModel
from quarry.core.settings import Settings
from quarry.retrieval.library import Library
from quarry.workers.jobs import JobInfo, JobStatus, JobStore

log = logging.getLogger("quarry.api")


@dataclass
class Services:
    settings: Settings
    library: Library
    jobs: JobStore
    keys: KeyStore
    celery: Any  # celery.Celery, or None when no broker is configured
    model: ChatModel | None = None
    workers_seen: tuple[float, int] | None = None  # (monotonic time, count) at the last answered health ping
    _ask_slots: asyncio.Semaphore | None = field(default=None, repr=False)
    _memory_engine: Any = field(default=None, repr=False)
    _memory_engine_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _agents: OrderedDict[str, AgentGraph] = field(default_factory=OrderedDict, repr=False)
    _agents_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    MAX_CACHED_AGENTS = 64  # tenants whose agent stays built

    def memory_engine(self) -> Any:
        """One long-context engine for the process, made on first use (once, whichever
        thread comes first); with the hf backend it shares the chat model's weights."""
        with self._memory_engine_lock:
            if self._memory_engine is None:
                from quarry.agents.long_reader import make_memory_engine

                self._memory_engine = make_memory_engine(self.settings, self.model)
            return self._memory_engine

    @property
    def ask_slots(self) -> asyncio.Semaphore:
        """Bounds concurrent questions so that, under load, they finish in turn rather than
        all at the end together."""
        if self._ask_slots is None:
            self._ask_slots = asyncio.Semaphore(self.settings.service.max_concurrent_asks)
        return self._ask_slots

    def agent(self, tenant: str) -> AgentGraph:
        """The tenant's agent, built once and reused: a run keeps its state in its own context,
        so one compiled graph (and its reader's sentence cache) serves every question."""
        with self._agents_lock:
            agent = self._agents.get(tenant)
            if agent is not None:
                self._agents.move_to_end(tenant)
                return agent
        agent = self._build_agent(tenant)
        with self._agents_lock:
            agent = self._agents.setdefault(tenant, agent)
            while len(self._agents) > self.MAX_CACHED_AGENTS:
                self._agents.popitem(last=False)
        return agent

    def _build_agent(self, tenant: str) -> AgentGraph:
        executor = None
        if self.settings.service.node_executor == "celery" and self.celery is not None:
            from quarry.workers.executor import CeleryExecutor

            executor = CeleryExecutor(self.celery, self.settings.service.node_wait_s)
        from quarry.agents.long_reader import make_long_reader

        library = self.library.for_tenant(tenant)
        long_reader = make_long_reader(self.settings, library.store, self.model, self.memory_engine)
        return AgentGraph(library, settings=self.settings, model=self.model, executor=executor, long_reader=long_reader)

    def check_queue(self) -> None:
        """Before anything is stored for a new job: the broker must answer (else
        BrokerUnavailableError, a 503 at once) and the queue must have room (QueueFullError)."""
        from quarry.workers import broker

        s = self.settings.service
        if self.celery is None or not s.redis_url:
            raise broker.BrokerUnavailableError("no job queue is configured (service.redis_url)")
        if not broker.ping(s.redis_url, s.broker_check_timeout_s):
            raise broker.BrokerUnavailableError("the job queue (Redis) does not answer; try again shortly")
        waiting = self.jobs.count_queued()
        if waiting >= s.max_queued_jobs:
            raise broker.QueueFullError(
                f"{waiting} jobs wait in the queue (service.max_queued_jobs = {s.max_queued_jobs}); try again later",
                retry_after_s=max(1, int(s.job_lease_s / 4)),
            )

    def enqueue(self, job: JobInfo) -> None:
        """Hand a new job to the broker (the task claims it from the database); if the broker
        refuses it, the job is deleted and BrokerUnavailableError raised."""
        from quarry.workers.broker import BrokerUnavailableError

        try:
            self._send(job)
        except Exception as exc:
            self.jobs.delete(job.id)
            raise BrokerUnavailableError(f"the job queue (Redis) refused the job; try again shortly ({exc})") from exc

    def _send(self, job: JobInfo) -> None:
        task = {"ingest": "quarry.ingest_job", "research": "quarry.research_job", "eval": "quarry.eval_job"}[job.kind]
        # a stale pooled connection (Redis restarted) is replaced at once; a broker that is
        # down fails fast (check_queue has just seen it answer)
        policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
        self.celery.send_task(task, args=[job.id], retry=True, retry_policy=policy)

    def requeue_stale(self) -> list[str]:
        """Jobs whose worker stopped beating (died, stalled) and queued jobs whose message is
        no longer in the broker (lost in a broker restart, or held by a worker that died
        before it claimed the job) are sent again, up to `job_max_attempts` deliveries; past
        that they fail with the reason. Jobs merely waiting in the queue are left alone."""
        from quarry.workers import broker
        from quarry.workers.app import QUEUES

        s = self.settings.service
        lease = s.job_lease_s
        pending: set[str] | None = None
        touched = []
        for job in self.jobs.stale(lease):
            if job.cancel_requested:
                self.jobs.close_stale(job.id, lease, JobStatus.CANCELLED, "cancelled")
                touched.append(job.id)
                continue
            if job.status == JobStatus.QUEUED:
                if pending is None:
                    try:
                        pending = broker.pending_job_ids(s.redis_url or "", QUEUES, fresh_s=lease)
                    except broker.BrokerUnavailableError as exc:
                        log.warning("stale-job sweep: %s", exc)
                        break  # nothing can be sent either; the next sweep looks again
                if job.id in pending:
                    continue  # waiting its turn
                why = "its queue message was lost (broker restart, or a worker that died before it began)"
            else:
                why = f"its worker stopped beating for more than {lease:.0f}s (died, or stalled)"
            # a re-sent message counts as a delivery, and the claim that follows needs one more
            spent = job.attempts + (1 if job.status == JobStatus.QUEUED else 0)
            if spent >= s.job_max_attempts:
                self.jobs.close_stale(
                    job.id, lease, JobStatus.FAILED, f"no worker completed it in {job.attempts} attempt(s): {why}"
                )
            else:
                # marked before sending: a worker may claim it at once
                marked = (
                    self.jobs.resend(job.id, lease)
                    if job.status == JobStatus.QUEUED
                    else self.jobs.requeue(job.id, lease)
                )
                if not marked:
                    continue  # a worker took it meanwhile
                log.warning("job %s sent again: %s", job.id, why)
                try:
                    self._send(job)
                except Exception as exc:  # broker down again: the next sweep sends it again
                    log.warning("cannot requeue job %s: %s", job.id, exc)
                    continue
            touched.append(job.id)
        return touched

    async def watch(self) -> None:
        interval = max(1.0, self.settings.service.job_lease_s / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.requeue_stale)
            except Exception:  # the sweep must outlive a database hiccup; it is logged
                log.exception("stale-job sweep failed")
