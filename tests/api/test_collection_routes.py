"""The collection and document routes through the real app (FastAPI's TestClient), a real
database and Redis: every error they answer is declared in the OpenAPI schema, document
timestamps carry their zone, and a damaged index manifest never breaks the listing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from quarry.api.app import create_app
from quarry.api.keys import KeyStore
from quarry.api.services import Services
from quarry.core.settings import Settings
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from quarry.workers.jobs import JobStore
from tests.conftest import make_settings

ADMIN = "qk_admin_collection_errors_0123456789"
TEXT = {"documents": [{"name": "note.md", "text": "Basalt is a volcanic rock."}]}


def test_every_error_a_collection_route_answers_is_declared(
    tmp_path: Path, embedder: SentenceEmbedder, fresh_redis: Callable[[], str]
) -> None:
    from quarry.workers.app import make_celery

    service = {"admin_key": ADMIN, "redis_url": fresh_redis(), "max_queued_jobs": 1, "max_upload_bytes": 20_000}
    settings = make_settings(tmp_path, service=service)
    library = Library(settings, embedder=embedder)
    library.ingest_documents("kb", [text_document("Green tea is made from leaves.", "tea.md")])
    # a collection embedded with another model: its routes answer 503 (ConfigurationError)
    library.store.create_collection("other", "another-model", embedder.dimension)
    doc_id = library.documents("kb")[0].id
    engine = library.store.engine
    services = Services(settings, library, JobStore(engine), KeyStore(engine), celery=make_celery(settings))
    app = create_app(settings, services)
    seen: list[tuple[str, str, int]] = []
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as client:

        def call(method: str, route: str, path: str, status: int, **kwargs: object) -> None:
            r = client.request(method, path, **kwargs)  # type: ignore[arg-type]
            assert r.status_code == status, (method, path, r.status_code, r.text)
            seen.append((method, route, status))

        call("POST", "/v1/collections", "/v1/collections", 409, json={"name": "kb"})
        call("GET", "/v1/collections/{name}/documents", "/v1/collections/other/documents", 503)
        call("GET", "/v1/collections/{name}/documents/{document_id}", "/v1/collections/other/documents/1", 503)
        call("DELETE", "/v1/collections/{name}/documents/{document_id}", "/v1/collections/other/documents/1", 503)
        call("POST", "/v1/collections/{name}/documents/text", "/v1/collections/other/documents/text", 503, json=TEXT)
        upload = "/v1/collections/{name}/documents"
        call(
            "POST", upload, "/v1/collections/kb/documents", 415, files={"files": ("a.png", b"\x89PNG\r\n", "image/png")}
        )
        call("POST", upload, "/v1/collections/kb/documents", 413, files={"files": ("big.txt", b"x" * 40_000)})
        call("POST", "/v1/collections/{name}/documents/text", "/v1/collections/kb/documents/text", 202, json=TEXT)
        call("POST", "/v1/collections/{name}/documents/text", "/v1/collections/kb/documents/text", 429, json=TEXT)
        call("POST", upload, "/v1/collections/kb/documents", 429, files={"files": ("b.md", b"# B\n\nBasalt.")})
        assert client.get(f"/v1/collections/kb/documents/{doc_id}").status_code == 200
        schema = client.get("/openapi.json").json()
    library.close()
    undeclared = [
        (m, p, s) for m, p, s in seen if s >= 400 and str(s) not in schema["paths"][p][m.lower()]["responses"]
    ]
    assert not undeclared, undeclared


def _client(settings: Settings, library: Library) -> TestClient:
    engine = library.store.engine
    services = Services(settings, library, JobStore(engine), KeyStore(engine), celery=None)
    return TestClient(create_app(settings, services), headers={"Authorization": f"Bearer {ADMIN}"})


def test_document_timestamps_carry_their_zone(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    settings = make_settings(tmp_path, service={"admin_key": ADMIN})  # SQLite: stores no zone
    library = Library(settings, embedder=embedder)
    library.ingest_documents("kb", [text_document("Green tea is made from leaves.", "tea.md")])
    with _client(settings, library) as client:
        listed = client.get("/v1/collections/kb/documents").json()
        one = client.get(f"/v1/collections/kb/documents/{listed[0]['id']}").json()
    library.close()
    for doc in (listed[0], one):
        for field in ("created_at", "updated_at"):
            stamp = datetime.fromisoformat(doc[field])
            assert stamp.utcoffset() == timedelta(0), doc[field]  # UTC, not naive


@pytest.mark.parametrize(
    "manifest", [b"[1, 2]", b'"flat"', b"null", b"{not json", b"\xff\xfe\x00", b'{"dense_kind": 3}']
)
def test_a_damaged_index_manifest_lists_as_unknown_and_is_rebuilt(
    tmp_path: Path, embedder: SentenceEmbedder, manifest: bytes
) -> None:
    settings = make_settings(tmp_path, service={"admin_key": ADMIN})
    writer = Library(settings, embedder=embedder)
    writer.ingest_documents("kb", [text_document("Green tea is made from leaves of Camellia sinensis.", "tea.md")])
    collection_id = writer.collection("kb").id
    writer.close()
    (settings.storage.index_dir / str(collection_id) / "manifest.json").write_bytes(manifest)
    library = Library(settings, embedder=embedder)  # another process: the index not loaded yet
    with _client(settings, library) as client:
        r = client.get("/v1/collections")
        assert r.status_code == 200, r.text
        assert [(c["name"], c["index_kind"]) for c in r.json()] == [("kb", "unknown")]
        assert client.get("/v1/collections/kb").json()["index_kind"] == "unknown"
        hits = client.post("/v1/collections/kb/search", json={"query": "green tea", "k": 1}).json()["hits"]
        assert hits[0]["document"] == "tea.md"  # rebuilt from the database
        assert client.get("/v1/collections/kb").json()["index_kind"] == "flat"
    library.close()
