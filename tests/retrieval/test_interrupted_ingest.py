"""An ingest process killed mid-way leaves every document either absent or complete, and
the indexes match the database once the collection is opened again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from tests.conftest import make_settings
from tests.retrieval.helpers import write

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from quarry.core.settings import Settings
    from quarry.retrieval.library import Library
    settings = Settings(storage={"data_dir": sys.argv[1]}, ingest={"batch_chunks": 8})
    Library(settings).ingest_paths("kb", [Path(sys.argv[2])])
    """
)


@pytest.mark.slow
@pytest.mark.e2e  # a child process
def test_sigkill_mid_ingest_then_resume(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    corpus = tmp_path / "corpus"
    for i in range(120):
        body = " ".join(f"Sentence {j} of document {i} talks about subject {i * 7 + j}." for j in range(12))
        write(corpus / f"doc{i:03}.txt", body)
    data_dir = tmp_path / ".quarry"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(data_dir), str(corpus)],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    settings = make_settings(tmp_path, ingest={"batch_chunks": 8})
    db = data_dir / "quarry.db"
    deadline = time.time() + 240
    committed = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            import sqlite3

            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    committed = conn.execute("select count(*) from documents").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if committed >= 10:
                break
    assert proc.poll() is None, "the ingest finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    lib = Library(settings, embedder=embedder)
    collection = lib.collection("kb")
    docs = lib.documents("kb")
    assert 0 < len(docs) < 120
    for doc in docs:  # each committed document is complete
        assert doc.status == "indexed"
        stored = lib.store.chunk_ids_where(collection.id, document_ids=[doc.id])
        assert len(stored) == doc.chunk_count > 0
    index = lib._index(collection.id)
    truth = set(lib.store.chunk_ids(collection.id).tolist())
    assert set(index.dense.ids().tolist()) == set(index.sparse.ids().tolist()) == truth

    report = lib.ingest_paths("kb", [corpus])
    assert report.ok and len(report.unchanged) == len(docs) and len(report.added) == 120 - len(docs)
    final = lib.documents("kb")
    assert len(final) == 120 and all(d.status == "indexed" for d in final)
    total = len(lib.store.chunk_ids(collection.id))
    assert total == sum(d.chunk_count for d in final)
    assert (
        set(index.dense.ids().tolist())
        == set(index.sparse.ids().tolist())
        == set(lib.store.chunk_ids(collection.id).tolist())
    )
    assert lib.search("kb", "document 77 subject 539", k=1, mode="sparse")[0].document == "corpus/doc077.txt"
    lib.close()
