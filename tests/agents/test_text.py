"""Sentence splitting, fragments, near-duplicates and quantities for the extractive reader."""

from __future__ import annotations

from quarry.agents.text import quantity_spans
from quarry.retrieval.sentences import is_fragment, near_duplicate, prose_sentences, split_sentences

DOC = """## Searching

Run a search from the shell:

```bash
quarry search "how are chunks sized?" -c docs -k 5
```

BM25 uses bm25s with Lucene's scoring. Dense search uses FAISS.

| setting | default |
|---|---|
| k1 | 1.5 |

x = 2 * (y + 3) / 4.
"""


def test_prose_sentences_skip_code_headings_tables_and_formulas() -> None:
    prose = [s.text for s in prose_sentences(DOC)]
    expected = ["Run a search from the shell:", "BM25 uses bm25s with Lucene's scoring.", "Dense search uses FAISS."]
    assert prose == expected
    for s in prose_sentences(DOC):
        assert DOC[s.start : s.end] == s.text  # offsets stay exact, for citations
    assert len(split_sentences(DOC)) > len(prose)


def test_a_code_block_left_open_at_the_end_of_a_passage_is_still_code() -> None:
    text = "Install it first.\n\n```bash\npip install quarry and then some words here"
    assert [s.text for s in prose_sentences(text)] == ["Install it first."]


def test_fragments_are_not_sentences() -> None:
    for fragment in ["You", "API", "NAME", "Query parameters", "Path Parameters and Numeric Validations",
                     "and then it was finished in 1990.", "February 22."]:  # fmt: skip
        assert is_fragment(fragment), fragment
    for sentence in ["It was completed in 1889.", "Basalt makes up most of the ocean floor.",
                     "The --name flag sets the service name.", "Run a search from the shell:"]:  # fmt: skip
        assert not is_fragment(sentence), sentence


def test_initials_and_abbreviations_do_not_end_a_sentence() -> None:
    text = "J. R. R. Tolkien wrote it. He served in the U.S. Army in 1943. Dr. No is a film."
    assert [s.text for s in split_sentences(text)] == [
        "J. R. R. Tolkien wrote it.",
        "He served in the U.S. Army in 1943.",
        "Dr. No is a film.",
    ]


def test_markup_at_a_sentence_edge_is_trimmed_with_exact_offsets() -> None:
    text = (
        "The app reads them. { #reads }\n\n::: fastapi.FastAPI\n    options:\n      members: true\n\n"
        '!!! note "Tip"\n    You can declare them in any order.\n\n- A list item says this.'
    )
    prose = prose_sentences(text)
    assert [s.text for s in prose] == [
        "The app reads them.",
        "You can declare them in any order.",
        "A list item says this.",
    ]
    for s in prose:
        assert text[s.start : s.end] == s.text


def test_near_duplicates() -> None:
    assert near_duplicate("It was completed in 1889.", "It was completed in 1889")
    assert near_duplicate("Basalt is a volcanic rock.", "Basalt is a fine volcanic rock.")
    assert not near_duplicate("It was completed in 1889.", "It was completed in 1859.")


def test_quantities_keep_scale_and_unit_and_know_years() -> None:
    spans = quantity_spans("About 40,000 columns, 1.2 million people, 50 km long, in 1889, three children, 45%, 3D.")
    assert spans == [
        ("40,000", 40000.0, False),
        ("1.2 million", 1200000.0, False),
        ("50 km", 50.0, False),
        ("1889", 1889.0, True),
        ("three", 3.0, False),
        ("45%", 45.0, False),
    ]
