"""The large-collection index kind (ivf-sq8) through the Library, its threshold lowered:
chosen by size, saved and loaded, a document deleted, searched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from quarry.core.types import Chunk
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from quarry.retrieval.storage import PreparedDocument
from tests.conftest import make_settings

NEEDLE = "The lighthouse keeper logged a passing storm over the harbour."


def _prepared(name: str, texts: list[str], vectors: np.ndarray) -> PreparedDocument:
    doc = text_document("\n\n".join(texts), name=name, title=name)
    chunks, start = [], 0
    for i, t in enumerate(texts):
        chunks.append(Chunk(ordinal=i, text=t, start_char=start, end_char=start + len(t), token_count=len(t.split())))
        start += len(t) + 2
    return PreparedDocument(doc, chunks, vectors.astype(np.float32))


def _synthetic(library: Library, embedder: SentenceEmbedder, documents: int, per_doc: int) -> None:
    """Synthetic chunks (random unit vectors around 20 centres, texts of random words) written
    straight into the store, plus one real needle document embedded by the model."""
    rng = np.random.default_rng(0)
    words = np.array("alpha beta gamma delta epsilon zeta theta iota kappa lambda sigma omega".split())
    centres = rng.standard_normal((20, embedder.dimension))
    collection = library.create_collection("kb").id
    batch = []
    for d in range(documents):
        v = centres[d % 20] + 0.7 * rng.standard_normal((per_doc, embedder.dimension))
        texts = [" ".join(rng.choice(words, 12)) + f" doc{d} part{i}" for i in range(per_doc)]
        batch.append(_prepared(f"s{d}.txt", texts, v / np.linalg.norm(v, axis=1, keepdims=True)))
    batch.append(_prepared("needle.txt", [NEEDLE], embedder.encode([NEEDLE])))
    library.store.write_documents(collection, batch)


def test_large_index_kind_round_trips(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    settings = make_settings(tmp_path, index={"approximate_threshold": 1000, "large_threshold": 1000})
    library = Library(settings, embedder=embedder)
    _synthetic(library, embedder, documents=150, per_doc=10)
    [hit] = library.search("kb", "lighthouse keeper storm", k=1, mode="dense")  # builds the indexes
    assert hit.document == "needle.txt"
    [info] = library.collections()
    assert (info.index_kind, info.chunk_count) == ("ivf-sq8", 1501)
    manifest_file = next((settings.storage.index_dir).glob("*/manifest.json"))
    manifest = json.loads(manifest_file.read_text())
    assert manifest["dense_kind"] == "ivf-sq8" and manifest["chunks"] == 1501

    # another process loads the saved index: same kind, same answer
    reader = Library(settings, embedder=embedder)
    assert reader.search("kb", "lighthouse keeper storm", k=1, mode="dense")[0].document == "needle.txt"
    assert reader.collections()[0].index_kind == "ivf-sq8"

    library.delete_document("kb", "needle.txt")
    library.delete_document("kb", "s7.txt")
    for lib in (library, reader):  # the writer, and the reader after it reloads the new generation
        hits = lib.search("kb", "lighthouse keeper storm", k=20, mode="dense")
        assert hits and "needle.txt" not in {h.document for h in hits}
        assert not lib.search("kb", "doc7", k=50, mode="sparse", sources=["s7.txt"])
        assert lib.search("kb", "doc8 part3", k=1, mode="sparse")[0].document == "s8.txt"
        assert lib.search("kb", "lighthouse keeper doc8", k=5, mode="hybrid")
    assert library.collections()[0].index_kind == "ivf-sq8"
    index = library._index(library.collection("kb").id)
    assert len(index.dense) == 1490 and index.dense.kind == "ivf-sq8"
    reader.close()
    library.close()
