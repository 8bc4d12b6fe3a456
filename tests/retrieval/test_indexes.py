"""Index files on disk that cannot be read (any of them) are rebuilt from the database: the
next search answers correctly instead of failing for good."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from quarry.core.settings import Settings
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document


def _manifest(directory: Path) -> dict:
    return dict(json.loads((directory / "manifest.json").read_text()))


def _garbage_tombstones(directory: Path) -> None:
    (directory / _manifest(directory)["tombstones"]).write_bytes(b"\x93NUMPY garbage that is not an array")


def _pickled_tombstones(directory: Path) -> None:  # the `ValueError ... pickled data` case
    np.save(directory / _manifest(directory)["tombstones"], np.array([{"x": 1}], dtype=object), allow_pickle=True)


def _not_ids_tombstones(directory: Path) -> None:
    np.save(directory / _manifest(directory)["tombstones"], np.ones((2, 2), dtype=np.float32))


def _missing_tombstones(directory: Path) -> None:
    (directory / _manifest(directory)["tombstones"]).unlink()


def _manifest_without_keys(directory: Path) -> None:
    (directory / "manifest.json").write_text(json.dumps({"generation": 3}))


def _manifest_wrong_types(directory: Path) -> None:
    m = _manifest(directory)
    (directory / "manifest.json").write_text(json.dumps({**m, "generation": "x", "segments": 7}))


def _manifest_not_an_object(directory: Path) -> None:
    (directory / "manifest.json").write_text("[1, 2]")


def _pickled_bm25_ids(directory: Path) -> None:
    for segment in _manifest(directory)["segments"]:
        np.save(directory / "bm25" / segment / "ids.npy", np.array([object()], dtype=object), allow_pickle=True)


def _truncated_manifest(directory: Path) -> None:
    (directory / "manifest.json").write_text('{"generation": 2, "dense"')


def _garbage_faiss(directory: Path) -> None:
    (directory / _manifest(directory)["dense"]).write_bytes(pickle.dumps("not faiss"))


def _garbage_bm25(directory: Path) -> None:
    for segment in _manifest(directory)["segments"]:
        for path in (directory / "bm25" / segment).iterdir():
            path.write_bytes(b"\x00garbage")


CORRUPTIONS: list[Callable[[Path], None]] = [
    _garbage_tombstones,
    _pickled_tombstones,
    _not_ids_tombstones,
    _missing_tombstones,
    _manifest_without_keys,
    _manifest_wrong_types,
    _manifest_not_an_object,
    _pickled_bm25_ids,
    _truncated_manifest,
    _garbage_faiss,
    _garbage_bm25,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=[c.__name__.strip("_") for c in CORRUPTIONS])
def test_unreadable_index_files_are_rebuilt_from_the_database(
    settings: Settings, embedder: SentenceEmbedder, corrupt: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    lib = Library(settings, embedder=embedder)
    lib.ingest_documents(
        "kb",
        [
            text_document("Penguins live in the southern hemisphere.", name="penguins"),
            text_document("Puffins nest on northern sea cliffs.", name="puffins"),
            text_document("Pelicans scoop fish into their throat pouch.", name="pelicans"),
        ],
    )
    lib.delete_document("kb", "puffins")  # a tombstone in the BM25 segment
    directory = lib._index_dir(lib.collection("kb").id)
    assert lib.search("kb", "penguins", k=1)[0].document == "penguins"
    lib.close()

    corrupt(directory)

    again = Library(settings, embedder=embedder)
    for _ in range(2):  # and every search after the first
        hits = again.search("kb", "penguins southern hemisphere", k=5, mode="sparse")
        assert hits[0].document == "penguins"
        assert "puffins" not in {h.document for h in again.search("kb", "puffins nest cliffs", k=5)}
    again.close()
    assert any("rebuilding them from the database" in r.getMessage() for r in caplog.records)  # said, not hidden

    healed = Library(settings, embedder=embedder)  # the rebuild was saved: files readable again
    index = healed._index(healed.collection("kb").id, reconcile=False)
    index.refresh()
    assert not index.needs_reconcile
    assert (
        set(index.sparse.ids().tolist())
        == set(index.dense.ids().tolist())
        == set(healed.store.chunk_ids(healed.collection("kb").id).tolist())
    )
    healed.close()
