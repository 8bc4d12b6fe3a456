"""Small text utilities shared by the extractive reader, the heuristic planner, the writer
and the citation check: capitalised spans, dates, numbers and quantities. Sentences with
offsets, fragments and near-duplicates live in quarry.retrieval.sentences (ingestion needs
them too)."""

from __future__ import annotations

import re

from quarry.retrieval.sentences import words

_CAPITALISED = re.compile(
    r"\b[A-Z][\w'’.\-]*(?:\s+(?:of|the|de|da|di|von|van|der|del|la|le|and|&|for|on)?\s*[A-Z0-9][\w'’.\-]*)*"
)
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(
    rf"\b(?:(?:\d{{1,2}}\s+)?(?:{_MONTHS})(?:\s+\d{{1,2}})?,?\s+)?(?:1[0-9]{{3}}|20[0-9]{{2}})\b"
    rf"(?:\s*(?:BC|BCE|AD|CE)\b)?"
)
_NUMBER = re.compile(r"\b\d[\d,]*(?:\.\d+)?(?:\s*(?:%|percent|million|billion|thousand|[a-z]+))?")
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_WORD_NUMBERS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_QUANTITY = re.compile(
    r"\b(\d(?:[\d,]*\d)?(?:\.\d+)?|(?:" + "|".join(_WORD_NUMBERS) + r"|dozen)\b)"
    r"(?:\s*(%)|\s*(percent|" + "|".join(_SCALES) + r")\b)?",
    re.I,
)
_UNITS = frozenset(
    "km kilometres kilometers miles mi metres meters m feet ft foot inches cm mm kg kilograms tons tonnes pounds lb "
    "acres hectares years year months days hours minutes seconds people inhabitants residents members seats episodes "
    "times games goals points floors storeys stories rooms".split()
)
_SENTENCE_STARTERS = frozenset(
    "The A An In On At It Its This That These Those He She They His Her Their We Our As By For From After Before "
    "During When While Although However Also But And Or If Then There Here Some Many Most You Your I My To With "
    "Each Every All Both No Not One Since Until Unlike Like Use Using See Note Yes".split()
)
_INTERROGATIVES = frozenset(
    "Who Whom Whose What Which Where When Why How Is Are Was Were Do Does Did Can Could Has Have Had Will Would "
    "Should Name List Tell Describe Explain Give".split()
)


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


def question_entities(question: str) -> list[str]:
    """The names a question mentions: its capitalised spans, less the question word and
    sentence starters ("Which", "The", "When")."""
    out = []
    for match in _CAPITALISED.finditer(question):
        tokens = match.group(0).strip(" .,'’-?").split()
        while tokens and (tokens[0] in _INTERROGATIVES or tokens[0] in _SENTENCE_STARTERS):
            tokens = tokens[1:]
        while tokens and tokens[-1].lower() in {"of", "the", "and", "&", "for", "on"}:
            tokens = tokens[:-1]
        span = " ".join(tokens)
        # "Alpha and Beta", "A & B": each name, and the whole (it may be one title: "Kiss and Tell")
        for name in [span, *re.split(r"\s+(?:and|&)\s+", span)]:
            if name and name not in out:
                out.append(name)
    return out


def dates(text: str) -> list[str]:
    return [m.group(0) for m in _DATE.finditer(text)]


def years(text: str) -> list[int]:
    return [int(y) for y in _YEAR.findall(text)]


def numbers(text: str, exclude: str = "") -> list[str]:
    known = words(exclude)
    return [m.group(0).strip() for m in _NUMBER.finditer(text) if not words(m.group(0)) <= known]


def quantity_spans(text: str) -> list[tuple[str, float, bool]]:
    """(span, value, is_year) for each number in `text`: digits or number words, with a
    scale (thousand, million, percent) kept and applied; a following unit word is kept in
    the span ("40 km") but not in the value."""
    out = []
    for match in _QUANTITY.finditer(text):
        raw, scale = match.group(1), (match.group(2) or match.group(3) or "").lower()
        low = raw.lower()
        if low in _WORD_NUMBERS or low == "dozen":
            value = float(_WORD_NUMBERS.get(low, 12))
        else:
            try:
                value = float(raw.replace(",", ""))
            except ValueError:
                continue
        if raw[0].isdigit() and match.end(1) < len(text) and text[match.end(1)].isalpha():
            continue  # "3D", "2nd", "4x4": not a quantity
        value *= _SCALES.get(scale, 1.0)
        span = match.group(0)
        unit = re.match(r"\s+([A-Za-z]+)\b", text[match.end() :])
        if unit and unit.group(1).lower() in _UNITS and not scale:
            span += unit.group(0)
        is_year = bool(_YEAR.fullmatch(raw)) and not scale
        out.append((span.strip(), value, is_year))
    return out


def first_number(text: str) -> float | None:
    match = re.search(r"\d[\d,]*(?:\.\d+)?", text)
    if not match:
        return None
    try:
        return float(match.group(0).replace(",", ""))
    except ValueError:
        return None
