"""Small text utilities shared by the extractive reader, the heuristic planner and the
citation check: sentences with offsets, capitalised spans, dates and numbers."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n{2,}|\n(?=[-*#]|\d+\.)")
_CAPITALISED = re.compile(
    r"\b[A-Z][\w'’.\-]*(?:\s+(?:of|the|de|da|di|von|van|der|del|la|le|and|&|for|on)?\s*[A-Z0-9][\w'’.\-]*)*"
)
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
_DATE = re.compile(
    r"\b(?:(?:\d{1,2}\s+)?(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December)(?:\s+\d{1,2})?,?\s+)?(?:1[0-9]{3}|20[0-9]{2})\b"
)
_NUMBER = re.compile(r"\b\d[\d,]*(?:\.\d+)?(?:\s*(?:%|percent|million|billion|thousand|[a-z]+))?")
_SENTENCE_STARTERS = frozenset(
    [
        "The",
        "A",
        "An",
        "In",
        "On",
        "At",
        "It",
        "Its",
        "This",
        "That",
        "These",
        "Those",
        "He",
        "She",
        "They",
        "His",
        "Her",
        "Their",
        "We",
        "Our",
        "As",
        "By",
        "For",
        "From",
        "After",
        "Before",
        "During",
        "When",
        "While",
        "Although",
        "However",
        "Also",
        "But",
        "And",
        "Or",
        "If",
        "Then",
        "There",
        "Here",
        "Some",
        "Many",
        "Most",
    ]
)
WORD = re.compile(r"[\w'’]+")


@dataclass(frozen=True)
class Sentence:
    text: str
    start: int  # offset in the text it was split from
    end: int


def split_sentences(text: str) -> list[Sentence]:
    """Sentences of `text` with their offsets; `text[s.start:s.end] == s.text`."""
    out: list[Sentence] = []
    pos = 0
    for match in _SENTENCE_END.finditer(text):
        _append(out, text, pos, match.start())
        pos = match.end()
    _append(out, text, pos, len(text))
    return out


_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)


def prose_sentences(text: str) -> list[Sentence]:
    """The sentences of `text` that are running prose: not inside a fenced code block, not a
    heading or a table row, and mostly letters (a command line or a formula is not prose)."""
    fences = [m.start() for m in _FENCE.finditer(text)]
    code = [(fences[i], fences[i + 1] + 3) for i in range(0, len(fences) - 1, 2)]
    if len(fences) % 2:  # a block still open where the passage ends
        code.append((fences[-1], len(text)))
    out = []
    for s in split_sentences(text):
        if any(a < s.end and s.start < b for a, b in code) or s.text.startswith(("#", "|")):
            continue
        if sum(ch.isalpha() or ch.isspace() for ch in s.text) < 0.6 * len(s.text):
            continue
        out.append(s)
    return out


def _append(out: list[Sentence], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end - start >= 2:
        out.append(Sentence(text[start:end], start, end))


def words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}


def capitalised_spans(text: str, exclude: str = "") -> list[str]:
    """Runs of capitalised words (names, places, titles) not already in `exclude`."""
    known = words(exclude)
    spans: list[str] = []
    for match in _CAPITALISED.finditer(text):
        span = match.group(0).strip(" .,'’-")
        tokens = span.split()
        while tokens and tokens[0] in _SENTENCE_STARTERS:
            tokens = tokens[1:]
        while tokens and tokens[-1].lower() in {"of", "the", "and", "&", "for", "on"}:
            tokens = tokens[:-1]
        if not tokens:
            continue
        span = " ".join(tokens)
        if words(span) <= known:
            continue
        if span not in spans:
            spans.append(span)
    return spans


def dates(text: str) -> list[str]:
    return [m.group(0) for m in _DATE.finditer(text)]


def years(text: str) -> list[int]:
    return [int(y) for y in _YEAR.findall(text)]


def numbers(text: str, exclude: str = "") -> list[str]:
    known = words(exclude)
    return [m.group(0).strip() for m in _NUMBER.finditer(text) if not words(m.group(0)) <= known]


def first_number(text: str) -> float | None:
    match = re.search(r"\d[\d,]*(?:\.\d+)?", text)
    if not match:
        return None
    try:
        return float(match.group(0).replace(",", ""))
    except ValueError:
        return None
