"""Keys scoped to some collections of a tenant, walked over every endpoint of the real app
(FastAPI's TestClient, a real database and Redis, no worker): nothing of another collection
shows, single objects answer 404 (403 where the key lacks the right), lists leave them
out. Also: names follow one pattern, questions have bounds, timestamps carry a zone, and
every 4xx is in the OpenAPI schema with its body."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from quarry.api.app import create_app
from quarry.api.keys import KeyStore, Right
from quarry.api.schemas import ErrorOut
from quarry.api.services import Services
from quarry.core.types import Answer
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from quarry.workers.jobs import JobStatus, JobStore
from tests.conftest import make_settings

ADMIN = "qk_admin_scope_test_0123456789"
SECRET = "zanzibar"  # in everything of collection a2, and nowhere in a1


@dataclass
class World:
    client: TestClient
    app: FastAPI
    tokens: dict[str, str]  # admin, writer and reader (both scoped to a1)
    ids: dict[str, Any] = field(default_factory=dict)

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)


def _jobs(store: JobStore, collection: str, word: str) -> dict[str, str]:
    """A finished job of each kind on `collection`, all mentioning `word`."""
    answer = Answer(question=f"What is the {word} plan?", answer=f"The {word} plan is secret.", collection=collection)
    made = {
        "ingest": store.create(
            "ingest", "acme", collection, {"documents": [{"name": f"{word}-notes.md", "text": word, "title": None}]}, 1
        ),
        "research": store.create("research", "acme", collection, {"questions": [answer.question]}, 1),
        "eval": store.create("eval", "acme", collection, {"dataset": f"{word}-qa", "path": f"/data/{word}"}),
    }
    results = {
        "ingest": {"added": [f"{word}-notes.md"]},
        "research": {"markdown": f"# {word} report\n", "report": {"sections": [{"question": answer.question}]}},
        "eval": {"systems": {word: {}}},
    }
    for kind, job in made.items():
        claim = store.claim(job.id, "test-worker", lease_s=60, max_attempts=3)
        assert claim is not None
        if kind == "research":
            store.heartbeat(claim, done=1, total=1, partial=[answer.model_dump(mode="json")])
        store.finish(claim, JobStatus.SUCCEEDED, result=results[kind])
    return {kind: job.id for kind, job in made.items()}


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceEmbedder, fresh_redis: Callable[[], str]
) -> Iterator[World]:
    from quarry.workers.app import make_celery

    root: Path = tmp_path_factory.mktemp("scopes")
    settings = make_settings(root, service={"admin_key": ADMIN, "redis_url": fresh_redis()})
    library = Library(settings, embedder=embedder)
    acme = library.for_tenant("acme")
    acme.ingest_documents("a1", [text_document("The Atlantis project builds tide gauges.", "atlantis-notes.md")])
    acme.ingest_documents("a2", [text_document("The Zanzibar merger closes in May.", "zanzibar-merger.md")])
    engine = library.store.engine
    jobs, keys = JobStore(engine), KeyStore(engine)
    services = Services(settings, library, jobs, keys, celery=make_celery(settings))
    writer, writer_token = keys.create("writer", "acme", ["a1"], Right.WRITE)
    _, reader_token = keys.create("reader", "acme", ["a1"], Right.READ)
    app = create_app(settings, services)
    with TestClient(app, raise_server_exceptions=False) as client:
        w = World(client, app, {"admin": ADMIN, "writer": writer_token, "reader": reader_token})
        w.ids = {
            "a1": _jobs(jobs, "a1", "atlantis"),
            "a2": _jobs(jobs, "a2", SECRET),
            "a2_document": acme.documents("a2")[0].id,
            "writer_key": writer.id,
        }
        yield w
    library.close()


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every API route, however the app nests its routers."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for r in contexts:
            if isinstance(r, APIRoute) or hasattr(r, "original_route"):
                found += [(m, r.path) for m in sorted(r.methods or ()) if m != "HEAD"]
    return found


OUT_OF_SCOPE = {"a2": 404}  # what an out-of-scope object answers
# For each route: the request the scoped keys send about collection a2 (or its jobs), and the
# statuses the writer and the reader get. Lists and the key's own info answer 200 (checked for
# leaks below). A new route fails the test until it is added here.
WALK: dict[tuple[str, str], tuple[dict[str, Any], int, int]] = {
    ("POST", "/v1/collections"): ({"json": {"name": "a2"}}, 403, 403),
    ("GET", "/v1/collections"): ({}, 200, 200),
    ("GET", "/v1/collections/{name}"): ({}, 404, 404),
    ("DELETE", "/v1/collections/{name}"): ({}, 404, 403),
    ("POST", "/v1/collections/{name}/documents"): ({"files": {"files": ("x.txt", b"hello there")}}, 404, 403),
    ("GET", "/v1/collections/{name}/documents"): ({}, 404, 404),
    ("POST", "/v1/collections/{name}/documents/text"): (
        {"json": {"documents": [{"name": "x.md", "text": "hello"}]}},
        404,
        403,
    ),
    ("GET", "/v1/collections/{name}/documents/{document_id}"): ({}, 404, 404),
    ("DELETE", "/v1/collections/{name}/documents/{document_id}"): ({}, 404, 403),
    ("POST", "/v1/collections/{name}/search"): ({"json": {"query": "merger"}}, 404, 404),
    ("POST", "/v1/collections/{name}/ask"): ({"json": {"question": "When does the merger close?"}}, 404, 404),
    ("POST", "/v1/collections/{name}/ask/stream"): ({"json": {"question": "When does it close?"}}, 404, 404),
    ("POST", "/v1/research"): ({"json": {"collection": "a2", "topic": "mergers"}}, 404, 404),
    ("GET", "/v1/research/{job_id}"): ({}, 404, 404),
    ("GET", "/v1/research/{job_id}/result"): ({}, 404, 404),
    ("POST", "/v1/research/{job_id}/cancel"): ({}, 404, 404),
    ("POST", "/v1/evals"): ({"json": {"dataset": "jsonl", "path": "/tmp", "collection": "a2"}}, 403, 403),
    ("GET", "/v1/evals/{job_id}"): ({}, 403, 403),
    ("GET", "/v1/jobs/{job_id}"): ({}, 404, 404),
    ("GET", "/v1/jobs"): ({}, 200, 200),
    ("POST", "/v1/keys"): ({"json": {"name": "x", "tenant": "acme"}}, 403, 403),
    ("GET", "/v1/keys"): ({}, 403, 403),
    ("DELETE", "/v1/keys/{key_id}"): ({}, 403, 403),
    ("GET", "/v1/me"): ({}, 200, 200),
    ("GET", "/v1/health"): ({}, 200, 200),
    ("GET", "/metrics"): ({}, 200, 200),
    ("GET", "/"): ({}, 200, 200),
    ("GET", "/docs"): ({}, 200, 200),
    ("GET", "/docs/oauth2-redirect"): ({}, 200, 200),
    ("GET", "/redoc"): ({}, 200, 200),
}
UNDOCUMENTED = {"/", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/v1/health"}


def _fill(world: World, path: str, kind: str) -> str:
    return path.format(
        name="a2",
        document_id=world.ids["a2_document"],
        key_id=world.ids["writer_key"],
        job_id=world.ids["a2"][kind],
    )


def _documented(world: World, method: str, path: str, response: httpx.Response) -> None:
    """A 4xx is in the OpenAPI schema for its operation, and its body is an ErrorOut."""
    if response.status_code < 400:
        return
    operation = world.app.openapi()["paths"][path][method.lower()]
    assert str(response.status_code) in operation["responses"], (method, path, response.status_code)
    ErrorOut.model_validate(response.json())


@pytest.mark.parametrize("who", ["writer", "reader"])
def test_a_scoped_key_sees_nothing_of_other_collections_on_any_endpoint(world: World, who: str) -> None:
    routes = api_routes(world.app)
    assert set(routes) == set(WALK), (
        set(routes) ^ set(WALK),
        "a route was added or removed: say what a scoped key gets",
    )
    for method, path in routes:
        request, writer_status, reader_status = WALK[(method, path)]
        expected = writer_status if who == "writer" else reader_status
        if path.startswith("/v1/jobs/"):
            kinds = ["ingest", "research", "eval"]  # any job of a2, whatever its kind
        else:
            kinds = [
                "research" if path.startswith("/v1/research") else "eval" if path.startswith("/v1/evals") else "ingest"
            ]
        for kind in kinds:
            url = _fill(world, path, kind)
            r = world.call(who, method, url, **request)
            if path == "/v1/health":  # no worker runs here: degraded, and still nothing to leak
                assert r.status_code in (200, 503)
            else:
                assert r.status_code == expected, (who, method, url, r.status_code, r.text[:300])
            assert SECRET not in r.text.lower(), (who, method, url, r.text[:300])
            if path not in UNDOCUMENTED:
                _documented(world, method, path, r)
    # 404 bodies say the same as for a job that never existed
    missing = world.call(who, "GET", "/v1/jobs/no-such-job")
    hidden = world.call(who, "GET", f"/v1/jobs/{world.ids['a2']['research']}")
    assert missing.status_code == hidden.status_code == 404
    assert missing.json()["detail"].replace("no-such-job", "X") == hidden.json()["detail"].replace(
        world.ids["a2"]["research"], "X"
    )


def test_a_scoped_key_still_sees_its_own_collections(world: World) -> None:
    a1 = world.ids["a1"]
    listed = world.call("reader", "GET", "/v1/jobs").json()
    assert {j["id"] for j in listed} == set(a1.values())
    assert {j["id"] for j in world.call("reader", "GET", "/v1/jobs", params={"kind": "research"}).json()} == {
        a1["research"]
    }
    assert world.call("reader", "GET", f"/v1/jobs/{a1['ingest']}").status_code == 200
    status = world.call("reader", "GET", f"/v1/research/{a1['research']}")
    assert status.status_code == 200 and "atlantis" in status.json()["partial"]["markdown"]
    report = world.call("reader", "GET", f"/v1/research/{a1['research']}/result", params={"format": "markdown"})
    assert report.status_code == 200 and report.text.startswith("# atlantis report")
    assert world.call("reader", "POST", "/v1/research", json={"collection": "a1", "topic": "tides"}).status_code == 202
    # the admin, acting as the tenant, sees both collections' jobs
    everything = world.call("admin", "GET", "/v1/jobs", headers={"X-Quarry-Tenant": "acme"}).json()
    assert set(a1.values()) | set(world.ids["a2"].values()) <= {j["id"] for j in everything}


@pytest.mark.parametrize(
    "tenant", ["/", "", " ", "a b", "../x", "x" * 65, "-leading", "über", "a\tb", "null", "None", "undefined"]
)
def test_tenant_names_follow_one_pattern(world: World, tenant: str) -> None:
    r = world.call("admin", "GET", "/v1/collections", headers={"X-Quarry-Tenant": tenant.encode()})
    if tenant.strip():  # an empty header is no header: the admin's own tenant
        assert r.status_code == 422 and "x-quarry-tenant" in r.text.lower(), r.text
        _documented(world, "GET", "/v1/collections", r)
    created = world.call("admin", "POST", "/v1/keys", json={"name": "k", "tenant": tenant})
    assert created.status_code == 422
    _documented(world, "POST", "/v1/keys", created)


def test_collection_names_follow_the_same_pattern(world: World) -> None:
    assert world.call("admin", "POST", "/v1/collections", json={"name": "bad name"}).status_code == 422
    assert world.call("admin", "POST", "/v1/collections", json={"name": "null"}).status_code == 422
    assert world.call("admin", "POST", "/v1/collections/bad%20name/search", json={"query": "x"}).status_code == 422
    r = world.call("admin", "POST", "/v1/research", json={"collection": "../a1", "topic": "x"})
    assert r.status_code == 422
    assert (
        world.call("admin", "POST", "/v1/keys", json={"name": "k", "tenant": "t", "collections": ["a b"]}).status_code
        == 422
    )
    ok = world.call("admin", "POST", "/v1/keys", json={"name": "k", "tenant": "t.1_x-y", "collections": ["*", "a1"]})
    assert ok.status_code == 201


@pytest.mark.parametrize("question", ["0", "ab", "  a  ", "x" * 4001])
def test_questions_out_of_bounds_are_422_with_the_limit(world: World, question: str) -> None:
    for path in ("/v1/collections/a1/ask", "/v1/collections/a1/ask/stream"):
        r = world.call("admin", "POST", path, json={"question": question}, headers={"X-Quarry-Tenant": "acme"})
        assert r.status_code == 422, (path, r.status_code, r.text[:200])
        assert "the limit is 4000" in r.json()["detail"] or "at least 3" in r.json()["detail"]
        _documented(world, "POST", path.replace("a1", "{name}"), r)
    r = world.call("admin", "POST", "/v1/research", json={"collection": "a1", "questions": [question]})
    assert r.status_code == 422


def test_a_three_character_question_is_answered(world: World) -> None:
    r = world.call(
        "admin", "POST", "/v1/collections/a1/ask", json={"question": "tide"}, headers={"X-Quarry-Tenant": "acme"}
    )
    assert r.status_code == 200 and r.json()["question"] == "tide"


_TIMESTAMP = re.compile(r'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)([^"]*)"')


def test_timestamps_in_responses_carry_a_zone(world: World) -> None:
    acme = {"X-Quarry-Tenant": "acme"}
    bodies = [
        world.call("admin", "GET", "/v1/collections", headers=acme).text,
        world.call("admin", "GET", "/v1/collections/a1", headers=acme).text,
        world.call("admin", "GET", "/v1/jobs", headers=acme).text,
        world.call("admin", "GET", f"/v1/jobs/{world.ids['a1']['ingest']}", headers=acme).text,
        world.call("admin", "GET", f"/v1/research/{world.ids['a1']['research']}", headers=acme).text,
        world.call("admin", "GET", "/v1/keys").text,
    ]
    stamps = [m.groups() for body in bodies for m in _TIMESTAMP.finditer(body)]
    assert len(stamps) >= 10
    assert all(zone in ("Z", "+00:00") for _, zone in stamps), stamps
