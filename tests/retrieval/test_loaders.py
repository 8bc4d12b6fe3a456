"""Loaders: every format, and every kind of bad input, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quarry.core.settings import IngestSettings
from quarry.core.types import SourceDocument
from quarry.retrieval.chunking import Chunker
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.errors import (
    CorruptDocumentError,
    DocumentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    UndecodableTextError,
    UnsupportedTypeError,
)
from quarry.retrieval.loaders import iter_files, load_bytes, load_file, safe_source_name, text_document
from tests.retrieval.helpers import docx_bomb, docx_bytes, docx_with_broken_xml, pdf_bytes, write

S = IngestSettings()


def _one(data: bytes, name: str, settings: IngestSettings = S) -> SourceDocument:
    [doc] = list(load_bytes(data, name, settings))
    assert isinstance(doc, SourceDocument)
    return doc


def test_plain_text_and_markdown() -> None:
    doc = _one(b"Hello there.\r\nSecond line.", "notes.txt")
    assert doc.text == "Hello there.\nSecond line." and doc.title == "notes" and doc.media_type == "text/plain"
    md = _one("# The Title\n\nBody text é.".encode(), "guide.md")
    assert md.title == "The Title" and md.metadata["markdown"] is True


def test_utf16_with_bom_decodes() -> None:
    assert _one("héllo wörld".encode("utf-16"), "a.txt").text == "héllo wörld"


def test_html_keeps_headings_and_drops_scripts() -> None:
    html = b"""<html><head><title>Page T</title><script>var x=1;</script></head>
    <body><h1>Main</h1><p>First <b>para</b>.</p><h2>Sub</h2><ul><li>item one</li></ul>
    <style>.a{}</style></body></html>"""
    doc = _one(html, "page.html")
    assert doc.title == "Page T"
    assert doc.text == "# Main\n\nFirst para .\n\n## Sub\n\n- item one"
    assert "var x" not in doc.text


def test_pdf_text_and_page_offsets() -> None:
    doc = _one(pdf_bytes(["Alpha page one text", "Beta page two text"]), "r.pdf")
    assert "Alpha page one text" in doc.text and "Beta page two text" in doc.text
    starts = doc.metadata["page_starts"]
    assert len(starts) == 2 and doc.text[starts[1] :].startswith("Beta")


def test_docx_headings_become_markdown() -> None:
    doc = _one(docx_bytes("Report", [("Results", "It worked well.")]), "r.docx")
    assert doc.title == "Report"
    assert "# Report" in doc.text and "# Results" in doc.text and "It worked well." in doc.text


def test_json_and_jsonl_records(tmp_path: Path) -> None:
    data = json.dumps([{"id": "r1", "title": "One", "text": "first"}, {"text": "second"}]).encode()
    docs = list(load_bytes(data, "recs.json", S))
    assert [d.source for d in docs if isinstance(d, SourceDocument)] == ["recs.json#r1", "recs.json#record1"]
    lines = b'{"id": 1, "text": "ok one"}\n{broken\n\n{"id": 3, "body": "no text"}\n{"id": 4, "text": "ok four"}\n'
    out = list(load_bytes(lines, "recs.jsonl", S))
    good = [d for d in out if isinstance(d, SourceDocument)]
    bad = [d for d in out if isinstance(d, DocumentError)]
    assert [d.source for d in good] == ["recs.jsonl#1", "recs.jsonl#4"]
    assert "line 2: malformed JSON" in str(bad[0]) and bad[0].source == "recs.jsonl#line2"
    assert "line 4" in str(bad[1]) and "'text'" in str(bad[1])


def test_json_text_field_is_configurable() -> None:
    settings = IngestSettings(json_text_field="body", json_title_field="name")
    doc = _one(json.dumps({"name": "N", "body": "the body"}).encode(), "x.json", settings)
    assert doc.text == "the body" and doc.title == "N"


@pytest.mark.parametrize(
    ("data", "name", "error", "fragment"),
    [
        (b"", "empty.txt", EmptyDocumentError, "empty"),
        (b"   \n\t ", "blank.md", EmptyDocumentError, "empty"),
        (bytes(range(256)) * 40, "garbage.txt", UndecodableTextError, "binary"),
        (b"caf\xe9 au lait", "latin1.txt", UndecodableTextError, "not valid UTF-8"),
        (b"%PDF-1.7\n this is not really a pdf", "bad.pdf", CorruptDocumentError, "corrupt"),
        (b"hello", "fake.pdf", CorruptDocumentError, "not a PDF"),
        (b"PK\x03\x04 truncated zip", "bad.docx", CorruptDocumentError, "DOCX"),
        (b"plain", "image.png", UnsupportedTypeError, "unsupported file type '.png'"),
        (b"plain", "README", UnsupportedTypeError, "(no extension)"),
        (b"{not json", "x.json", CorruptDocumentError, "malformed JSON at line 1"),
        (b"[]", "x.json", EmptyDocumentError, "no records"),
    ],
)
def test_bad_input_gets_a_clear_error(data: bytes, name: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        list(load_bytes(data, name, S))
    assert fragment in str(info.value)
    assert name in str(info.value)


def test_pdf_without_text_is_refused() -> None:
    with pytest.raises(EmptyDocumentError, match="no extractable text"):
        list(load_bytes(pdf_bytes([""]), "scan.pdf", S))


def test_size_limit_checked_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path / "big.txt", "x" * 2000)
    with pytest.raises(DocumentTooLargeError, match="over the limit of 1,000 bytes"):
        list(load_file(path, "big.txt", IngestSettings(max_file_bytes=1000)))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "etc/passwd"),
        ("/abs/path.txt", "abs/path.txt"),
        ("a\x00b\nc\x1b[31m.txt", "abc[31m.txt"),
        ("dir\\..\\win.txt", "dir/win.txt"),
        ("./ok.md", "ok.md"),
    ],
)
def test_hostile_names_are_neutralised(raw: str, clean: str) -> None:
    assert safe_source_name(raw) == clean


def test_name_that_is_only_unsafe_is_refused() -> None:
    with pytest.raises(DocumentError):
        safe_source_name("../..")


def test_iter_files_walks_folders_skipping_hidden(tmp_path: Path) -> None:
    write(tmp_path / "root" / "a.md", "# a")
    write(tmp_path / "root" / "sub" / "b.txt", "b")
    write(tmp_path / "root" / ".hidden" / "c.txt", "c")
    write(tmp_path / "root" / ".secret.txt", "s")
    (tmp_path / "root" / "loop").symlink_to(tmp_path / "root")
    found = [source for _, source in iter_files([tmp_path / "root"])]
    assert found == ["root/a.md", "root/sub/b.txt"]
    with pytest.raises(FileNotFoundError):
        list(iter_files([tmp_path / "missing"]))


def test_text_document() -> None:
    doc = text_document("Some text", name="given/name", title="Given")
    assert doc.source == "given/name" and doc.title == "Given" and doc.media_type == "text/plain"
    with pytest.raises(EmptyDocumentError):
        text_document("  ", name="x")
    with pytest.raises(DocumentError, match="must be a string"):
        text_document(b"bytes", name="x")  # type: ignore[arg-type]


MKDOCS = """---
title: Query Parameters Guide
---

# Query Parameters { #query-parameters }

When you declare other function parameters, they are read as query parameters. { .lead }

<!-- an editor's note -->

## Defaults {#defaults .section}

Query parameters can have default values, as in [the tutorial](https://example.org/t){ .md-button }.

::: fastapi.Query
    options:
      members:
        - get

!!! tip "Order"
    You can declare them in any order.

    ```python
    app = FastAPI()  # { #kept-in-code }
    ```

=== "Python 3.10+"

    Type hints are used for validation.

--8<-- "snippets/footer.md"
"""


def test_markdown_drops_mkdocs_markup_and_keeps_code() -> None:
    doc = _one(MKDOCS.encode(), "guide.md")
    assert doc.title == "Query Parameters Guide"  # the front matter's title
    assert doc.text.startswith("# Query Parameters\n\nWhen you declare")
    for markup in ("{ #query-parameters }", "{#defaults", "{ .lead }", "{ .md-button }", ":::", "options:",
                   "!!!", "===", "--8<--", "<!--", "---"):  # fmt: skip
        assert markup not in doc.text, markup
    assert "## Defaults\n" in doc.text and "[the tutorial](https://example.org/t)." in doc.text
    assert "**Order**\n\nYou can declare them in any order." in doc.text  # the admonition's body is text
    assert "```python\napp = FastAPI()  # { #kept-in-code }\n```" in doc.text  # code is left as it is
    assert "**Python 3.10+**\n\nType hints are used for validation." in doc.text
    untitled = _one(MKDOCS.split("---\n", 2)[2].encode(), "guide.md")
    assert untitled.title == "Query Parameters"  # the first heading, without its anchor
    assert text_document(MKDOCS, name="g.md", markdown=True).text == doc.text


def test_markdown_chunks_index_the_cleaned_text_exactly(embedder: SentenceEmbedder) -> None:
    doc = _one(MKDOCS.encode(), "guide.md")
    chunks = Chunker(embedder.token_ids, 24, 4).split(doc)
    assert len(chunks) > 2
    for chunk in chunks:
        assert doc.text[chunk.start_char : chunk.end_char] == chunk.text
        assert "{ #" not in chunk.heading and "{#" not in chunk.heading


def test_docx_bomb_is_refused_from_the_archive_directory() -> None:
    bomb = docx_bomb(30_000_000)  # ~60 KB that unpacks to 30 MB
    assert len(bomb) < 100_000
    with pytest.raises(DocumentTooLargeError) as info:
        list(load_bytes(bomb, "bomb.docx", S))
    message = str(info.value)
    assert message.startswith("bomb.docx:") and "ingest.max_zip_ratio" in message


def test_zip_members_are_read_within_the_bound_even_when_the_directory_lies() -> None:
    from quarry.retrieval.unzip import read_members

    bomb = bytearray(docx_bomb(5_000_000))
    # declare word/document.xml as 100 bytes in its local header and in the central directory
    name = b"word/document.xml"
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = 0
        while (at := bomb.find(signature, at)) >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if bomb[name_at : name_at + len(name)] == name:
                bomb[at + size_at : at + size_at + 4] = (100).to_bytes(4, "little")
            at += 4
    members_limit = 2 * 1024 * 1024  # the read stops at the declared size: CRC mismatch, not 5 MB read
    with pytest.raises(CorruptDocumentError, match="bomb.docx: corrupt DOCX"):
        read_members(bytes(bomb), "bomb.docx", members_limit, 100, kind="DOCX")


def test_extracted_text_is_bounded_per_file() -> None:
    small = IngestSettings(max_text_chars=10_000)
    with pytest.raises(DocumentTooLargeError, match=r"notes.md: more than 10,000 characters .*max_text_chars"):
        list(load_bytes(b"word " * 5_000, "notes.md", small))
    # a DOCX under the zip ratio whose text is still too long stops while its paragraphs are read
    with pytest.raises(DocumentTooLargeError, match="long.docx: more than 10,000 characters"):
        list(load_bytes(docx_bytes("Long", [(f"Part {i}", "words " * 200) for i in range(20)]), "long.docx", small))
    html = b"<html><body>" + b"<p>paragraph of text</p>" * 2_000 + b"</body></html>"
    with pytest.raises(DocumentTooLargeError, match="page.html: more than 10,000"):
        list(load_bytes(html, "page.html", small))
    # JSON: each record is bounded on its own; the others still load
    lines = [json.dumps({"id": "big", "text": "x" * 20_000}), json.dumps({"id": "ok", "text": "fine"})]
    big, ok = list(load_bytes("\n".join(lines).encode(), "data.jsonl", small))
    assert isinstance(big, DocumentTooLargeError) and "max_text_chars" in str(big)
    assert isinstance(ok, SourceDocument) and ok.source == "data.jsonl#ok"


def test_malformed_docx_xml_is_a_document_error() -> None:
    with pytest.raises(CorruptDocumentError, match=r"broken.docx: corrupt or unreadable DOCX \(XMLSyntaxError"):
        list(load_bytes(docx_with_broken_xml(), "broken.docx", S))


def test_errors_name_the_source_not_the_file_on_disk(tmp_path: Path) -> None:
    path = write(tmp_path / "0.png", b"\x89PNG\r\n")  # staged uploads are saved under our own names
    with pytest.raises(UnsupportedTypeError) as info:
        list(load_file(path, "docs/img/image01.png", S))
    assert str(info.value).startswith("docs/img/image01.png: unsupported file type '.png'")


@pytest.mark.parametrize(
    ("markdown", "title"),
    [
        ("# Query Parameters { #query-parameters }\n\nText.", "Query Parameters"),
        ("# Query Parameters {#query-parameters .unnumbered}\n\nText.", "Query Parameters"),
        ("# Appendix {-}\n\nText.", "Appendix"),
        ("## Closing hashes ## {: #closing }\n\nText.", "Closing hashes"),
        ("# The `quarry ingest` command\n\nText.", "The quarry ingest command"),
        (
            "# [Tutorial](index.md): **first** *steps* and snake_case_names\n\nText.",
            "Tutorial: first steps and snake_case_names",
        ),
        ("```bash\n# install it\npip install quarry\n```\n\n# Install\n\nText.", "Install"),
        ("Setext Title\n============\n\nText.", "Setext Title"),
    ],
)
def test_markdown_titles_are_readable(markdown: str, title: str) -> None:
    assert _one(markdown.encode(), "page.md").title == title
    assert text_document(markdown, "page.md", markdown=True).title == title


def test_markdown_heading_attributes_leave_the_text() -> None:
    doc = _one(b"# Appendix {-}\n\nText.\n\n## More { #more }\n\nAgain.", "page.md")
    assert doc.text == "# Appendix\n\nText.\n\n## More\n\nAgain."


@pytest.mark.parametrize(
    ("html", "title"),
    [
        (
            "<html><head><title>Query Parameters - FastAPI</title></head><body><h1>Other</h1></body></html>",
            "Query Parameters - FastAPI",
        ),
        (
            "<html><head><title> </title></head><body><h1 id='q'>Query Parameters"
            "<a class='headerlink' href='#q' title='Permanent link'>\u00b6</a></h1><p>Text.</p></body></html>",
            "Query Parameters",
        ),
        (
            "<html><body><h2>Second level</h2><h1>Big <em>Title</em> { #big }</h1><p>Text.</p></body></html>",
            "Big Title",
        ),
    ],
)
def test_html_titles_come_from_title_then_h1(html: str, title: str) -> None:
    doc = _one(html.encode(), "page.html")
    assert doc.title == title
    assert "\u00b6" not in doc.text and "{ #" not in doc.text


def test_iter_files_include_and_exclude(tmp_path: Path) -> None:
    for rel in ("index.md", "guide/setup.md", "guide/img/shot.png", "css/site.css", "js/app.js", "drafts/x.md"):
        write(tmp_path / "docs" / rel, "x")
    found = lambda **kw: sorted(s for _, s in iter_files([tmp_path / "docs"], **kw))  # noqa: E731
    assert found(include=["*.md"]) == ["docs/drafts/x.md", "docs/guide/setup.md", "docs/index.md"]
    assert found(include=["*.md"], exclude=["drafts/"]) == ["docs/guide/setup.md", "docs/index.md"]
    assert found(exclude=["*.png", "*.css", "*.js", "guide/*"]) == ["docs/drafts/x.md", "docs/index.md"]
    assert found(include=["guide/*.md"]) == ["docs/guide/setup.md"]
    assert [s for _, s in iter_files([tmp_path / "docs" / "index.md"], exclude=["*.md"])] == []
