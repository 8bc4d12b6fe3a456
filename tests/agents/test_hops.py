"""Multi-hop without a model: question shapes become plan nodes, hops follow the bridge
entity the passage graph leads to, and the agent's evidence is ranked to its budget."""

from __future__ import annotations

import asyncio

import pytest

from quarry.agents.graph import AgentGraph
from quarry.agents.hops import open_terms
from quarry.agents.planner import comparison_questions, parse_comparison
from quarry.core.settings import Settings
from quarry.retrieval import Library, text_document
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.sparse import Analyzer

CHAIN = [
    (
        "green.md",
        "Green (Steve Hillage album)",
        "Green is the fourth studio album by British progressive rock musician Steve Hillage. It was released in 1978.",
    ),
    (
        "hillage.md",
        "Steve Hillage",
        "Steve Hillage is an English musician. Hillage is married to Miquette Giraudy, "
        "his partner in the band System 7.",
    ),
    ("giraudy.md", "Miquette Giraudy", "Miquette Giraudy is a French keyboard player who was born in Nice."),
    ("blue.md", "Blue (album)", "Blue is an album by Joni Mitchell, released in 1971 by Reprise Records."),
    ("pasta.md", "Pasta", "Pasta is cooked in salted water all over Italy."),
    ("gong.md", "Gong (band)", "Gong is a band formed in Paris by Daevid Allen; Steve Hillage played guitar in it."),
]


@pytest.mark.parametrize(
    ("question", "kind", "sides"),
    [
        ("Which is older, the Eiffel Tower or Big Ben?", "choice", ("the Eiffel Tower", "Big Ben")),
        ("Who was born first, Ada Lovelace or Charles Babbage?", "choice", ("Ada Lovelace", "Charles Babbage")),
        ("Which film came out first, Blind Shaft or The Mask Of Fu Manchu?", "choice", None),
        ("Are Local H and For Against both from the United States?", "both", ("Local H", "For Against")),
        ("Were Scott Derrickson and Ed Wood of the same nationality?", "same", ("Scott Derrickson", "Ed Wood")),
        ("What is the difference between FAISS and BM25?", "difference", ("FAISS", "BM25")),
        ("How does HNSW differ from IVF-PQ?", "difference", ("HNSW", "IVF-PQ")),
        ("Who is the spouse of the Green performer?", None, None),
        ("When was the institute that owned The Collegian founded?", None, None),
        ("What is the capital of the country where the author of Dune was born?", None, None),
    ],
)
def test_question_shapes_become_nodes(question: str, kind: str | None, sides: tuple[str, str] | None) -> None:
    comparison = parse_comparison(question)
    if kind is None:
        assert comparison is None  # a composition question starts as one node and grows hop by hop
        return
    assert comparison is not None and comparison.kind == kind
    if sides:
        assert (comparison.a, comparison.b) == sides
    nodes = comparison_questions(comparison)
    assert len(nodes) == 2 and comparison.a in nodes[0] and comparison.b in nodes[1]


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("Who is the spouse of the Green performer?", ["spouse", "Green", "performer"]),
        ("When was the institute that owned The Collegian founded?", ["institute", "owned", "Collegian", "founded"]),
        (
            "What is the capital of the country where the author of Dune was born?",
            ["capital", "country", "author", "Dune", "born"],
        ),
    ],
)
def test_open_terms_are_the_describing_words(question: str, terms: list[str]) -> None:
    assert [t.word for t in open_terms(question, Analyzer())] == terms


@pytest.fixture
def chain_library(tmp_path, embedder: SentenceEmbedder) -> Library:
    library = Library(Settings(storage={"data_dir": tmp_path / ".quarry"}), embedder=embedder)
    library.ingest_documents("kb", [text_document(t, name=n, title=title) for n, title, t in CHAIN])
    return library


def test_a_bridge_chain_reaches_the_second_and_third_documents(chain_library: Library) -> None:
    answer = asyncio.run(AgentGraph(chain_library).ask("kb", "Where was the spouse of the Green performer born?"))
    questions = [n.question for n in answer.nodes]
    assert questions[0] == "Where was the spouse of the Green performer born?"
    assert questions[1].startswith("Steve Hillage")  # the bridge is the musician, not "British"
    third = next(n for n in answer.nodes if n.question.startswith("Miquette Giraudy"))
    assert third.parents == [answer.nodes[1].id] and answer.nodes[1].parents == ["n1"]  # a chain of two hops
    titles = [e.title for e in answer.evidence]
    assert {"Green (Steve Hillage album)", "Steve Hillage", "Miquette Giraudy"} <= set(titles[:3])
    assert "Nice" in answer.answer


def test_the_evidence_is_ranked_to_the_budget(tmp_path, embedder: SentenceEmbedder) -> None:
    settings = Settings(storage={"data_dir": tmp_path / ".quarry"}, agents={"evidence_budget": 4})
    library = Library(settings, embedder=embedder)
    library.ingest_documents("kb", [text_document(t, name=n, title=title) for n, title, t in CHAIN])
    answer = asyncio.run(AgentGraph(library).ask("kb", "Where was the spouse of the Green performer born?"))
    ids = [e.chunk_id for e in answer.evidence]
    assert len(ids) == len(set(ids)) == 4
    single = library.search("kb", "Where was the spouse of the Green performer born?", k=4, mode="hybrid")
    hybrid_titles = {h.title for h in single}
    agent_titles = {e.title for e in answer.evidence}
    chain = {"Green (Steve Hillage album)", "Steve Hillage", "Miquette Giraudy"}
    assert len(chain & agent_titles) >= len(chain & hybrid_titles)
