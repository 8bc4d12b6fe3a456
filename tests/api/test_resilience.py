"""Workers killed mid-task, Redis restarted mid-job, and two workers on two "machines"
(separate data directories) sharing one PostgreSQL."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from quarry.retrieval.chunking import Chunker
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.loaders import text_document
from quarry.workers.redis_server import EmbeddedRedis
from tests.api.conftest import start_live, stop_live

# Each case waits on jobs for minutes at worst (restarts, leases running out): more than the default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(900)]


def _doc(i: int) -> str:
    return " ".join(
        f"Record {i}.{j} notes that sample {i} measured value {i * 13 + j} in trial {j}." for j in range(25)
    )


def test_worker_killed_mid_ingest_then_restarted(
    tmp_path: Path, embedder: SentenceEmbedder, fresh_redis: Callable[[], str]
) -> None:
    live = start_live(tmp_path, fresh_redis(), visibility_timeout_s=8, job_lease_s=6)
    live.env["QUARRY_INGEST__BATCH_CHUNKS"] = "16"
    try:
        live.kill_worker(live.workers[0], signal.SIGTERM)
        worker = live.start_worker("ingest")
        files = [(f"doc{i:03}.txt", _doc(i).encode()) for i in range(60)]
        with live.client() as c:
            r = c.post("/v1/collections/big/documents", files=[("files", f) for f in files])
            job_id = r.json()["id"]
            deadline = time.time() + 240
            while time.time() < deadline:
                job = c.get(f"/v1/jobs/{job_id}").json()
                if job["status"] == "running" and job["done"] >= 8:
                    break
                assert job["status"] in ("queued", "running"), job
                time.sleep(0.2)
            live.kill_worker(worker)  # SIGKILL, children included
            assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
            live.start_worker("ingest")
            job = live.wait_job(c, job_id, timeout=300)
            assert job["status"] == "succeeded", job
            assert job["attempts"] == 2
            docs = c.get("/v1/collections/big/documents").json()
            assert len(docs) == 60 and all(d["status"] == "indexed" for d in docs)
            chunker = Chunker(embedder.token_ids, live.settings.ingest.chunk_size, live.settings.ingest.chunk_overlap)
            expected = sum(len(chunker.split(text_document(d.decode(), name))) for name, d in files)
            info = c.get("/v1/collections/big").json()
            assert info["chunk_count"] == expected == sum(d["chunk_count"] for d in docs)
            hits = c.post("/v1/collections/big/search", json={"query": "sample 42 measured value", "k": 3}).json()
            assert "doc042.txt" in [h["document"] for h in hits["hits"]]
    finally:
        stop_live(live)


def test_redis_restarted_during_research(tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis").start()
    live = start_live(tmp_path / "svc", redis.url, job_lease_s=6, visibility_timeout_s=8)
    try:
        with live.client() as c:
            r = c.post(
                "/v1/collections/kb/documents/text",
                json={
                    "documents": [{"name": f"n{i}", "text": f"Fact {i}: the number {i} is lucky."} for i in range(5)]
                },
            )
            assert live.wait_job(c, r.json()["id"])["status"] == "succeeded"
            questions = [f"Which number is fact {i} about?" for i in range(12)]
            job_id = c.post("/v1/research", json={"collection": "kb", "questions": questions}).json()["id"]
            deadline = time.time() + 120
            while c.get(f"/v1/research/{job_id}").json()["done"] < 1 and time.time() < deadline:
                time.sleep(0.2)
            redis.stop()
            time.sleep(3)
            redis.start()
            final = live.wait_job(c, job_id, timeout=300, path="/v1/research")
            assert final["status"] in ("succeeded", "failed"), final
            if final["status"] == "failed":
                assert final["error"] and len(final["error"]) > 20
            else:
                assert final["done"] == 12
                assert len(c.get(f"/v1/research/{job_id}/result").json()["sections"]) == 12
    finally:
        stop_live(live)
        redis.stop()


def test_two_workers_two_machines_share_postgres(
    tmp_path: Path, postgres_url: str, fresh_redis: Callable[[], str]
) -> None:
    """Sibling nodes of one question run on different search workers, each with its own
    index cache (its own data directory) kept in sync from the shared database."""
    live = start_live(tmp_path / "api", fresh_redis(), database_url=postgres_url, node_executor="celery")
    try:
        live.kill_worker(live.workers[0], signal.SIGTERM)
        for machine in ("m1", "m2"):  # two more "machines", each with its own data directory
            live.env = {**live.env, "QUARRY_STORAGE__DATA_DIR": str(tmp_path / machine / ".quarry")}
            live.start_worker("ingest,search,research")
        with live.client() as c:
            deadline = time.time() + 180
            while c.get("/v1/health").json()["workers"] < 2 and time.time() < deadline:
                time.sleep(0.5)
            docs = [
                {"name": "eiffel", "text": "The Eiffel Tower in Paris was completed in 1889."},
                {"name": "bigben", "text": "Big Ben, the bell at Westminster in London, was completed in 1859."},
            ]
            r = c.post("/v1/collections/sites/documents/text", json={"documents": docs})
            assert live.wait_job(c, r.json()["id"])["status"] == "succeeded"
            workers: set[str] = set()
            for _ in range(3):
                answer = c.post(
                    "/v1/collections/sites/ask", json={"question": "Which is older, the Eiffel Tower or Big Ben?"}
                )
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["short_answer"] == "Big Ben"
                assert all(n["worker"] for n in body["nodes"])
                workers |= {n["worker"] for n in body["nodes"]}
            assert len(workers) == 2, workers
    finally:
        stop_live(live)
        from sqlalchemy import create_engine

        from tests.conftest import drop_schema

        engine = create_engine(postgres_url)
        drop_schema(engine)
        engine.dispose()
