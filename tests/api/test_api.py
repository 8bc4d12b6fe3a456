"""Every endpoint over real HTTP against a real worker: happy paths, errors, tenants."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Live
from tests.retrieval.helpers import docx_bytes, pdf_bytes

WHALES = b"# Whales\n\nBlue whales are the largest animals ever known to have lived on Earth."
TEA = b"Green tea is made from the unoxidised leaves of Camellia sinensis."


def _upload(client: httpx.Client, collection: str, files: list[tuple[str, bytes]]) -> httpx.Response:
    return client.post(f"/v1/collections/{collection}/documents", files=[("files", (n, d)) for n, d in files])


@pytest.fixture(scope="module")
def kb(live: Live) -> str:
    with live.client() as c:
        assert c.post("/v1/collections", json={"name": "kb"}).status_code == 201
        r = _upload(
            c,
            "kb",
            [
                ("whales.md", WHALES),
                ("tea.txt", TEA),
                ("report.pdf", pdf_bytes(["Comets have icy nuclei."])),
                ("notes.docx", docx_bytes("Notes", [("Chess", "The Sicilian Defence starts 1.e4 c5.")])),
            ],
        )
        assert r.status_code == 202, r.text
        job = live.wait_job(c, r.json()["id"])
        assert job["status"] == "succeeded", job
        assert job["result"]["chunks"] >= 4 and not job["result"]["failed"]
    return "kb"


def test_auth_is_required(live: Live) -> None:
    with live.client(None) as c:
        r = c.get("/v1/collections")
        assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    with live.client("qk_wrong") as c:
        assert c.get("/v1/collections").status_code == 401
    with live.client() as c:
        assert c.get("/v1/health").status_code == 200  # health needs no key
        assert "quarry_http_requests_total" in c.get("/metrics").text
        assert "/v1/collections/{name}/ask/stream" in c.get("/openapi.json").json()["paths"]


def test_collections_and_documents(live: Live, kb: str) -> None:
    with live.client() as c:
        assert c.post("/v1/collections", json={"name": "kb"}).status_code == 409
        assert c.post("/v1/collections", json={"name": "../x"}).status_code == 422
        assert c.post("/v1/collections", json={"nme": "x"}).status_code == 422
        info = c.get("/v1/collections/kb").json()
        assert info["document_count"] == 4 and info["chunk_count"] >= 4 and info["index_kind"] == "flat"
        assert "kb" in [x["name"] for x in c.get("/v1/collections").json()]
        docs = {d["source"]: d for d in c.get("/v1/collections/kb/documents").json()}
        assert set(docs) == {"whales.md", "tea.txt", "report.pdf", "notes.docx"}
        assert all(d["status"] == "indexed" for d in docs.values())
        doc = c.get(f"/v1/collections/kb/documents/{docs['tea.txt']['id']}", params={"start": 0, "end": 9}).json()
        assert doc["text"] == "Green tea"
        assert c.get("/v1/collections/nope").status_code == 404
        assert c.get("/v1/collections/kb/documents/99999").status_code == 404


def test_search_ask_and_stream(live: Live, kb: str) -> None:
    with live.client() as c:
        hits = c.post("/v1/collections/kb/search", json={"query": "largest animal", "k": 2}).json()["hits"]
        assert hits[0]["document"] == "whales.md" and hits[0]["score_kind"] == "fused"
        assert c.post("/v1/collections/kb/search", json={"query": "  "}).status_code == 422
        assert c.post("/v1/collections/kb/search", json={"query": "x", "k": 0}).status_code == 422
        answer = c.post("/v1/collections/kb/ask", json={"question": "What is green tea made from?"}).json()
        assert answer["extractive"] and answer["citations"][0]["document"] == "tea.txt"
        assert answer["nodes"][0]["state"] == "done"
        events = []
        with c.stream("POST", "/v1/collections/kb/ask/stream", json={"question": "What do comets have?"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        kinds = [e["type"] for e in events]
        assert kinds[0] == "plan" and kinds[-1] == "done"
        assert {"node_started", "node_evidence", "node_answer", "token", "citations"} <= set(kinds)
        assert events[-1]["answer"]["citations"][0]["document"] == "report.pdf"
        assert c.post("/v1/collections/nope/ask/stream", json={"question": "x?"}).status_code == 404
        # a long question (a pasted paragraph) is answered; one past search.max_query_chars gets a clear 422
        long = "Considering everything in these notes about animals and drinks, " * 15 + "what is green tea made from?"
        assert 900 < len(long) < 4000
        answer = c.post("/v1/collections/kb/ask", json={"question": long})
        assert answer.status_code == 200 and answer.json()["citations"]
        with c.stream("POST", "/v1/collections/kb/ask/stream", json={"question": long}) as r:
            assert r.status_code == 200 and "event: done" in list(r.iter_lines())
        too_long = c.post("/v1/collections/kb/ask/stream", json={"question": "why? " * 1000})
        assert too_long.status_code == 422 and "the limit is 4000" in too_long.json()["detail"]


@pytest.mark.parametrize(
    ("name", "data", "status", "fragment"),
    [
        ("empty.txt", b"", 422, "empty"),
        ("broken.pdf", b"%PDF-1.4 this is not a pdf", 422, "PDF"),
        ("noise.txt", bytes(range(256)) * 20, 422, "binary"),
        ("big.txt", b"word " * 50_000, 413, "over the limit"),
        ("image.png", b"\x89PNG\r\n", 415, "unsupported file type"),
        ("../../etc/passwd.txt", b"root", 400, "unsafe file name"),
        ("data.jsonl", b'{"text": "fine"}\n{broken\n', 422, "line 2"),
        ("data.json", b"{not json", 422, "malformed JSON"),
    ],
)
def test_bad_uploads_change_nothing(live: Live, kb: str, name: str, data: bytes, status: int, fragment: str) -> None:
    with live.client() as c:
        before = c.get("/v1/collections/kb").json()
        docs_before = c.get("/v1/collections/kb/documents").json()
        r = _upload(c, "kb", [("ok.txt", b"A perfectly good file."), (name, data)])
        assert r.status_code == status, r.text
        assert fragment in json.dumps(r.json())
        assert c.get("/v1/collections/kb").json() == before
        assert c.get("/v1/collections/kb/documents").json() == docs_before


def test_text_documents_replace_and_delete(live: Live) -> None:
    with live.client() as c:
        r = c.post(
            "/v1/collections/notes/documents/text", json={"documents": [{"name": "m1", "text": "Otters hold hands."}]}
        )
        assert r.status_code == 202
        assert live.wait_job(c, r.json()["id"])["status"] == "succeeded"
        r = c.post(
            "/v1/collections/notes/documents/text", json={"documents": [{"name": "m1", "text": "Otters sleep afloat."}]}
        )
        job = live.wait_job(c, r.json()["id"])
        assert job["result"]["replaced"] == ["m1"]
        hits = c.post("/v1/collections/notes/search", json={"query": "otters", "k": 5}).json()["hits"]
        assert [h["text"] for h in hits] == ["Otters sleep afloat."]
        doc_id = c.get("/v1/collections/notes/documents").json()[0]["id"]
        assert c.delete(f"/v1/collections/notes/documents/{doc_id}").status_code == 204
        assert c.post("/v1/collections/notes/search", json={"query": "otters", "k": 5}).json()["hits"] == []
        assert c.delete("/v1/collections/notes").status_code == 204
        assert c.get("/v1/collections/notes").status_code == 404
        bad = c.post("/v1/collections/notes/documents/text", json={"documents": [{"name": "x", "text": ""}]})
        assert bad.status_code == 422


def test_tenants_are_isolated(live: Live, kb: str) -> None:
    with live.client() as admin:
        a = admin.post("/v1/keys", json={"name": "a", "tenant": "acme", "rights": "write"}).json()
        b = admin.post("/v1/keys", json={"name": "b", "tenant": "globex", "rights": "write"}).json()
        reader = admin.post("/v1/keys", json={"name": "r", "tenant": "acme", "collections": ["shared"]}).json()
        assert {"a", "b", "r"} <= {k["name"] for k in admin.get("/v1/keys").json()}
    with live.client(a["token"]) as ca, live.client(b["token"]) as cb, live.client(reader["token"]) as cr:
        assert cb.get("/v1/keys").status_code == 403
        r = ca.post(
            "/v1/collections/secret/documents/text",
            json={"documents": [{"name": "plan", "text": "Acme's launch is in May."}]},
        )
        job_id = r.json()["id"]
        assert live.wait_job(ca, job_id)["status"] == "succeeded"
        # globex sees none of it: collections, documents, search, jobs
        assert [x["name"] for x in cb.get("/v1/collections").json()] == []
        assert cb.get("/v1/collections/secret").status_code == 404
        assert cb.get("/v1/collections/secret/documents").status_code == 404
        assert cb.post("/v1/collections/secret/search", json={"query": "launch"}).status_code == 404
        assert cb.get(f"/v1/jobs/{job_id}").status_code == 404
        assert cb.get("/v1/collections/kb").status_code == 404  # the default tenant's collection too
        # globex may use the same name for its own collection
        assert cb.post("/v1/collections", json={"name": "secret"}).status_code == 201
        assert cb.post("/v1/collections/secret/search", json={"query": "launch"}).json()["hits"] == []
        # a read-only key scoped to one collection
        me = cr.get("/v1/me").json()
        assert me == {"tenant": "acme", "collections": ["shared"], "rights": "read", "admin": False, "write": False}
        assert ca.get("/v1/me").json()["write"] is True
        assert cr.get("/v1/collections").json() == []
        assert cr.get("/v1/collections/secret").status_code == 404
        assert cr.post("/v1/collections", json={"name": "shared"}).status_code == 403
    with live.client() as admin:
        assert admin.delete(f"/v1/keys/{b['id']}").status_code == 204
    with live.client(b["token"]) as cb:
        assert cb.get("/v1/collections").status_code == 401


def test_research_job_and_cancel(live: Live, kb: str) -> None:
    with live.client() as c:
        r = c.post(
            "/v1/research", json={"collection": "kb", "questions": ["What are blue whales?", "What is green tea?"]}
        )
        assert r.status_code == 202
        job = live.wait_job(c, r.json()["id"], path="/v1/research")
        assert job["status"] == "succeeded" and job["done"] == job["total"] == 2
        status = c.get(f"/v1/research/{job['id']}").json()
        assert len(status["partial"]["sections"]) == 2 and status["partial"]["references"]
        assert status["label"] == "What are blue whales? (and 1 more question)"
        md = c.get(f"/v1/research/{job['id']}/result", params={"format": "markdown"})
        assert md.headers["content-type"].startswith("text/markdown")
        assert "## 1. What are blue whales?" in md.text and "## References" in md.text
        report = c.get(f"/v1/research/{job['id']}/result").json()
        assert len(report["sections"]) == 2 and report["references"]
        topic = c.post("/v1/research", json={"collection": "kb", "topic": "tea", "sections": 2}).json()
        assert topic["label"] == "tea"
        assert live.wait_job(c, topic["id"], path="/v1/research")["status"] == "succeeded"
        many = [f"Question {i} about whales?" for i in range(40)]
        r = c.post("/v1/research", json={"collection": "kb", "questions": many})
        cancelled = c.post(f"/v1/research/{r.json()['id']}/cancel").json()
        assert cancelled["status"] in ("cancelled", "queued", "running")
        final = live.wait_job(c, r.json()["id"], path="/v1/research")
        assert final["status"] == "cancelled" and final["done"] < 40
        assert c.get(f"/v1/research/{r.json()['id']}/result").status_code == 409
        assert c.post("/v1/research", json={"collection": "kb"}).status_code == 422
        assert c.post("/v1/research", json={"collection": "nope", "topic": "x"}).status_code == 404


def test_eval_job(live: Live, tmp_path: Path) -> None:
    folder = tmp_path / "qa"
    folder.mkdir()
    (folder / "passages.jsonl").write_text(
        "\n".join(
            json.dumps(p)
            for p in [
                {"id": "p1", "title": "Otters", "text": "Sea otters hold hands while they sleep."},
                {"id": "p2", "title": "Bees", "text": "Honey bees dance to show where flowers are."},
            ]
        )
    )
    (folder / "qa.jsonl").write_text(
        json.dumps({"question": "What do sea otters hold while sleeping?", "answers": ["hands"], "gold": ["p1"]}) + "\n"
    )
    with live.client() as c:
        r = c.post("/v1/evals", json={"dataset": "jsonl", "path": str(folder), "systems": ["bm25", "hybrid"]})
        assert r.status_code == 202, r.text
        job = live.wait_job(c, r.json()["id"], path="/v1/evals")
        assert job["status"] == "succeeded", job
        assert set(job["result"]["systems"]) == {"bm25", "hybrid"}
        assert c.post("/v1/evals", json={"dataset": "jsonl", "path": "/no/such/file"}).status_code == 422
        reader = c.post("/v1/keys", json={"name": "ev", "tenant": "default"}).json()["token"]
    with live.client(reader) as c:
        assert c.post("/v1/evals", json={"dataset": "jsonl", "path": str(folder)}).status_code == 403
