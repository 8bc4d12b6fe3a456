"""Extractive answers people can read, over a small real collection: whole cited sentences,
no repeats, a short answer only when its type matches the question and on its own line,
comparisons that choose, and "not found" for what the collection does not hold."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest

from quarry.agents.graph import AgentGraph
from quarry.agents.planner import question_parts
from quarry.agents.reader import ExtractiveReader
from quarry.agents.writer import EXTRACTIVE_NOTE, NOT_FOUND
from quarry.core.settings import IngestSettings
from quarry.core.types import Answer, Evidence, SourceDocument
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import load_bytes, text_document
from quarry.retrieval.sentences import is_fragment, near_duplicate, split_sentences
from quarry.retrieval.sparse import Analyzer
from tests.conftest import make_settings

FACTS = {
    "Eiffel Tower": "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889.",
    "Big Ben": "Big Ben is the nickname of the Great Bell of the clock at Westminster. It was completed in 1859.",
    "Maximum Overdrive": "Maximum Overdrive is a 1986 horror film written and directed by Stephen King.",
    "Alice Marlow": "Alice Marlow was an English painter of coastal scenes. She was born in 1921 in Whitby.",
    "Bertrand Quill": "Bertrand Quill was a Canadian poet and translator. He was born in 1904 in Quebec City.",
    "Lake Varn": "Lake Varn is a glacial lake in the northern highlands. It covers 412 square kilometres.",
    "Lake Tessel": "Lake Tessel is a reservoir on the Tessel river. It covers 1,250 square kilometres.",
    "Basalt": (
        "Basalt is a fine-grained volcanic rock formed from the rapid cooling of lava rich in magnesium and iron. "
        "It makes up most of the ocean floor."
    ),
    "Basalt columns": (
        "COLUMNS\n\nBasalt is a fine-grained volcanic rock formed from the rapid cooling of lava rich in magnesium "
        "and iron. The Giant's Causeway in Northern Ireland has about 40,000 interlocking basalt columns."
    ),
    "Granite": "Granite is a coarse-grained intrusive rock that cools slowly deep underground. It is rich in quartz.",
}
GUIDE = b"""# Query Parameters { #query-parameters }

When you declare function parameters that are not part of the path, FastAPI reads them as query parameters.

## Defaults {#defaults .section}

Query parameters can be optional and can have default values, such as skip=0 and limit=10.

::: fastapi.Query
    options:
      show_root_heading: true

!!! tip "Order"
    You can declare query parameters and path parameters in any order.
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceEmbedder) -> Iterator[Library]:
    lib = Library(make_settings(tmp_path_factory.mktemp("answers")), embedder=embedder)
    lib.ingest_documents("facts", [text_document(text, name=title, title=title) for title, text in FACTS.items()])
    [guide] = list(load_bytes(GUIDE, "query-params.md", IngestSettings()))
    assert isinstance(guide, SourceDocument)
    lib.ingest_documents("guide", [guide])
    yield lib
    lib.close()


def ask(library: Library, question: str, collection: str = "facts") -> Answer:
    async def emit(_event: Any) -> None:
        return None

    return asyncio.run(AgentGraph(library).ask(collection, question, emit))


def body_lines(answer: Answer) -> list[str]:
    """The answer's lines without the extractive note."""
    return [line for line in answer.answer.splitlines() if line.strip() and line.strip() != EXTRACTIVE_NOTE]


def sentences_of(line: str) -> list[str]:
    return [s.text for s in split_sentences(line)]


def assert_readable(answer: Answer) -> None:
    """Every sentence whole and cited, none twice, no markup quoted, citations exact."""
    lines = body_lines(answer)
    body = lines[1:] if answer.short_answer else lines
    said = [s for line in body for s in sentences_of(line)]
    assert said, answer.answer
    for sentence in said:
        assert re.search(r"\[\d+\]", sentence), f"uncited: {sentence!r}"
        assert not is_fragment(re.sub(r"\s*\[\d+\]", "", sentence)), f"a fragment: {sentence!r}"
    for i, a in enumerate(said):
        for b in said[i + 1 :]:
            assert not near_duplicate(re.sub(r"\[\d+\]", "", a), re.sub(r"\[\d+\]", "", b)), answer.answer
    assert "{ #" not in answer.answer and "{#" not in answer.answer and ":::" not in answer.answer
    assert "!!!" not in answer.answer


def assert_citations_exact(library: Library, answer: Answer) -> None:
    for citation in answer.citations:
        text = library.store.document_text(citation.document_id)
        start, end = citation.span_start, citation.span_end
        assert start is not None and end is not None
        assert text[start:end] == citation.snippet[: end - start]


def test_an_answer_is_whole_cited_sentences_with_no_repeats(library: Library) -> None:
    answer = ask(library, "What is basalt?")
    assert_readable(answer)
    assert_citations_exact(library, answer)
    assert answer.short_answer is None  # "what is" asks for no date, number, person or place
    first = body_lines(answer)[0]
    assert first.startswith("Basalt is a fine-grained volcanic rock"), answer.answer
    assert answer.answer.count("fine-grained volcanic rock") == 1  # two documents hold it: quoted once
    assert not first.startswith("COLUMNS")


@pytest.mark.parametrize(
    ("question", "span"),
    [
        ("When was the Eiffel Tower completed?", "1889"),
        ("How many basalt columns does the Giant's Causeway have?", "40,000"),
        ("Who directed Maximum Overdrive?", "Stephen King"),
        ("Where is the Eiffel Tower?", "Paris"),
    ],
)
def test_a_short_answer_of_the_asked_type_stands_on_its_own_line(library: Library, question: str, span: str) -> None:
    answer = ask(library, question)
    assert answer.short_answer == span
    first, second = body_lines(answer)[:2]
    assert re.fullmatch(rf"{re.escape(span)} \[\d+\]", first), answer.answer
    assert span in second and not second.startswith(span + " ["), answer.answer  # never glued to a sentence
    assert_readable(answer)
    assert_citations_exact(library, answer)


def test_no_short_answer_when_the_type_does_not_match(library: Library) -> None:
    answer = ask(library, "What is Big Ben?")
    assert answer.short_answer is None
    assert body_lines(answer)[0].startswith("Big Ben is the nickname"), answer.answer
    assert_readable(answer)


@pytest.mark.parametrize(
    ("question", "winner", "facts"),
    [
        ("Which is older, the Eiffel Tower or Big Ben?", "Big Ben", ("1889", "1859")),
        ("Which is newer, the Eiffel Tower or Big Ben?", "Eiffel Tower", ("1889", "1859")),
        ("Who was born first, Alice Marlow or Bertrand Quill?", "Bertrand Quill", ("1921", "1904")),
        ("Which is larger, Lake Varn or Lake Tessel?", "Lake Tessel", ("412", "1,250")),
    ],
)
def test_a_comparison_names_its_choice_and_cites_both_facts(
    library: Library, question: str, winner: str, facts: tuple[str, str]
) -> None:
    answer = ask(library, question)
    assert answer.short_answer == winner
    first, second = body_lines(answer)[:2]
    assert re.fullmatch(rf"{re.escape(winner)} \[\d+\]", first), answer.answer
    a, b = second.split("; ")
    assert facts[0] in a and re.search(r"\[\d+\]", a), answer.answer
    assert facts[1] in b and re.search(r"\[\d+\]", b), answer.answer
    assert len({c.document_id for c in answer.citations}) == 2
    # the verdict cites the passage that holds the winner's fact
    n = int(re.search(r"\[(\d+)\]", first).group(1))  # type: ignore[union-attr]
    cited = next(c for c in answer.citations if c.n == n)
    assert cited.title == winner.removeprefix("the ")


@pytest.mark.parametrize(
    ("question", "verdict"),
    [
        ("Were Alice Marlow and Bertrand Quill of the same nationality?", "no"),
        ("Are Lake Varn and Lake Tessel both lakes?", "yes"),
        ("Are Lake Varn and Lake Tessel both glacial lakes?", "no"),  # all of what is asked, for each
    ],
)
def test_a_yes_no_comparison_answers_from_both_facts(library: Library, question: str, verdict: str) -> None:
    answer = ask(library, question)
    assert answer.short_answer == verdict
    first, second = body_lines(answer)[:2]
    assert re.fullmatch(rf"{verdict.capitalize()} \[\d+\] \[\d+\]", first), answer.answer
    assert len(second.split("; ")) == 2 and len(answer.citations) == 2, answer.answer


def test_a_difference_question_presents_both_sides(library: Library) -> None:
    answer = ask(library, "What is the difference between basalt and granite?")
    lines = body_lines(answer)
    assert len(lines) == 2, answer.answer
    assert lines[0].lower().startswith("basalt") and lines[1].startswith("Granite"), answer.answer
    assert all(re.search(r"\[\d+\]", line) for line in lines)
    assert_readable(answer)


def test_a_question_that_asks_two_things_answers_both(library: Library) -> None:
    answer = ask(library, "When was the Eiffel Tower completed, and where was Alice Marlow born?")
    assert [n.question for n in answer.nodes if not n.parents] == [
        "When was the Eiffel Tower completed?",
        "Where was Alice Marlow born?",
    ]
    text = answer.answer
    assert "1889" in text and "Whitby" in text, text
    assert text.index("1889") < text.index("Whitby")  # in the order asked
    assert_readable(answer)


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        (
            "When I start the app with the CLI, on which address does it listen, and which option starts workers?",
            [
                "When I start the app with the CLI, on which address does it listen?",
                "When I start the app with the CLI, which option starts workers?",
            ],
        ),
        (
            "The guide uses a settings dependency. Which decorator caches it, and which attribute overrides it?",
            [
                "The guide uses a settings dependency. Which decorator caches it?",
                "The guide uses a settings dependency. Which attribute overrides it?",
            ],
        ),
        (
            "Which package reads forms, and is it installed by default?",
            ["Which package reads forms?", "Is it installed by default?"],
        ),
        # one question: a relative clause, a continued subject, a pair of names, a comparison
        ("When was the singer born who is known for her voice and who's third album is Diamond Cut?", None),
        ("The novel was published by a house that was founded in 2005, and is based where?", None),
        ("What did Tom and Jerry do?", None),
        ("Which is older, Alpha or Beta?", None),
    ],
)
def test_question_parts(question: str, parts: list[str] | None) -> None:
    assert question_parts(question) == (parts or [question])


@pytest.mark.parametrize(
    "question",
    ["When was the Sydney Opera House built?", "What is the boiling point of liquid nitrogen?"],
)
def test_a_question_about_something_absent_is_not_found(library: Library, question: str) -> None:
    answer = ask(library, question)
    assert answer.answer.startswith(NOT_FOUND), answer.answer
    assert answer.citations == [] and answer.short_answer is None


def test_mkdocs_markup_is_never_quoted_and_citations_index_the_text(library: Library) -> None:
    answer = ask(library, "In what order can query parameters and path parameters be declared?", "guide")
    assert "any order" in answer.answer
    assert_readable(answer)
    assert_citations_exact(library, answer)
    for citation in answer.citations:
        text = library.store.document_text(citation.document_id)
        assert "{ #" not in text and ":::" not in text
        assert citation.title == "Query Parameters"


def test_the_reader_skips_fragments_and_sentences_it_already_has(embedder: SentenceEmbedder) -> None:
    text = "NAME\n\nYou\n\nThe --name flag sets the service name. The --name flag sets the service name."
    half = text.index("The --name flag sets the service name.", 20)
    evidence = [
        Evidence(chunk_id=1, document_id=1, document="cli.md", title="CLI", text=text, start_char=0,
                 end_char=len(text), score=1.0),
        # an overlapping chunk of the same document holds the last sentence again
        Evidence(chunk_id=2, document_id=1, document="cli.md", title="CLI", text=text[half:], start_char=half,
                 end_char=len(text), score=0.9),
    ]  # fmt: skip
    reading = ExtractiveReader(embedder, Analyzer()).read("What does the --name flag set?", evidence)
    assert reading.found
    assert [s.text for s in reading.sentences] == ["The --name flag sets the service name."]
    assert reading.span is None and reading.answer == "The --name flag sets the service name."


def test_a_pasted_paragraph_before_the_question_is_read_as_the_question(library: Library) -> None:
    long = "Considering everything in these notes about rocks and towers, " * 12 + "when was Big Ben completed?"
    answer = ask(library, long)
    assert answer.short_answer == "1859", answer.answer
    assert_readable(answer)
