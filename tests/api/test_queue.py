"""The job queue under faults, against the live service: Redis down (503 at once, nothing
stored), a backlog (waiting jobs are not sent again; past the bound, 429), and a lost
message (sent again, then failed with the reason)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from quarry.workers.redis_server import EmbeddedRedis
from tests.api.conftest import start_live, stop_live

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]


def _docs(*names: str) -> dict:
    return {"documents": [{"name": n, "text": f"{n} says that basalt columns cool slowly."} for n in names]}


def test_redis_down_job_endpoints_answer_503_at_once_and_store_nothing(tmp_path: Path) -> None:
    broker = EmbeddedRedis(tmp_path / "redis").start()
    live = start_live(tmp_path / "svc", broker.url)
    try:
        with live.client() as c:
            assert c.post("/v1/collections", json={"name": "kb"}).status_code in (200, 201)
            broker.stop()
            started = time.monotonic()
            r = c.post("/v1/collections/kb/documents/text", json=_docs("a.txt"))
            assert r.status_code == 503, r.text
            assert time.monotonic() - started < 5
            assert r.headers["Retry-After"] and "try again" in r.json()["detail"]
            up = c.post("/v1/collections/kb/documents", files=[("files", ("b.txt", b"basalt cools"))])
            assert up.status_code == 503, up.text
            research = c.post("/v1/research", json={"collection": "kb", "questions": ["What cools?"]})
            assert research.status_code == 503, research.text
            assert c.get("/v1/jobs").json() == []
            assert c.get("/v1/collections/kb/documents").json() == []  # no 'queued' document left behind
            broker.start()
            r = c.post("/v1/collections/kb/documents/text", json=_docs("a.txt"))
            assert r.status_code == 202, r.text
            assert live.wait_job(c, r.json()["id"])["status"] == "succeeded"
    finally:
        stop_live(live)
        broker.stop()


def _lose(queue: redis.Redis, job_id: str) -> None:
    """Drop the job's message from the queue, as a broker restarted without it would."""
    for raw in queue.lrange("ingest", 0, -1):
        if job_id.encode() in raw:
            queue.lrem("ingest", 1, raw)
            return
    raise AssertionError(f"no message for job {job_id} in the queue")


def _wait_attempts(client: object, job_id: str, attempts: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()  # type: ignore[attr-defined]
        if job["attempts"] >= attempts or job["status"] != "queued":
            return dict(job)
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not sent again within {timeout}s")


def test_waiting_jobs_are_not_sent_again_lost_ones_are_and_the_queue_is_bounded(
    tmp_path: Path, fresh_redis: Callable[[], str]
) -> None:
    url = fresh_redis()
    live = start_live(tmp_path, url, job_lease_s=5, job_max_attempts=2, max_queued_jobs=3)
    queue = redis.Redis.from_url(url)
    try:
        live.kill_worker(live.workers[0], signal.SIGTERM)
        with live.client() as c:
            ids = [c.post("/v1/collections/kb/documents/text", json=_docs(f"d{i}.txt")).json()["id"] for i in range(3)]
            full = c.post("/v1/collections/kb/documents/text", json=_docs("d3.txt"))
            assert full.status_code == 429, full.text
            assert int(full.headers["Retry-After"]) >= 1
            time.sleep(13)  # more than two leases, many sweeps
            assert queue.llen("ingest") == 3  # waiting jobs were not sent again
            assert [c.get(f"/v1/jobs/{i}").json()["attempts"] for i in ids] == [0, 0, 0]

            lost = ids[0]
            _lose(queue, lost)
            assert _wait_attempts(c, lost, 1)["attempts"] == 1  # sent again, counted as a delivery
            assert queue.llen("ingest") == 3
            _lose(queue, lost)  # no delivery left (the claim would be the second): it fails, with the reason
            final = live.wait_job(c, lost, timeout=30)
            assert final["status"] == "failed" and "lost" in final["error"], final

            live.start_worker()
            for job_id in ids[1:]:
                job = live.wait_job(c, job_id, timeout=180)
                assert job["status"] == "succeeded" and job["attempts"] == 1, job
    finally:
        queue.close()
        stop_live(live)


def test_small_ingest_jobs_waiting_together_are_ingested_as_one_batch(
    tmp_path: Path, fresh_redis: Callable[[], str]
) -> None:
    live = start_live(tmp_path, fresh_redis())
    try:
        live.kill_worker(live.workers[0], signal.SIGTERM)
        with live.client() as c:
            ids = [c.post("/v1/collections/kb/documents/text", json=_docs(f"d{i}.txt")).json()["id"] for i in range(5)]
            newer = {"documents": [{"name": "d0.txt", "text": "d0.txt now says that granite cools slower."}]}
            again = c.post("/v1/collections/kb/documents/text", json=newer).json()["id"]
            live.start_worker("ingest")
            jobs = {job_id: live.wait_job(c, job_id) for job_id in [*ids, again]}
            assert all(j["status"] == "succeeded" and j["done"] == j["total"] == 1 for j in jobs.values()), jobs
            results = {job_id: c.get(f"/v1/jobs/{job_id}").json()["result"] for job_id in jobs}
            assert max(r.get("batch_jobs", 1) for r in results.values()) >= 2  # several ran as one
            for i, job_id in enumerate(ids):  # each job reports its own document only
                assert results[job_id]["added"] == [f"d{i}.txt"], results[job_id]
                assert results[job_id]["chunks"] >= 1
            # the newer version of d0.txt was not taken into d0.txt's batch: it replaced it after
            assert results[again]["replaced"] == ["d0.txt"], results[again]
            docs = c.get("/v1/collections/kb/documents").json()
            assert sorted(d["source"] for d in docs) == [f"d{i}.txt" for i in range(5)]
            assert all(d["status"] == "indexed" for d in docs)
            hits = c.post("/v1/collections/kb/search", json={"query": "granite cools slower", "k": 1}).json()
            assert hits["hits"][0]["document"] == "d0.txt"
    finally:
        stop_live(live)
