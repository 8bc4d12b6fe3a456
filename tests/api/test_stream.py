"""The answer stream over real HTTP: the event framing clients parse, keep-alive pings while
the planner thinks, and a client that goes away stops the run."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from quarry.api.app import create_app
from quarry.api.keys import KeyStore
from quarry.api.services import Services
from quarry.core.chat import Completion, Message
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from quarry.workers.jobs import JobStore
from tests.agents.scripted import ScriptedModel
from tests.conftest import make_settings

ADMIN = "qk_admin_stream_test_0123456789"
QUESTION = "What is green tea made from?"


class SlowPlanner(ScriptedModel):
    """Plans for `plan_s` seconds (a large model thinking) and notes when that is cancelled."""

    def __init__(self) -> None:
        plan = {"ops": [{"op": "add_node", "id": "a", "question": QUESTION, "parents": []}]}
        super().__init__(plan, {QUESTION: "Camellia sinensis leaves"}, writer="Green tea is made from leaves [1].")
        self.plan_s = 0.0
        self.planning = threading.Event()
        self.cancelled = threading.Event()

    async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
        if self._role(messages) == "plan":
            self.planning.set()
            try:
                await asyncio.sleep(self.plan_s)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return await super().complete(messages, **kwargs)


@dataclass
class Service:
    url: str
    model: SlowPlanner

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceEmbedder) -> Iterator[Service]:
    root: Path = tmp_path_factory.mktemp("stream")
    settings = make_settings(root, service={"admin_key": ADMIN, "sse_ping_s": 0.2, "max_concurrent_asks": 1})
    library = Library(settings, embedder=embedder)
    library.ingest_documents("kb", [text_document("Green tea is made from leaves of Camellia sinensis.", "tea.md")])
    model = SlowPlanner()
    engine = library.store.engine
    services = Services(settings, library, JobStore(engine), KeyStore(engine), celery=None, model=model)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings, services), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.01)
    yield Service(f"http://127.0.0.1:{sock.getsockname()[1]}", model)
    server.should_exit = True
    thread.join(timeout=10)
    library.close()


def parse_like_the_ui(body: str) -> list[tuple[str, str]]:
    """(event type, data) per block, as ui/static/js/api.js reads them; blocks without
    data (comments such as pings) are kept with type "comment" so that tests can count them."""
    blocks = []
    for block in body.split("\n\n"):
        if not block:
            continue
        kind, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        blocks.append((kind, "\n".join(data)) if data else ("comment", block))
    return blocks


def test_pings_while_planning_and_the_event_framing(service: Service) -> None:
    service.model.plan_s = 1.0
    with service.client() as c, c.stream("POST", "/v1/collections/kb/ask/stream", json={"question": QUESTION}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    assert "\r" not in body  # "\n" framing, as before
    blocks = parse_like_the_ui(body)
    first_event = next(i for i, (kind, _) in enumerate(blocks) if kind != "comment")
    pings = [text for kind, text in blocks[:first_event] if kind == "comment"]
    assert len(pings) >= 2 and all(p.startswith(": ping") for p in pings)  # kept alive during the 1 s plan
    events = [(kind, json.loads(data)) for kind, data in blocks if kind != "comment"]
    assert all(kind == data["type"] for kind, data in events)  # `event:` names the data's type
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "plan" and kinds[-1] == "done"
    assert {"node_started", "node_answer", "token", "citations"} <= set(kinds)
    assert events[-1][1]["answer"]["citations"][0]["document"] == "tea.md"


def test_client_going_away_stops_the_run(service: Service) -> None:
    model = service.model
    model.plan_s, model.planning, model.cancelled = 60.0, threading.Event(), threading.Event()
    with service.client() as c:
        with c.stream("POST", "/v1/collections/kb/ask/stream", json={"question": QUESTION}) as r:
            assert r.status_code == 200
            assert model.planning.wait(10)
            next(r.iter_lines())  # a ping: the stream is open; then the client hangs up
        assert model.cancelled.wait(10), "the planner kept running after the client left"
        # the run gave its slot back (max_concurrent_asks = 1): the next question is answered
        model.plan_s = 0.0
        with c.stream("POST", "/v1/collections/kb/ask/stream", json={"question": QUESTION}) as r:
            assert "event: done" in list(r.iter_lines())
