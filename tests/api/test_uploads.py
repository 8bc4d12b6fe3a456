"""Uploads over real HTTP: decompression bombs, malformed files, names with folders and
names given twice, skipping unsupported types, and body limits enforced while streaming."""

from __future__ import annotations

import http.client
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.api.conftest import ADMIN, Live, free_port
from tests.conftest import make_settings
from tests.retrieval.helpers import docx_bomb, docx_with_broken_xml

WORDS = b"# Guide\n\nQuarry answers questions with citations."


def _upload(c: httpx.Client, collection: str, files: list[tuple[str, bytes]], **kw: object) -> httpx.Response:
    return c.post(f"/v1/collections/{collection}/documents", files=[("files", f) for f in files], **kw)  # type: ignore[arg-type]


def _sources(c: httpx.Client, collection: str) -> list[str]:
    r = c.get(f"/v1/collections/{collection}/documents")
    return sorted(d["source"] for d in r.json()) if r.status_code == 200 else []


def test_a_docx_bomb_is_refused_with_413_naming_it(live: Live) -> None:
    bomb = docx_bomb(30_000_000)  # ~60 KB unpacking to 30 MB
    with live.client() as c:
        started = time.perf_counter()
        r = _upload(c, "bombs", [("ok.md", WORDS), ("report.docx", bomb)])
        assert r.status_code == 413, r.text
        assert time.perf_counter() - started < 20  # refused from the zip directory, not after inflating it
        detail = r.json()["detail"]
        assert detail["errors"] == [{"file": "report.docx", "error": detail["errors"][0]["error"]}]
        assert detail["errors"][0]["error"].startswith("report.docx: the archive unpacks to")
        assert "ingest.max_zip_ratio" in detail["message"]
        assert _sources(c, "bombs") == []


def test_a_malformed_docx_is_a_422_with_every_file_named(live: Live) -> None:
    with live.client() as c:
        r = _upload(c, "broken", [("ok.md", WORDS), ("broken.docx", docx_with_broken_xml()), ("empty.txt", b"")])
        assert r.status_code == 422, r.text  # was 500: lxml's XMLSyntaxError escaped the checks
        errors = {e["file"]: e["error"] for e in r.json()["detail"]["errors"]}
        assert set(errors) == {"broken.docx", "empty.txt"}
        assert "corrupt or unreadable DOCX (XMLSyntaxError" in errors["broken.docx"]
        assert _sources(c, "broken") == []


def test_names_keep_their_folders_and_may_not_repeat_within_an_upload(live: Live) -> None:
    with live.client() as c:
        # curl -F files=@tutorial/index.md -F files=@advanced/index.md sends two parts named index.md
        r = _upload(c, "site", [("index.md", b"# Tutorial\n\nFirst steps."), ("index.md", b"# Advanced\n\nDeep dive.")])
        assert r.status_code == 422, r.text
        assert "index.md (2 parts)" in r.json()["detail"]["message"]
        assert c.get("/v1/collections/site").status_code == 404  # nothing stored, not even the collection

        for unsafe in ("../index.md", "/etc/index.md", "tutorial/../../index.md", "a\\..\\..\\index.md"):
            r = _upload(c, "site", [(unsafe, WORDS)])
            assert r.status_code == 400 and "unsafe file name" in r.text, (unsafe, r.text)

        pages = [("tutorial/index.md", b"# Tutorial\n\nFirst steps."), ("advanced/index.md", b"# Advanced\n\nDeep.")]
        r = _upload(c, "site", pages)
        assert r.status_code == 202, r.text
        job = live.wait_job(c, r.json()["id"])
        assert job["status"] == "succeeded"
        assert sorted(job["result"]["added"]) == ["advanced/index.md", "tutorial/index.md"]
        assert _sources(c, "site") == ["advanced/index.md", "tutorial/index.md"]

        # across uploads a same-named document is replaced, and the job says so
        r = _upload(c, "site", [("tutorial/index.md", b"# Tutorial\n\nFirst steps, revised.")])
        job = live.wait_job(c, r.json()["id"])
        assert job["result"]["replaced"] == ["tutorial/index.md"] and job["result"]["added"] == []
        assert _sources(c, "site") == ["advanced/index.md", "tutorial/index.md"]


def test_skip_unsupported_ingests_the_markdown_of_a_docs_folder(live: Live) -> None:
    folder = [
        ("docs/index.md", WORDS),
        ("docs/img/image01.png", b"\x89PNG\r\n\x1a\n" + bytes(64)),
        ("docs/css/site.css", b"body { color: black; }"),
        ("docs/guide/setup.md", b"# Setup\n\nInstall with pip."),
    ]
    with live.client() as c:
        r = _upload(c, "folder", folder)
        assert r.status_code == 415 and "docs/img/image01.png" in r.text  # as before, without the option
        for how in ({"params": {"skip_unsupported": "true"}}, {"data": {"skip_unsupported": "true"}}):
            r = _upload(c, "folder", folder, **how)
            assert r.status_code == 202, r.text
            assert sorted(s["file"] for s in r.json()["skipped"]) == ["docs/css/site.css", "docs/img/image01.png"]
            job = live.wait_job(c, r.json()["id"])
            assert job["status"] == "succeeded" and not job["result"]["failed"]
            assert sorted(s["file"] for s in job["skipped"]) == ["docs/css/site.css", "docs/img/image01.png"]
        assert _sources(c, "folder") == ["docs/guide/setup.md", "docs/index.md"]
        only_images = _upload(c, "folder", folder[1:3], params={"skip_unsupported": "true"})
        assert only_images.status_code == 422 and "no supported files" in only_images.text


@pytest.fixture(scope="module")
def small_api(tmp_path_factory: pytest.TempPathFactory, fresh_redis: Callable[[], str]) -> Iterator[str]:
    """The real app with a 1 MB upload limit, over HTTP (no worker: nothing gets queued)."""
    import uvicorn

    from quarry.api.app import create_app

    port = free_port()
    settings = make_settings(
        tmp_path_factory.mktemp("small"),
        service={"redis_url": fresh_redis(), "admin_key": ADMIN, "port": port, "max_upload_bytes": 1_000_000},
    )
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            httpx.get(f"{url}/openapi.json", timeout=5)
            break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        raise AssertionError("the API did not start")
    yield url
    server.should_exit = True
    thread.join(timeout=20)


def _spooled_files() -> set[str]:
    """Open files of this process (the server runs in it) that are deleted temp files."""
    tmp = os.path.realpath(tempfile.gettempdir())
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(tmp) and target.endswith("(deleted)"):
            found.add(f"{fd}:{target}")
    return found


def test_an_oversized_content_length_is_refused_before_the_body(small_api: str) -> None:
    host, port = small_api.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/v1/collections/big/documents")
    conn.putheader("Authorization", f"Bearer {ADMIN}")
    conn.putheader("Content-Type", "multipart/form-data; boundary=XyZ")
    conn.putheader("Content-Length", str(3_100_000_000))  # 3.1 GB announced, not a byte of it sent
    conn.endheaders()
    response = conn.getresponse()
    body = response.read().decode()
    assert response.status == 413, body
    assert "3,100,000,000 bytes" in body and "service.max_upload_bytes" in body
    conn.close()


def test_a_chunked_body_stops_being_read_past_the_limit(small_api: str) -> None:
    host, port = small_api.removeprefix("http://").split(":")
    before = _spooled_files()
    head = (
        "POST /v1/collections/big/documents HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {ADMIN}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    part = b'--XyZ\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n\r\n'
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        block = b"word " * 13_108  # 64 KiB
        sent = 0
        while sent < 3_000_000:  # past 1 MB of files plus 1 MiB of framing, and then some; never finished
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            except OSError:
                break  # the server stopped reading and closed the connection
            sent += len(block)
        reply = b""
        while b"\r\n\r\n" not in reply or b"service.max_upload_bytes" not in reply:
            chunk = sock.recv(65536)  # the server answers although the body never ended
            if not chunk:
                break
            reply += chunk
    status_line = reply.split(b"\r\n", 1)[0]
    assert b" 413 " in status_line, reply[:500]
    assert b"service.max_upload_bytes" in reply
    time.sleep(0.5)
    assert _spooled_files() <= before  # what the parser spooled is closed, so deleted
