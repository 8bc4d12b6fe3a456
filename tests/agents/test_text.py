"""Sentence splitting for the extractive reader."""

from __future__ import annotations

from quarry.agents.text import prose_sentences, split_sentences

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
