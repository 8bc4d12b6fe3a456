"""Research reports in extractive mode over a real collection: a topic of N sections asks N
different questions with readable titles, no sentence is repeated across sections, and the
extractive disclaimer is said once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from quarry.agents.graph import AgentGraph
from quarry.agents.research import Report, Researcher, section_title
from quarry.agents.writer import EXTRACTIVE_NOTE
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from tests.conftest import make_settings

# Two guides with the same sections, spelled differently (case, markup): the aspects of the
# topic "tea" are green, black and oolong tea and brewing, each once.
GUIDE = """# Tea guide

## Green tea

Green tea is made from unoxidised leaves of Camellia sinensis. Green tea tastes grassy.

## Black tea

Black tea leaves are fully oxidised before drying. Black tea keeps its flavour for years.

## Oolong tea

Oolong tea is partly oxidised, between green and black tea.

## Brewing tea

Brew tea leaves for three minutes in water just off the boil.
"""
SECOND = """# Tea notes

## **green tea**

Green tea is made from unoxidised leaves of Camellia sinensis. Matcha is powdered green tea.

## `Black tea`

Black tea leaves are fully oxidised before drying. Assam is a strong black tea.

## Brewing Tea

Brew tea leaves for three minutes in water just off the boil. Use fresh water.
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceEmbedder) -> Iterator[AgentGraph]:
    settings = make_settings(tmp_path_factory.mktemp("research"))
    library = Library(settings, embedder=embedder)
    library.ingest_documents(
        "teas",
        [
            text_document(GUIDE, name="guide.md", markdown=True),
            text_document(SECOND, name="notes.md", markdown=True),
            text_document("Espresso is brewed by forcing hot water through ground coffee.", name="coffee.md"),
        ],
    )
    yield AgentGraph(library, settings=settings)
    library.close()


def _sentences(report: Report) -> list[list[str]]:
    """Each section's sentences, without citation markers."""
    return [
        [
            " ".join(re.sub(r"\[\d+\]", "", s).split())
            for s in re.split(r"(?<=[.!?])\s+", section.answer)
            if s.strip() and "beyond the sections above" not in s
        ]
        for section in report.sections
    ]


def test_a_topic_of_n_sections_asks_n_different_questions(agent: AgentGraph) -> None:
    researcher = Researcher(agent, max_sections=5)
    questions = asyncio.run(researcher.questions_for("teas", "tea"))
    assert len(questions) == 5
    assert len({" ".join(re.findall(r"\w+", q.casefold())) for q in questions}) == 5  # no two alike
    titles = [section_title(q, "tea") for q in questions]
    assert titles[0] == "Overview"
    assert {t.casefold() for t in titles[1:]} == {"green tea", "black tea", "oolong tea", "brewing tea"}
    assert all(t[0].isupper() and "`" not in t and "*" not in t and not t.startswith("tea:") for t in titles)

    report = asyncio.run(researcher.run("teas", topic="tea", questions=questions))
    assert [s.title for s in report.sections] == titles
    markdown = report.markdown()
    assert [line for line in markdown.splitlines() if line.startswith("## ")][:2] == [
        "## 1. Overview",
        f"## 2. {titles[1]}",
    ]
    said = [s for section in _sentences(report) for s in section]
    assert len(said) == len(set(said)), "a sentence is repeated across sections"
    assert len({s.answer for s in report.sections}) == len(report.sections)
    # the disclaimer once, at the top, not in every section
    assert markdown.count("Extractive answers: sentences quoted") == 1
    assert EXTRACTIVE_NOTE not in markdown and all("Extractive" not in s.answer for s in report.sections)
    assert report.notes == ["Extractive answers: sentences quoted from the sources; no generative model is configured."]


def test_fewer_aspects_than_sections_gives_fewer_sections_none_repeated(agent: AgentGraph) -> None:
    questions = asyncio.run(Researcher(agent, max_sections=12).questions_for("teas", "tea"))
    assert 5 <= len(questions) < 12
    assert len({" ".join(re.findall(r"\w+", q.casefold())) for q in questions}) == len(questions)
    assert not any("espresso" in q.casefold() or "coffee" in q.casefold() for q in questions)  # not about tea


def test_given_questions_keep_their_titles_and_repeats_are_left_out(agent: AgentGraph) -> None:
    same = ["What is green tea made from?", "Which leaves is green tea made from?"]
    report = asyncio.run(Researcher(agent).run("teas", questions=same))
    assert [s.title for s in report.sections] == same
    assert "## 1. What is green tea made from?" in report.markdown()
    first, second = _sentences(report)
    assert first and not set(first) & set(second)
    assert report.sections[1].answer  # says so rather than staying empty
    assert [r.n for r in report.references] == list(range(1, len(report.references) + 1))
    cited = {n for s in report.sections for n in s.citations}
    assert cited == {r.n for r in report.references}
