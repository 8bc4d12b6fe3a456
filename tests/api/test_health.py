"""/v1/health on the live service: a worker that misses a ping (stopped for a moment) does
not flip it to 503 at once, and only the admin key sees the reasons."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ADMIN, start_live, stop_live

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]


def test_a_missed_ping_does_not_flap_and_details_need_the_admin_key(
    tmp_path: Path, fresh_redis: Callable[[], str]
) -> None:
    live = start_live(tmp_path, fresh_redis(), health_cache_s=8)
    worker = live.workers[0]
    try:
        with httpx.Client(base_url=live.url, timeout=30) as anonymous, live.client() as admin:
            first = anonymous.get("/v1/health")
            assert first.status_code == 200 and first.json()["workers"] == 1
            assert first.headers["x-content-type-options"] == "nosniff"
            os.killpg(worker.pid, signal.SIGSTOP)  # the worker cannot answer pings for a while
            try:
                stalled = anonymous.get("/v1/health")
                assert stalled.status_code == 200, stalled.text
                assert stalled.json()["workers"] == 1 and stalled.json()["details"] == {}
                assert "no ping reply" in admin.get("/v1/health").json()["details"]["workers"]
                time.sleep(9)  # past health_cache_s: now it is reported
                down = anonymous.get("/v1/health")
                assert down.status_code == 503 and down.json()["workers"] == 0
                assert down.json()["details"] == {}
                assert "redis://" not in down.text and "127.0.0.1" not in down.text
                wrong = anonymous.get("/v1/health", headers={"Authorization": "Bearer qk_not_the_admin"})
                assert wrong.json()["details"] == {}
            finally:
                os.killpg(worker.pid, signal.SIGCONT)
            deadline = time.time() + 60
            while anonymous.get("/v1/health").status_code != 200 and time.time() < deadline:
                time.sleep(0.5)
            assert anonymous.get("/v1/health").status_code == 200
            assert admin.get("/v1/health", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    finally:
        stop_live(live)
