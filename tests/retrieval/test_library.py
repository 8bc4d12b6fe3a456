"""End to end through the Library: ingest, re-ingest, replace, delete, search, reload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quarry.core.settings import Settings
from quarry.core.types import DocumentStatus
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.errors import CollectionNotFoundError, DocumentNotFoundError, InvalidQueryError
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from tests.conftest import drop_schema, make_settings
from tests.retrieval.helpers import docx_bytes, pdf_bytes, write

FACTS = {
    "volcano.md": "# Volcanoes\n\nMount Etna is an active volcano on the east coast of Sicily.",
    "river.txt": "The Danube flows through ten countries before reaching the Black Sea.",
    "bread.md": "# Baking\n\nSourdough bread rises thanks to wild yeast and lactic acid bacteria.",
}


def _corpus(root: Path) -> Path:
    for name, text in FACTS.items():
        write(root / "corpus" / name, text)
    write(root / "corpus" / "report.pdf", pdf_bytes(["The telescope on La Palma observed a distant quasar."]))
    write(root / "corpus" / "notes.docx", docx_bytes("Notes", [("Chess", "The Sicilian Defence opens 1.e4 c5.")]))
    return root / "corpus"


def _index_ids(library: Library, name: str) -> tuple[set[int], set[int]]:
    index = library._index(library.collection(name).id)
    index.refresh()
    return set(index.dense.ids().tolist()), set(index.sparse.ids().tolist())


def test_ingest_folder_and_search_every_format(library: Library, tmp_path: Path) -> None:
    report = library.ingest_paths("kb", [_corpus(tmp_path)])
    assert report.ok and len(report.added) == 5 and report.chunks >= 5
    cases = {
        "Which volcano is on Sicily?": "corpus/volcano.md",
        "How many countries does the Danube cross?": "corpus/river.txt",
        "What makes sourdough rise?": "corpus/bread.md",
        "What did the telescope observe?": "corpus/report.pdf",
        "chess opening with c5": "corpus/notes.docx",
    }
    for query, source in cases.items():
        hits = library.search("kb", query, k=3)
        assert hits[0].document == source, (query, hits[0])
        assert hits[0].score_kind == "fused" and hits[0].rank == 1
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    info = library.collections()[0]
    assert (info.name, info.document_count, info.chunk_count, info.index_kind) == ("kb", 5, report.chunks, "flat")


def test_hits_carry_offsets_into_the_document(library: Library) -> None:
    text = "Intro sentence.\n\nThe capital of Australia is Canberra, not Sydney."
    library.ingest_documents("kb", [text_document(text, name="geo", title="Geography")])
    [hit] = library.search("kb", "capital of Australia", k=1)
    stored = library.store.document_text(hit.document_id)
    assert stored[hit.start_char : hit.end_char] == hit.text
    assert hit.document == "geo" and hit.title == "Geography"


def test_reingest_unchanged_is_a_noop_and_changed_replaces(library: Library, tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    first = library.ingest_paths("kb", [corpus])
    before = _index_ids(library, "kb")
    again = library.ingest_paths("kb", [corpus])
    assert again.added == [] and again.replaced == [] and len(again.unchanged) == 5 and again.chunks == 0
    assert _index_ids(library, "kb") == before
    write(corpus / "volcano.md", "# Volcanoes\n\nMount Fuji is a dormant volcano in Japan.")
    third = library.ingest_paths("kb", [corpus])
    assert third.replaced == ["corpus/volcano.md"] and len(third.unchanged) == 4
    dense, sparse = _index_ids(library, "kb")
    truth = set(library.store.chunk_ids(library.collection("kb").id).tolist())
    assert dense == sparse == truth
    assert len(truth) == first.chunks  # one chunk swapped for one chunk
    assert all("Etna" not in h.text for h in library.search("kb", "Etna Sicily", k=10))
    assert library.search("kb", "Etna Sicily", k=10, mode="sparse") == []
    assert library.search("kb", "dormant volcano Japan", k=1)[0].document == "corpus/volcano.md"


def test_delete_document_removes_vectors_and_bm25(library: Library, tmp_path: Path) -> None:
    library.ingest_paths("kb", [_corpus(tmp_path)])
    doc = library.store.find_document(library.collection("kb").id, "corpus/river.txt")
    library.delete_document("kb", "corpus/river.txt")
    dense, sparse = _index_ids(library, "kb")
    assert dense == sparse == set(library.store.chunk_ids(library.collection("kb").id).tolist())
    assert all(h.document_id != doc.id for h in library.search("kb", "Danube Black Sea", k=10))
    assert library.search("kb", "Danube", k=10, mode="sparse") == []
    with pytest.raises(DocumentNotFoundError):
        library.delete_document("kb", "corpus/river.txt")


def test_bad_documents_fail_alone(library: Library, tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    write(corpus / "empty.txt", "")
    write(corpus / "garbage.txt", bytes(range(256)) * 10)
    write(corpus / "broken.pdf", b"%PDF-1.4 garbage")
    write(corpus / "broken.docx", b"PK\x03\x04garbage")
    write(corpus / "photo.png", b"\x89PNG....")
    write(corpus / "latin.txt", b"na\xefve")
    big = make_settings(tmp_path / "s", ingest={"max_file_bytes": 100_000})
    write(corpus / "huge.txt", "word " * 30_000)
    lib = Library(big, embedder=library.embedder)
    report = lib.ingest_paths("kb", [corpus])
    assert len(report.added) == 5
    failed = {f.source: f.error for f in report.failed}
    assert set(failed) == {
        "corpus/empty.txt",
        "corpus/garbage.txt",
        "corpus/broken.pdf",
        "corpus/broken.docx",
        "corpus/photo.png",
        "corpus/latin.txt",
        "corpus/huge.txt",
    }
    assert "over the limit" in failed["corpus/huge.txt"]
    docs = {d.source: d for d in lib.documents("kb")}
    assert docs["corpus/broken.pdf"].status == DocumentStatus.FAILED and docs["corpus/broken.pdf"].chunk_count == 0
    dense, sparse = _index_ids(lib, "kb")
    assert dense == sparse == set(lib.store.chunk_ids(lib.collection("kb").id).tolist())
    lib.close()


def test_filters_dedup_modes(library: Library) -> None:
    same = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris."
    library.ingest_documents(
        "kb",
        [
            text_document(same, name="a/copy1"),
            text_document(same + " ", name="a/copy2"),
            text_document("The Tower of London dates from 1078.", name="b/london"),
        ],
    )
    hits = library.search("kb", "When was the Eiffel Tower completed?", k=5)
    assert [h.document for h in hits].count("a/copy1") + [h.document for h in hits].count("a/copy2") == 1
    only_b = library.search("kb", "Eiffel Tower", k=5, sources=["b/*"])
    assert [h.document for h in only_b] == ["b/london"]
    london = library.store.find_document(library.collection("kb").id, "b/london")
    assert [h.document for h in library.search("kb", "tower", k=5, document_ids=[london.id])] == ["b/london"]
    dense = library.search("kb", "Eiffel", k=2, mode="dense")
    sparse = library.search("kb", "Eiffel", k=2, mode="sparse")
    assert dense[0].score_kind == "dense" and -1 <= dense[0].score <= 1
    assert sparse[0].score_kind == "bm25" and sparse[0].score > 0


def test_reorder_for_reader(library: Library) -> None:
    docs = [text_document(f"Fact {i}: planet {i} has {i} moons and rings.", name=f"p{i}") for i in range(6)]
    library.ingest_documents("kb", docs)
    ranked = library.search("kb", "planet moons rings", k=5)
    reordered = library.search("kb", "planet moons rings", k=5, reorder=True)
    assert [h.rank for h in reordered] == [1, 3, 5, 4, 2]
    assert {h.chunk_id for h in ranked} == {h.chunk_id for h in reordered}


def test_errors(library: Library) -> None:
    with pytest.raises(CollectionNotFoundError):
        library.search("nope", "x")
    library.ingest_documents("kb", [text_document("some text", name="t")])
    with pytest.raises(InvalidQueryError):
        library.search("kb", "   ")
    with pytest.raises(InvalidQueryError):
        library.search("kb", "x" * 5000)


def test_indexes_persist_and_reconcile_after_a_crash(settings: Settings, embedder: SentenceEmbedder) -> None:
    lib = Library(settings, embedder=embedder)
    lib.ingest_documents("kb", [text_document(f"Document number {i} about topic {i}.", name=f"d{i}") for i in range(8)])
    cid = lib.collection("kb").id
    truth = set(lib.store.chunk_ids(cid).tolist())
    lib.close()
    reopened = Library(settings, embedder=embedder)
    assert _index_ids(reopened, "kb") == (truth, truth)
    # a crash after the database commit and before the index save: the index lags
    doc = text_document("A late document about lighthouses.", name="late")
    chunks = reopened.chunker.split(doc)
    from quarry.retrieval.storage import PreparedDocument

    vectors = embedder.encode([c.context_text for c in chunks])
    reopened.store.write_documents(cid, [PreparedDocument(doc, chunks, vectors)])
    reopened.close()
    healed = Library(settings, embedder=embedder)
    assert healed.search("kb", "lighthouses", k=1)[0].document == "late"
    dense, sparse = _index_ids(healed, "kb")
    assert dense == sparse == set(healed.store.chunk_ids(cid).tolist())
    healed.close()


def test_corrupt_index_files_are_rebuilt_from_the_database(settings: Settings, embedder: SentenceEmbedder) -> None:
    lib = Library(settings, embedder=embedder)
    lib.ingest_documents("kb", [text_document("Penguins live in the southern hemisphere.", name="peng")])
    directory = lib._index_dir(lib.collection("kb").id)
    lib.close()
    for path in directory.glob("dense-*.faiss"):
        path.write_bytes(b"garbage")
    again = Library(settings, embedder=embedder)
    assert again.search("kb", "penguins", k=1)[0].document == "peng"
    again.close()


def test_delete_collection_removes_its_indexes(library: Library) -> None:
    library.ingest_documents("kb", [text_document("text", name="t")])
    directory = library._index_dir(library.collection("kb").id)
    assert directory.exists()
    library.delete_collection("kb")
    assert not directory.exists()
    with pytest.raises(CollectionNotFoundError):
        library.documents("kb")


def test_deleting_a_collection_waits_for_its_writer_and_no_ingest_brings_it_back(library: Library) -> None:
    import threading
    import time

    library.ingest_documents("kb", [text_document("Basalt is a volcanic rock.", name="basalt.md")])
    index = library._index(library.collection("kb").id, reconcile=False)
    outcome: dict[str, object] = {}

    def ingest() -> None:  # an upload job: the API made the collection, the worker must not re-create it
        try:
            outcome["ingest"] = library.ingest_documents(
                "kb", [text_document("Obsidian is volcanic glass.", name="obsidian.md")], create=False
            )
        except CollectionNotFoundError as exc:
            outcome["ingest"] = exc

    with index.write_lock():  # an ingest is running
        deleter = threading.Thread(target=lambda: library.delete_collection("kb"))
        waiting = threading.Thread(target=ingest)
        deleter.start()
        waiting.start()
        time.sleep(0.5)
        assert deleter.is_alive() and library.documents("kb")  # the delete waits for the writer
    deleter.join(30)
    waiting.join(30)
    assert "kb" not in [c.name for c in library.collections()]  # deleted, and it stays deleted
    assert isinstance(outcome["ingest"], CollectionNotFoundError) or "obsidian.md" in outcome["ingest"].added
    with pytest.raises(CollectionNotFoundError):
        library.ingest_documents("kb", [text_document("Pumice floats.", name="pumice.md")], create=False)


@pytest.mark.slow  # 1,100 documents through ingest to cross the IVF threshold
def test_approximate_index_past_threshold(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    settings = make_settings(tmp_path, index={"approximate_threshold": 1000}, ingest={"batch_chunks": 4096})
    lib = Library(settings, embedder=embedder)
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    docs = [text_document(" ".join(rng.choice(words, 8)) + f" item{i}", name=f"s{i}") for i in range(1100)]
    docs.append(text_document("The lighthouse keeper logged a passing storm.", name="needle"))
    lib.ingest_documents("kb", docs)
    assert lib.collections()[0].index_kind == "ivf"
    assert lib.search("kb", "lighthouse keeper storm", k=3)[0].document == "needle"
    lib.close()


def test_error_of_a_failed_reingest_clears_when_the_file_is_restored(library: Library, tmp_path: Path) -> None:
    path = write(tmp_path / "c" / "note.txt", "A note about owls hunting at night.")
    library.ingest_paths("kb", [tmp_path / "c"])
    original = path.read_bytes()
    write(path, b"")
    assert library.ingest_paths("kb", [tmp_path / "c"]).failed
    [doc] = library.documents("kb")
    assert doc.status == DocumentStatus.INDEXED and "empty" in (doc.error or "")
    assert library.search("kb", "owls", k=1)[0].document == "c/note.txt"  # the old version still serves
    write(path, original)
    report = library.ingest_paths("kb", [tmp_path / "c"])
    assert report.unchanged == ["c/note.txt"]
    assert library.documents("kb")[0].error is None


def test_file_names_of_only_control_characters(library: Library, tmp_path: Path) -> None:
    write(tmp_path / "c" / "\x01\x02.txt", "Text in a file with a hostile name.")
    write(tmp_path / "c" / "fine.txt", "Ordinary file.")
    report = library.ingest_paths("kb", [tmp_path / "c"])
    assert report.ok and sorted(report.added) == ["c/.txt", "c/fine.txt"]
    single = write(tmp_path / "d" / "\x01\x02", "Only control characters.")
    report = library.ingest_paths("kb", [single])
    assert report.failed and report.failed[0].source.startswith("unnamed-")


def test_two_machines_share_one_database(tmp_path: Path, embedder: SentenceEmbedder, postgres_url: str) -> None:
    """Each machine keeps its own index cache, synced from the shared database by version."""
    from quarry.retrieval.storage import Store

    machines = []
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, storage={"database_url": postgres_url})
        machines.append(Library(settings, store=Store(postgres_url), embedder=embedder))
    a, b = machines
    try:
        a.ingest_documents("shared", [text_document("Glaciers carve U-shaped valleys.", name="ice")])
        assert b.search("shared", "glacier valleys", k=1)[0].document == "ice"
        b.ingest_documents("shared", [text_document("Coral reefs need warm shallow water.", name="reef")])
        assert a.search("shared", "coral reef water", k=1)[0].document == "reef"
        a.delete_document("shared", "reef")
        assert b.search("shared", "coral reef", k=5, mode="sparse") == []
        # tenants do not see each other's collections
        other = a.for_tenant("acme")
        assert other.collections() == []
        with pytest.raises(CollectionNotFoundError):
            other.search("shared", "glacier")
        other.ingest_documents("shared", [text_document("Acme's private memo.", name="memo")])
        assert [h.document for h in other.search("shared", "memo", k=5)] == ["memo"]
        assert all(h.document != "memo" for h in a.search("shared", "private memo", k=5))
    finally:
        drop_schema(a.store.engine)
        for lib in machines:
            lib.close()


def test_a_data_directory_made_by_the_library_is_private(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    library = Library(make_settings(tmp_path / "new"), embedder=embedder)
    try:
        assert (tmp_path / "new" / ".quarry").stat().st_mode & 0o077 == 0
    finally:
        library.close()
