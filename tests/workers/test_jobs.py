"""Job claims are fenced: a worker whose lease lapsed cannot touch a job handed to another
(real SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from quarry.retrieval.storage import Store
from quarry.workers.jobs import JobLostError, JobStatus, JobStore


def test_a_stalled_worker_cannot_finish_a_job_handed_to_another(store: Store) -> None:
    jobs = JobStore(store.engine)
    job = jobs.create("ingest", "t", "c", {})
    first = jobs.claim(job.id, "worker-a", lease_s=60, max_attempts=3)
    assert first is not None and first.attempt == 1
    time.sleep(0.3)  # worker-a stalls past its (short) lease
    second = jobs.claim(job.id, "worker-b", lease_s=0.2, max_attempts=3)
    assert second is not None and second.attempt == 2
    # worker-a wakes up: its heartbeat and its finish are refused
    with pytest.raises(JobLostError):
        jobs.heartbeat(first, done=1)
    assert not jobs.finish(first, JobStatus.SUCCEEDED, result={"by": "a"})
    assert jobs.get(job.id).status == JobStatus.RUNNING
    jobs.heartbeat(second, done=2)
    assert jobs.finish(second, JobStatus.SUCCEEDED, result={"by": "b"})
    done = jobs.get(job.id)
    assert done.status == JobStatus.SUCCEEDED and done.result == {"by": "b"} and done.done == 2


def test_same_worker_name_later_attempt_is_fenced_by_attempt(store: Store) -> None:
    jobs = JobStore(store.engine)
    job = jobs.create("ingest", "t", "c", {})
    first = jobs.claim(job.id, "w", lease_s=60, max_attempts=3)
    assert first is not None
    time.sleep(0.3)
    second = jobs.claim(job.id, "w", lease_s=0.2, max_attempts=3)
    assert second is not None and second.attempt == first.attempt + 1
    assert not jobs.finish(first, JobStatus.FAILED, error="stale")
    assert jobs.finish(second, JobStatus.SUCCEEDED)


def test_release_hands_the_job_back_at_once(store: Store) -> None:
    jobs = JobStore(store.engine)
    job = jobs.create("ingest", "t", "c", {})
    claim = jobs.claim(job.id, "w", lease_s=60, max_attempts=3)
    assert claim is not None
    assert jobs.claim(job.id, "other", lease_s=60, max_attempts=3) is None  # held, lease fresh
    assert jobs.release(claim)
    again = jobs.claim(job.id, "other", lease_s=60, max_attempts=3)  # no lease to wait out
    assert again is not None and again.attempt == 2
    assert not jobs.release(claim)  # the old claim no longer holds anything


def test_requeue_and_resend_touch_only_jobs_whose_lease_lapsed(store: Store) -> None:
    jobs = JobStore(store.engine)
    waiting = jobs.create("ingest", "t", "c", {})
    running = jobs.create("ingest", "t", "c", {})
    claim = jobs.claim(running.id, "w", lease_s=60, max_attempts=3)
    assert claim is not None
    assert not jobs.requeue(running.id, lease_s=60)  # its worker beats
    assert not jobs.resend(waiting.id, lease_s=60)  # created just now
    time.sleep(0.3)
    assert jobs.requeue(running.id, lease_s=0.2)
    assert jobs.resend(waiting.id, lease_s=0.2)
    assert jobs.get(waiting.id).attempts == 1
    assert jobs.count_queued() == 2
    with pytest.raises(JobLostError):
        jobs.heartbeat(claim)


STALLED_WORKER = """
import sys, time
from quarry.retrieval.storage import Store
from quarry.workers.jobs import JobLostError, JobStatus, JobStore

jobs = JobStore(Store(sys.argv[1]).engine)
claim = jobs.claim(sys.argv[2], "worker-a", 60, 3)
print("claimed" if claim else "refused", flush=True)
while True:  # works, reporting progress, until its claim is found lost
    time.sleep(0.05)
    try:
        jobs.heartbeat(claim, done=1)
    except JobLostError:
        print("lost", flush=True)
        break
print("finished" if jobs.finish(claim, JobStatus.SUCCEEDED, result={"by": "a"}) else "refused", flush=True)
"""


def test_a_sigstopped_worker_resumed_after_its_job_was_reclaimed(store: Store) -> None:
    """Two real processes: worker A claims the job and is stopped (SIGSTOP) past its lease;
    worker B takes the job over; A, resumed, finds its claim lost and cannot finish it."""
    jobs = JobStore(store.engine)
    job = jobs.create("ingest", "t", "c", {})
    url = store.engine.url.render_as_string(hide_password=False)
    a = subprocess.Popen(
        [sys.executable, "-c", STALLED_WORKER, url, job.id], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert a.stdout is not None and a.stdout.readline().strip() == "claimed"
        time.sleep(0.3)  # a few heartbeats
        a.send_signal(signal.SIGSTOP)
        time.sleep(0.8)
        b = jobs.claim(job.id, "worker-b", lease_s=0.5, max_attempts=3)
        assert b is not None and b.attempt == 2
        a.send_signal(signal.SIGCONT)
        out, _ = a.communicate(timeout=60)
        assert out.split() == ["lost", "refused"]
        assert jobs.get(job.id).status == JobStatus.RUNNING  # still B's
        assert jobs.finish(b, JobStatus.SUCCEEDED, result={"by": "b"})
        assert jobs.get(job.id).result == {"by": "b"}
    finally:
        if a.poll() is None:
            a.send_signal(signal.SIGCONT)
            a.kill()
            a.wait()
