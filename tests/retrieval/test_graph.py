"""The passage graph: entities found without a model, rows kept with their chunks in the
database (SQLite and PostgreSQL), Personalized PageRank, and the `graph` search mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from quarry.core.settings import Settings
from quarry.retrieval import Library, text_document
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.entities import extract, normalise, query_keys
from quarry.retrieval.graph import GraphData, PassageGraph
from quarry.retrieval.graph_tables import EntityRow, MentionRow, SubjectRow
from quarry.retrieval.storage import ChunkRow

DOCS = [
    ("fastapi.md", "FastAPI", "FastAPI is a web framework. It uses Pydantic for data validation."),
    ("pydantic.md", "Pydantic", "Pydantic was created by Samuel Colvin. Pydantic emits JSON Schema."),
    ("jsonschema.md", "JSON Schema", "JSON Schema was first drafted by Kris Zyp."),
    ("pasta.md", "Pasta", "Pasta is cooked in salted water all over Italy."),
]


def _ingest(library: Library, docs: list[tuple[str, str, str]] = DOCS) -> None:
    library.ingest_documents("kb", [text_document(text, name=name, title=title) for name, title, text in docs])


def _count(library: Library, row: type) -> int:
    with library.store.session() as s:
        return int(s.scalar(select(func.count()).select_from(row)) or 0)


# -- entities ----------------------------------------------------------------------------------


def test_entities_from_plain_text() -> None:
    text = 'After World War II, the "Big Apple" grew. Use `app.get` and my_handler with pydantic.BaseModel in New York.'
    keys = {m.key: m.kind for m, _ in extract(text, title="Green (album)", heading="Usage > Routing")}
    assert keys["green"] == "title"  # the disambiguation in brackets is dropped
    assert keys["usage"] == keys["routing"] == "heading"
    assert keys["world war ii"] == "name" and keys["new york"] == "name"
    assert keys["big apple"] == "quoted"
    assert keys["app.get"] == keys["my_handler"] == keys["pydantic.basemodel"] == "code"
    assert "use" not in keys and "after" not in keys  # capitalised only because they start a sentence


def test_normalise_and_question_keys() -> None:
    assert normalise("The Beatles") == normalise("the  beatles") == "beatles"
    assert normalise("Green (Steve Hillage album)") == "green"
    known = {"green party of canada": 0, "canada": 1}
    assert query_keys("who founded the green party of canada?", known) == ["green party of canada", "canada"]


# -- Personalized PageRank ---------------------------------------------------------------------


def _tiny_graph() -> PassageGraph:
    # chunks 1, 2 (document 10) and 3 (document 11); entity 100 ("x") is mentioned by 1 and 2
    # and is the subject of document 11; entity 200 ("y") is mentioned by 3
    return PassageGraph(
        GraphData(
            chunk_ids=np.array([1, 2, 3]),
            chunk_documents=np.array([10, 10, 11]),
            entity_ids=np.array([100, 200]),
            entity_keys=["x", "y"],
            mention_chunks=np.array([1, 2, 3]),
            mention_entities=np.array([100, 100, 200]),
            subject_documents=np.array([11]),
            subject_entities=np.array([100]),
        ),
        subject_weight=1.0,
    )


def test_ppr_equals_the_closed_form() -> None:
    """p = (1 - d) (I - d P)^-1 s for a graph with no dangling nodes."""
    graph = _tiny_graph()
    d = 0.5
    P = graph.transition.toarray()  # (5, 5), columns sum to 1
    assert np.allclose(P.sum(axis=0), 1.0)
    s = np.array([1.0, 0, 0, 0, 0])
    exact = (1 - d) * np.linalg.solve(np.eye(5) - d * P, s)
    walked = graph.personalized_pagerank({1: 1.0}, {}, damping=d, iterations=200, tolerance=1e-12)
    assert np.allclose(walked, exact[:3], atol=1e-9)
    # worked example by hand: idf of x = ln(4/3) + 1, of y = ln(4/2) + 1; chunk 3 is reached
    # through x's subject link, so it beats chunk 2, which only shares the mention of x
    ranked = graph.rank({1: 1.0}, {}, k=3, damping=d)
    assert [c for c, _ in ranked] == [1, 3, 2]


def test_ppr_from_an_entity_seed_and_an_empty_seed() -> None:
    graph = _tiny_graph()
    assert [c for c, _ in graph.rank({}, {"y": 1.0}, k=1)] == [3]
    assert graph.rank({}, {"unknown": 1.0}, k=3) == []
    assert graph.names_a_document("x") and not graph.names_a_document("y")


# -- the graph in the database -----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def any_library(request: pytest.FixtureRequest, tmp_path: Path, embedder: SentenceEmbedder) -> Iterator[Library]:
    storage: dict[str, object] = {"data_dir": tmp_path / ".quarry"}
    if request.param == "postgresql":
        storage["database_url"] = request.getfixturevalue("postgres_url")
    library = Library(Settings(storage=storage), embedder=embedder)
    yield library
    library.close()


def test_graph_rows_follow_their_chunks(any_library: Library) -> None:
    library = any_library
    _ingest(library)
    with library.store.session() as s:
        chunks = s.scalar(select(func.count()).select_from(ChunkRow))
        mentioned = s.scalar(select(func.count(func.distinct(MentionRow.chunk_id))))
        subjects = {k for (k,) in s.execute(select(EntityRow.key).join(SubjectRow))}
    assert chunks == mentioned == 4  # every chunk mentions at least its document's title
    assert subjects == {"fastapi", "pydantic", "json schema", "pasta"}

    graph = library.graph("kb")
    assert "samuel colvin" in graph.entity_keys

    # a changed document replaces its mentions; the cached graph follows the new version
    _ingest(library, [("pydantic.md", "Pydantic", "Pydantic is maintained by Acme Labs.")])
    graph = library.graph("kb")
    with library.store.session() as s:
        pydantic_chunks = [c for (c,) in s.execute(select(ChunkRow.id).where(ChunkRow.text.like("%Acme%")))]
    assert pydantic_chunks
    assert "acme labs" in graph.entities_of(pydantic_chunks[0])
    assert not any("samuel colvin" in graph.entities_of(int(c)) for c in graph.chunk_ids)

    # deleting a document deletes its mentions and subject link; deleting the collection, all
    library.delete_document("kb", "pasta.md")
    with library.store.session() as s:
        assert "pasta" not in {k for (k,) in s.execute(select(EntityRow.key).join(SubjectRow))}
        assert s.scalar(select(func.count(func.distinct(MentionRow.chunk_id)))) == 3
        orphans = select(func.count()).select_from(MentionRow).outerjoin(ChunkRow, ChunkRow.id == MentionRow.chunk_id)
        assert s.scalar(orphans.where(ChunkRow.id.is_(None))) == 0
    library.delete_collection("kb")
    assert _count(library, MentionRow) == _count(library, SubjectRow) == _count(library, EntityRow) == 0


def test_a_collection_without_a_graph_gets_one_built(library: Library) -> None:
    """Collections ingested before the graph existed (rows missing) are filled on first use."""
    _ingest(library)
    with library.store.session() as s:
        s.execute(MentionRow.__table__.delete())
        s.execute(SubjectRow.__table__.delete())
    library._graphs.clear()
    graph = library.graph("kb")
    assert graph.names_a_document("pydantic")
    assert _count(library, MentionRow) > 0


def test_graph_mode_reaches_the_second_hop(library: Library) -> None:
    _ingest(library)
    question = "Who created the library that FastAPI uses for data validation?"
    hits = library.search("kb", question, k=3, mode="graph")
    assert {h.title for h in hits[:2]} == {"FastAPI", "Pydantic"}
    assert hits[0].score_kind == "graph"
    with pytest.raises(ValueError):
        library.search("kb", question, k=3, mode="nonsense")
