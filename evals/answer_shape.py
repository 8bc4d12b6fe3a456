"""Whether an answer reads as an answer: the checks behind the `well_formed` score.

An extractive answer is one to three quoted sentences, after a short typed answer on its own
line when the question asks for a date, number, name or place ("1998 [2]"), or the
not-found line. It is malformed when it begins with a lone fragment ("You [1].", "API [1].")
or a short line the question did not ask for, quotes the same sentence twice, or carries
markup the loaders strip (`{ #anchor }`, `::: directive`).
"""

from __future__ import annotations

import re

from quarry.agents.reader import answer_kind, focus
from quarry.agents.writer import EXTRACTIVE_NOTE, NOT_FOUND
from quarry.retrieval.sentences import WORD, is_fragment, near_duplicate, split_sentences

_MARKER = re.compile(r"\s*\[\d+\]")
_MARKUP = re.compile(r"\{\s*[#.][\w:-]+[^}]*\}|^\s*:::", re.M)
_SHORT_LINE_WORDS = 8


def shape_problems(question: str, answer: str) -> list[str]:
    """What is wrong with the answer's form (empty: nothing)."""
    text = _MARKER.sub("", answer.replace(EXTRACTIVE_NOTE, "")).strip()
    if not text or text == NOT_FOUND.strip():
        return []
    problems: list[str] = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and len(WORD.findall(lines[0])) <= _SHORT_LINE_WORDS and is_fragment(lines[0]):
        # as the writer reads it: a long question by its last asking clause
        if answer_kind(question) == answer_kind(focus(question)) == "text":
            problems.append(f"a short answer line the question does not ask for: {lines[0]!r}")
        lines = lines[1:]
    sentences = [s.text for line in lines for s in split_sentences(line)]
    if sentences and is_fragment(sentences[0]) and len(WORD.findall(sentences[0])) < 4:
        problems.append(f"begins with a lone fragment: {sentences[0]!r}")
    for i, s in enumerate(sentences):
        if any(near_duplicate(s, t) for t in sentences[:i]):
            problems.append(f"repeats a sentence: {s!r}")
    if _MARKUP.search(text):
        problems.append("carries markup")
    return problems
