"""The `quarry` command line, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quarry.cli import app
from quarry.core.settings import get_settings
from tests.retrieval.helpers import write


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    write(tmp_path / "kb" / "whales.md", "# Whales\n\nBlue whales are the largest animals ever known to have lived.")
    write(tmp_path / "kb" / "tea.txt", "Green tea is made from unoxidised leaves of Camellia sinensis.")
    write(tmp_path / "kb" / "broken.pdf", b"%PDF-1.5 truncated")
    yield tmp_path
    get_settings.cache_clear()


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_ingest_search_list_delete(workdir: Path) -> None:
    code, out, err = run("ingest", "kb", "-c", "demo")
    assert code == 1  # one document failed; the others are in
    assert "2 added" in out and "1 failed" in out
    assert "kb/broken.pdf" in err and "PDF" in err

    code, out, _ = run("search", "largest animal", "-c", "demo", "-k", "2", "--json")
    assert code == 0
    payload = json.loads(out)
    top = payload["hits"][0]
    assert top["document"] == "kb/whales.md"
    assert {"chunk_id", "score", "start_char", "end_char", "text"} <= set(top)

    code, out, _ = run("search", "-c", "demo", "--queries", "-", "-k", "1", input="tea leaves\n\nwhale size\n")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["query"] for r in lines] == ["tea leaves", "whale size"]
    assert [r["hits"][0]["document"] for r in lines] == ["kb/tea.txt", "kb/whales.md"]

    code, out, _ = run("search", "green tea", "-c", "demo")
    assert code == 0 and "kb/tea.txt" in out and "score" in out

    code, out, _ = run("collections", "--json")
    [coll] = json.loads(out)
    assert coll["name"] == "demo" and coll["document_count"] == 2

    code, out, _ = run("documents", "-c", "demo", "--json")
    statuses = {d["source"]: d["status"] for d in json.loads(out)}
    assert statuses == {"kb/whales.md": "indexed", "kb/tea.txt": "indexed", "kb/broken.pdf": "failed"}

    code, out, _ = run("delete", "-c", "demo", "--document", "kb/tea.txt")
    assert code == 0 and "deleted document" in out
    code, out, _ = run("search", "green tea", "-c", "demo", "--json", "--mode", "sparse")
    assert json.loads(out)["hits"] == []

    code, _, err = run("delete", "-c", "demo")
    assert code == 2 and "--yes" in err
    code, out, _ = run("delete", "-c", "demo", "--yes")
    assert code == 0
    code, out, _ = run("collections", "--json")
    assert json.loads(out) == []


def test_errors_exit_non_zero(workdir: Path) -> None:
    code, _, err = run("ingest", "missing-folder", "-c", "demo")
    assert code == 2 and "no such file or folder" in err
    code, _, err = run("search", "x", "-c", "nothing")
    assert code == 1 and "no collection named 'nothing'" in err
    code, _, err = run("search", "-c", "demo")
    assert code == 2 and "either a query or --queries" in err
    code, _, err = run("ingest", "kb", "-c", "bad name")
    assert code == 1 and "invalid collection name" in err
    code, _, err = run("search", "x", "-c", "demo", "--mode", "fuzzy")
    assert code == 2


@pytest.mark.slow
@pytest.mark.e2e  # a child process
def test_installed_entry_point_with_progress(workdir: Path) -> None:
    """The console script as installed, with the progress bar forced on."""
    exe = Path(sys.executable).with_name("quarry")
    env = {**os.environ, "QUARRY_PROGRESS": "1", "COLUMNS": "200"}
    proc = subprocess.run(
        [str(exe), "ingest", "kb", "-c", "demo"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr
    assert "docs/s" in proc.stderr and "chunks/s" in proc.stderr and "3/3 files" in proc.stderr
    proc = subprocess.run(
        [str(exe), "search", "tea", "-c", "demo", "-k", "1", "--json"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["hits"][0]["document"] == "kb/tea.txt"


def test_invalid_settings_give_a_clear_error(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARRY_SEARCH__RRF_K", "-3")
    code, _, err = run("collections")
    assert code == 2 and "invalid settings" in err and "search.rrf_k" in err


def test_ask_and_research(workdir: Path) -> None:
    import quarry.cli.ask  # noqa: F401  (registers the commands, as `quarry` does)

    assert run("ingest", "kb", "-c", "demo")[0] == 1
    code, out, _ = run("ask", "What are the largest animals?", "-c", "demo", "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["extractive"] and answer["citations"][0]["document"] == "kb/whales.md"
    assert answer["nodes"][0]["state"] == "done"
    assert {"document", "chunk_id", "text"} <= set(answer["evidence"][0])

    code, out, _ = run("ask", "-c", "demo", "--questions", "-", input="What is green tea made from?\n")
    [line] = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and line["citations"][0]["document"] == "kb/tea.txt"

    code, out, err = run("ask", "Which whale is largest?", "-c", "demo", "--show-plan")
    assert code == 0 and "[1]" in out and "n1" in err

    (workdir / "qs.txt").write_text("What are blue whales?\nWhat is green tea?\n")
    code, _, _ = run("research", "-c", "demo", "--questions", "qs.txt", "-o", "report.md", "--json-output", "r.json")
    assert code == 0
    report = (workdir / "report.md").read_text()
    assert "## 1. What are blue whales?" in report and "## References" in report
    assert len(json.loads((workdir / "r.json").read_text())["sections"]) == 2

    code, _, err = run("ask", "-c", "demo")
    assert code == 2 and "either a question" in err
    code, _, err = run("ask", "anything", "-c", "nowhere")
    assert code == 1 and "no collection named" in err


def _docs_folder(root: Path) -> None:
    """A docs folder as people have it: markdown beside images, CSS and JS."""
    write(root / "docs" / "index.md", "# Home { #home }\n\nQuarry answers questions over documents.")
    write(root / "docs" / "guide" / "setup.md", "# Setup\n\nInstall it with pip install quarry.")
    write(root / "docs" / "img" / "image01.png", b"\x89PNG\r\n\x1a\n" + bytes(64))
    write(root / "docs" / "css" / "site.css", "body { color: black; }")
    write(root / "docs" / "js" / "app.js", "console.log('hi');")


def test_ingest_a_docs_folder_with_images_css_and_js(workdir: Path) -> None:
    _docs_folder(workdir)
    # as before: each unsupported file fails, named by its path as given, with a hint
    code, out, err = run("ingest", "docs", "-c", "plain")
    assert code == 1 and "2 added" in out and "3 failed" in out
    assert "failed: docs/img/image01.png: unsupported file type '.png'" in err
    assert "--skip-unsupported" in err
    # the same path shows relative to what was given, for a file named directly too
    code, _, err = run("ingest", "docs/img/image01.png", "-c", "plain")
    assert code == 1 and "failed: docs/img/image01.png: unsupported" in err

    code, out, err = run("ingest", "docs", "-c", "skip", "--skip-unsupported")
    assert code == 0, err
    assert "2 added" in out and "3 skipped" in out and "0 failed" in out
    assert "skipped 3 files of unsupported types" in err and ".png (1)" in err
    code, out, _ = run("ingest", "docs", "-c", "skip", "--skip-unsupported", "--json")
    report = json.loads(out)
    assert report["unchanged"] == ["docs/index.md", "docs/guide/setup.md"]
    assert sorted(s["source"] for s in report["skipped"]) == [
        "docs/css/site.css",
        "docs/img/image01.png",
        "docs/js/app.js",
    ]
    code, out, _ = run("documents", "-c", "skip", "--json")
    docs = {d["source"]: d for d in json.loads(out)}
    assert set(docs) == {"docs/index.md", "docs/guide/setup.md"}  # skipped files leave no failed rows
    assert docs["docs/index.md"]["title"] == "Home"

    code, out, err = run("ingest", "docs", "-c", "globs", "--include", "*.md", "--exclude", "guide/", "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == ["docs/index.md"]


def test_ingest_reports_a_docx_bomb_and_a_malformed_docx_by_name(workdir: Path) -> None:
    from tests.retrieval.helpers import docx_bomb, docx_with_broken_xml

    write(workdir / "in" / "bomb.docx", docx_bomb(30_000_000))
    write(workdir / "in" / "broken.docx", docx_with_broken_xml())
    write(workdir / "in" / "fine.md", "# Fine\n\nThis one is fine.")
    code, out, err = run("ingest", "in", "-c", "bombs", "--json")
    assert code == 1
    failed = {f["source"]: f["error"] for f in json.loads(out)["failed"]}
    assert set(failed) == {"in/bomb.docx", "in/broken.docx"}
    assert (
        failed["in/bomb.docx"].startswith("in/bomb.docx: the archive unpacks to")
        and "max_zip_ratio" in failed["in/bomb.docx"]
    )
    assert "corrupt or unreadable DOCX (XMLSyntaxError" in failed["in/broken.docx"]
    code, out, err = run("ingest", "in", "-c", "bombs")
    assert "failed: in/bomb.docx: the archive unpacks to" in err and "1 unchanged" in out
