"""The answer stream always ends with `done` or `error`: a run that fails with an
unexpected exception after the 200 status line still tells the client (the real app through
FastAPI's TestClient, a real collection, a scripted model whose writer has a bug)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from quarry.api.app import create_app
from quarry.api.errors import status_named
from quarry.api.keys import KeyStore
from quarry.api.services import Services
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from quarry.workers.jobs import JobStore
from tests.agents.scripted import BrokenWriter
from tests.conftest import make_settings

ADMIN = "qk_admin_stream_errors_0123456789"
QUESTION = "What is green tea made from?"


def test_a_run_that_fails_unexpectedly_ends_the_stream_with_an_error_event(
    tmp_path: Path, embedder: SentenceEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, service={"admin_key": ADMIN})
    library = Library(settings, embedder=embedder)
    library.ingest_documents("kb", [text_document("Green tea is made from leaves of Camellia sinensis.", "tea.md")])
    plan = {"ops": [{"op": "add_node", "id": "a", "question": QUESTION, "parents": []}]}
    model = BrokenWriter(plan, {QUESTION: "leaves"})
    engine = library.store.engine
    services = Services(settings, library, JobStore(engine), KeyStore(engine), celery=None, model=model)
    with caplog.at_level(logging.ERROR), TestClient(create_app(settings, services)) as client:
        r = client.post(
            "/v1/collections/kb/ask/stream", json={"question": QUESTION}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
    library.close()
    assert r.status_code == 200
    events = [line.split(": ", 1)[1] for line in r.text.splitlines() if line.startswith("event: ")]
    data = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[0] == "plan" and events[-1] == "error", events
    assert data[-1]["status"] == 500 and "internal error" in data[-1]["message"]
    assert data[-1]["error"] == "RuntimeError" and events.count("error") == 1  # the agent's own, forwarded
    logged = [r for r in caplog.records if r.name == "quarry.agents" and r.exc_info]
    assert logged and "a bug in the writer" in str(logged[0].exc_info[1])  # type: ignore[index]


def test_a_run_error_is_forwarded_with_the_status_its_type_has() -> None:
    assert status_named("LLMUnavailableError") == 502  # a subclass of a listed error
    assert status_named("CollectionNotFoundError") == 404 and status_named("ConfigurationError") == 503
    assert status_named("RuntimeError") == 500 and status_named(None) == 500
