"""Celery tasks: thin wrappers that take IDs, claim their job atomically, and call the
library or the agent graph. Retries only for named transient errors."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cached_property
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from quarry.core.errors import QuarryError
from quarry.core.settings import Settings
from quarry.core.types import Answer
from quarry.workers.jobs import Claim, JobCancelledError, JobLostError, JobStatus, JobStore

TRANSIENT = (OperationalError, RedisConnectionError, ConnectionError)
log = logging.getLogger("quarry.workers")


class Runtime:
    """What a worker process builds once, on its first task (nothing at import)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        # the chat model and the memory engine are built once, whichever thread comes first
        self._model_lock = threading.Lock()
        self._engine_lock = threading.Lock()
        self._model: Any = None
        self._memory_engine: Any = None

    @cached_property
    def library(self) -> Any:
        from quarry.retrieval.library import Library

        return Library(self.settings)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.library.store.engine)

    @property
    def model(self) -> Any:
        from quarry.agents.llm.factory import make_chat_model

        with self._model_lock:
            if self._model is None:
                self._model = make_chat_model(self.settings.llm)
            return self._model

    @property
    def memory_engine(self) -> Any:
        """The memory engine; with the hf backend it reads with the chat model's weights."""
        from quarry.agents.long_reader import make_memory_engine

        model = self.model
        with self._engine_lock:
            if self._memory_engine is None:
                self._memory_engine = make_memory_engine(self.settings, model)
            return self._memory_engine

    def long_reader(self, tenant: str) -> Any:
        """The whole-document reader the configured generator supports (none if extractive)."""
        from quarry.agents.long_reader import make_long_reader

        # one memory engine (and model) per worker process
        return make_long_reader(self.settings, self.library.store, self.model, lambda: self.memory_engine)

    def agent(self, tenant: str) -> Any:
        from quarry.agents.graph import AgentGraph

        library = self.library.for_tenant(tenant)
        return AgentGraph(library, model=self.model, long_reader=self.long_reader(tenant))


@contextmanager
def heartbeat(jobs: JobStore, claims: Claim | list[Claim], every_s: float) -> Iterator[None]:
    """Keep running jobs' leases fresh from a side thread while their task works."""
    stop = threading.Event()
    held = [claims] if isinstance(claims, Claim) else list(claims)

    def beat() -> None:
        while held and not stop.wait(every_s):
            for claim in list(held):
                try:
                    jobs.heartbeat(claim)
                except JobCancelledError:
                    pass  # the task notices at its next progress report
                except JobLostError:
                    held.remove(claim)  # handed to another worker: the task stops at its next report
                except TRANSIENT:
                    pass  # the next beat tries again; a lapsed lease only hands the job over

    thread = threading.Thread(target=beat, name=f"heartbeat-{held[0].job_id[:8] if held else ''}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def register_tasks(app: Celery, settings: Settings) -> None:
    runtime = Runtime(settings)
    lease = settings.service.job_lease_s
    attempts = settings.service.job_max_attempts

    def run_job(job_id: str, body: Any) -> str:
        """Claim the job, run `body(job, beat)` (beat records progress under this claim),
        and finish the job only while the claim still holds it."""
        jobs = runtime.jobs
        claim = jobs.claim(job_id, runtime.name, lease, attempts)
        if claim is None:
            spent = f"no worker completed it in {attempts} deliveries (workers or the broker stopped)"
            if jobs.fail_spent(job_id, attempts, spent):
                return "failed: no delivery left"
            return "skipped: the job is finished, cancelled or held by a live worker"

        def beat(**progress: Any) -> None:
            jobs.heartbeat(claim, **progress)

        try:
            with heartbeat(jobs, claim, lease / 4):
                result = body(jobs.get(job_id), beat)
        except JobLostError:
            return "lost: the lease lapsed and another worker has the job"
        except JobCancelledError:
            jobs.finish(claim, JobStatus.CANCELLED, error="cancelled")
            return "cancelled"
        except SoftTimeLimitExceeded:
            jobs.finish(claim, JobStatus.FAILED, error=f"took longer than {settings.service.task_soft_time_limit_s}s")
            return "failed"
        except QuarryError as exc:
            jobs.finish(claim, JobStatus.FAILED, error=str(exc))
            return "failed"
        except TRANSIENT:
            # give the job back, so that the retry claims it at once (if the database is the
            # fault, the lease lapses instead)
            with suppress(*TRANSIENT):
                jobs.release(claim)
            raise  # the task is retried
        except Exception as exc:  # a bug, not a passing fault: running it again would fail again
            log.exception("job %s failed", job_id)
            jobs.finish(claim, JobStatus.FAILED, error=f"internal error ({type(exc).__name__}): {exc}"[:2000])
            return "failed"
        if not jobs.finish(claim, JobStatus.SUCCEEDED, result=result):
            return "lost: the lease lapsed and another worker has the job"
        return "succeeded"

    @app.task(name="quarry.ingest_job", bind=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
    def ingest_job(self: Task, job_id: str) -> str:
        def body(job: Any, beat: Any) -> dict[str, Any]:
            library = runtime.library.for_tenant(job.tenant)
            if job.params.get("paths"):  # files on this machine (`quarry serve --ingest`)
                files = [(Path(p), source) for p, source in job.params["paths"]]
                report = library.ingest_files(job.collection, files, _progress(job, beat))
                return _ingested(library, job, report, None, 1)
            batch = _take_siblings(job)
            sources = {j.id: _sources(j) for j in (job, *(sibling for _, sibling in batch))}
            sibling_beats = [_sibling_beat(claim) for claim, _ in batch]

            def beat_all(**progress: Any) -> None:
                beat(**progress)
                for sibling_beat in sibling_beats:
                    sibling_beat()

            try:
                items = sum(j.total for j in (job, *(sibling for _, sibling in batch)))
                with heartbeat(runtime.jobs, [claim for claim, _ in batch], lease / 4):
                    report = _ingest_staged(
                        library, [job, *(sibling for _, sibling in batch)], _progress(job, beat_all, items)
                    )
            except BaseException:
                for claim, _ in batch:  # run alone next time (the sweep sends them again)
                    with suppress(*TRANSIENT):
                        runtime.jobs.release(claim)
                raise
            size = len(batch) + 1
            for claim, sibling in batch:
                result = _ingested(library, sibling, report, sources[sibling.id] if batch else None, size)
                # not if it was lost or cancelled meanwhile
                runtime.jobs.finish(claim, JobStatus.SUCCEEDED, result=result, done=sibling.total)
            return _ingested(library, job, report, sources[job.id] if batch else None, size)

        return run_job(job_id, body)

    def _progress(job: Any, beat: Any, items: int | None = None) -> Any:
        """Progress of `items` input items (the job's own, unless it runs in a batch), at most
        two writes a second."""
        last = [0.0]
        items = job.total if items is None else items

        def progress(p: Any) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.5 or p.items_done == items:
                last[0] = now
                beat(done=min(p.items_done, job.total), total=job.total)

        return progress

    def _sources(job: Any) -> set[str]:
        if job.params.get("documents"):
            return {str(d["name"]) for d in job.params["documents"]}
        return set(runtime.jobs.upload_sources(job.id))

    def _take_siblings(job: Any) -> list[tuple[Claim, Any]]:
        """Claim queued ingest jobs of the same collection and input kind whose documents
        differ from those already taken (a later version of a document waits its turn)."""
        limit = settings.service.ingest_batch_jobs - 1
        if limit < 1:
            return []
        taken = _sources(job)
        batch: list[tuple[Claim, Any]] = []
        for sibling in runtime.jobs.queued_siblings(job, limit):
            if bool(sibling.params.get("documents")) != bool(job.params.get("documents")) or sibling.params.get(
                "paths"
            ):
                continue
            sources = _sources(sibling)
            if sources & taken:
                continue
            claim = runtime.jobs.claim(sibling.id, runtime.name, lease, attempts)
            if claim is not None:
                taken |= sources
                batch.append((claim, runtime.jobs.get(sibling.id)))
        return batch

    def _sibling_beat(claim: Claim) -> Any:
        """Keep a taken job's lease; one that was cancelled or lost meanwhile is just not
        finished by this batch (its documents are ingested all the same)."""

        def beat() -> None:
            with suppress(JobCancelledError, JobLostError, *TRANSIENT):
                runtime.jobs.heartbeat(claim)

        return beat

    def _ingest_staged(library: Any, batch: list[Any], progress: Any) -> Any:
        """One ingestion (one index write) of the documents of every job in `batch`."""
        first = batch[0]
        if first.params.get("documents"):
            from quarry.retrieval.loaders import text_document

            docs = [
                text_document(d["text"], d["name"], d.get("title")) for job in batch for d in job.params["documents"]
            ]
            # the API made the collection when it accepted the job: one deleted since stays deleted
            return library.ingest_documents(first.collection, docs, progress, create=False, track_status=True)
        with tempfile.TemporaryDirectory(prefix="quarry-upload-") as tmp:
            files = []
            for j, job in enumerate(batch):
                for i, (source, data) in enumerate(runtime.jobs.uploads(job.id)):
                    path = Path(tmp) / f"{j}-{i}{Path(source).suffix}"  # our own name, never the client's
                    path.write_bytes(data)
                    files.append((path, source))
            return library.ingest_files(first.collection, files, progress, create=False)

    def _ingested(library: Any, job: Any, report: Any, mine: set[str] | None, size: int) -> dict[str, Any]:
        """The job's own part of the report (`mine`: its sources, when it ran in a batch of
        `size` jobs); its staged files go, and long documents get their fixed context
        precomputed where configured."""
        runtime.jobs.drop_uploads(job.id)
        result = dict(report.model_dump(mode="json"))
        if mine is not None:
            for key in ("added", "replaced", "unchanged"):
                result[key] = [s for s in result[key] if s in mine]
            for key in ("failed", "skipped"):
                result[key] = [f for f in result[key] if f["source"] in mine]
            counts = {d.source: d.chunk_count for d in library.documents(job.collection)}
            result["chunks"] = sum(counts.get(s, 0) for s in result["added"] + result["replaced"])
            result["batch_jobs"] = size
        if job.collection in settings.memory.precompute_collections and settings.llm.backend == "hf":
            changed = set(result["added"]) | set(result["replaced"])
            for doc in library.documents(job.collection):
                if doc.source in changed:
                    app.send_task("quarry.precompute_context", args=[job.tenant, job.collection, doc.id])
        return result

    @app.task(name="quarry.research_job", bind=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
    def research_job(self: Task, job_id: str) -> str:
        def body(job: Any, beat: Any) -> dict[str, Any]:
            from quarry.agents.research import Researcher

            agent = runtime.agent(job.tenant)
            done = {a["question"]: Answer.model_validate(a) for a in job.partial}
            answers = [a.model_dump(mode="json") for a in done.values()]
            questions = job.params.get("questions") or None
            researcher = Researcher(agent, max_sections=int(job.params.get("sections", 5)))

            async def go() -> Any:
                todo = questions or await researcher.questions_for(job.collection, job.params["topic"])
                beat(done=len(done), total=len(todo))

                def on_answer(answer: Answer) -> None:
                    answers.append(answer.model_dump(mode="json"))
                    beat(done=len(answers), total=len(todo), partial=answers)

                return await researcher.run(
                    job.collection, questions=todo, topic=job.params.get("topic"), done=done, on_answer=on_answer
                )

            report = asyncio.run(go())
            return {"markdown": report.markdown(), "report": report.model_dump(mode="json")}

        return run_job(job_id, body)

    @app.task(name="quarry.eval_job", bind=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
    def eval_job(self: Task, job_id: str) -> str:
        def body(job: Any, beat: Any) -> dict[str, Any]:
            from quarry.evals.runner import EvalConfig, run_eval

            config = EvalConfig.model_validate(job.params)
            out = settings.storage.data_dir / "evals" / job.id

            def progress(p: Any) -> None:
                beat(done=p.done, total=p.total)

            # a redelivered job continues the same run directory where it stopped
            report = run_eval(config, library=runtime.library.for_tenant(job.tenant), out=out, on_progress=progress)
            return dict(report.model_dump(mode="json"))

        return run_job(job_id, body)

    @app.task(name="quarry.precompute_context", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
    def precompute_context(tenant: str, collection: str, document_id: int) -> str:
        """Prefill and cluster a long document's fixed context once (idempotent: the store
        is keyed by model, content hash and configuration)."""
        from quarry.memory.engine import precompute_context as precompute

        library = runtime.library.for_tenant(tenant)
        text = library.store.document_text(document_id)
        engine = runtime.memory_engine
        if engine.count_tokens(text) < settings.memory.min_document_tokens:
            return "short document: read from its passages"
        return str(precompute(text, engine=engine))

    @app.task(name="quarry.search_node", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=2)
    def search_node(task_json: str) -> str:
        from quarry.agents.searcher import NodeTask, Searcher

        task = NodeTask.model_validate_json(task_json)
        agent = runtime.agent(task.tenant)
        searcher = Searcher(
            agent.library, settings.agents, agent.reader, runtime.model, runtime.long_reader(task.tenant)
        )
        result = asyncio.run(searcher.run(task))
        result.worker = runtime.name
        return str(result.model_dump_json())
