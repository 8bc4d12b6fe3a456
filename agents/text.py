"""Small text utilities shared by the extractive reader, the heuristic planner, the writer
and the citation check: sentences with offsets, fragments and near-duplicates, capitalised
spans, dates, numbers and quantities."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(
    r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n{2,}|\n(?=[ \t]*(?:[-*#]|\d+\.|:::|!!!|\?\?\?))"
)
# a full stop that ends an abbreviation or an initial ("J. R. R. Tolkien", "Dr. No", "U.S. Army")
_ABBREVIATION = re.compile(
    r"(?:\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|Ft|Gen|Col|Lt|Sgt|Capt|Rev|Prof|Gov|Sen|Rep|vs|No|approx|ca|"
    r"Jan|Feb|Mar|Apr|Aug|Sept|Sep|Oct|Nov|Dec|e\.g|i\.e))\.$"
)
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
# a finite verb or an auxiliary: what a sentence has and a heading or a label usually lacks
_VERBS = frozenset(
    """is are was were be been being am has have had do does did can could will would shall should may might must
    make makes made use uses used run runs ran take takes took taken give gives gave given find finds found need needs
    include includes contain contains allow allows provide provides return returns require requires support supports
    create creates call calls build builds built keep keeps kept let lets set sets get gets got go goes went gone come
    comes came know knows knew see sees saw seen become becomes became show shows showed shown mean means meant add adds
    start starts work works live lives lived play plays move moves hold holds held bring brings brought write writes
    wrote written stand stands stood lose loses lost meet meets met lead leads led sit sits sat speak speaks spoke lie
    lies lay serve serves die dies send sends sent stay stays fall falls fell cut cuts reach reaches remain remains
    raise raises pass passes sell sells sold decide decides open opens win wins won offer offers appear appears buy
    buys bought change changes depend depends born began begin begins begun grew grow grows drew draw draws rose rise
    rises led say says said tell tells told think thinks thought leave leaves left put puts pay pays paid read reads
    feel feels felt seem seems try tries turn turns ask asks help helps follow follows lets stores store runs accept
    accepts consist consists belong belongs refer refers exist exists occur occurs""".split()
)
_TERMINAL = (".", "!", "?", ":", ";", '."', ".'", ".)", "?)", '?"', '!"', ".”")
_DIRECTIVE = re.compile(r"^[ \t]*:::")
_ADMONITION = re.compile(r"[ \t]*(?:!!!|\?\?\?\+?)[ \t]*[\w-]+(?:[ \t]+[\w-]+)*(?:[ \t]+\"[^\"\n]*\")?[ \t]*\n?[ \t]*")
_ATTRIBUTES = re.compile(
    r"[ \t]*\{:?[ \t]*(?:[#.][\w:-]+|[\w-]+=(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s}]+))"
    r"(?:[ \t]+(?:[#.][\w:-]+|[\w-]+=(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s}]+)))*[ \t]*\}"
)
_BULLET = re.compile(r"(?:>[ \t]*)*(?:[-*+][ \t]+|\d+[.)][ \t]+)?")
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
        end = match.start()
        if end and text[end - 1] == "." and _ABBREVIATION.search(text[max(0, end - 12) : end]):
            continue  # "J. R. R. Tolkien", "Dr. No": not the end of a sentence
        _append(out, text, pos, match.start())
        pos = match.end()
    _append(out, text, pos, len(text))
    return out


_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)


def prose_sentences(text: str) -> list[Sentence]:
    """The sentences of `text` that are running prose: not inside a fenced code block, not a
    heading, a table row or a MkDocs directive, and mostly letters (a command line or a
    formula is not prose). Markup at a sentence's edges (a list bullet, an admonition marker,
    a `{ #anchor }` attribute block) is trimmed, offsets kept exact."""
    fences = [m.start() for m in _FENCE.finditer(text)]
    code = [(fences[i], fences[i + 1] + 3) for i in range(0, len(fences) - 1, 2)]
    if len(fences) % 2:  # a block still open where the passage ends
        code.append((fences[-1], len(text)))
    out = []
    for s in split_sentences(text):
        if any(a < s.end and s.start < b for a, b in code) or s.text.startswith(("#", "|")):
            continue
        if _DIRECTIVE.match(s.text):
            continue
        trimmed = trim_markup(text, s)
        if trimmed is None:
            continue
        if sum(ch.isalpha() or ch.isspace() for ch in trimmed.text) < 0.6 * len(trimmed.text):
            continue
        out.append(trimmed)
    return out


def trim_markup(text: str, s: Sentence) -> Sentence | None:
    """`s` without markup at its edges: an admonition marker or a list bullet before it, an
    attribute block (`{ #id }`, `{: .class }`) after it; None when nothing else is left."""
    start, end = s.start, s.end
    head = _ADMONITION.match(text, start, end)
    if head:
        start = head.end()
    bullet = _BULLET.match(text, start, end)
    if bullet:
        start = bullet.end()
    while True:
        tail = _ATTRIBUTES.search(text, start, end)
        if tail is None or tail.end() != end:
            break
        end = tail.start()
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end - start < 2:
        return None
    return Sentence(text[start:end], start, end)


def _append(out: list[Sentence], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end - start >= 2:
        out.append(Sentence(text[start:end], start, end))


def words(text: str) -> set[str]:
    return {w.lower().replace("’", "'") for w in WORD.findall(text)}


def is_fragment(text: str) -> bool:
    """True for what is not a whole sentence: fewer than four words, no verb-like word, a
    piece cut from the middle of a sentence (it starts in lower case), or a title (no
    closing punctuation, every longer word capitalised)."""
    tokens = WORD.findall(text)
    if len(tokens) < 4:
        return True
    first = next((ch for ch in text if ch.isalnum()), "")
    if first.islower():
        return True
    ending = text.rstrip().endswith(_TERMINAL)
    if not ending and all(t[0].isupper() or t[0].isdigit() for t in tokens if len(t) > 3):
        return True
    for i, token in enumerate(tokens):
        low = token.lower()
        if low in _VERBS:
            return False
        if i and token.islower() and len(low) > 4 and (low.endswith("ed") or (low.endswith("es") and len(low) > 5)):
            return False
    return True


def near_duplicate(a: str, b: str, threshold: float = 0.8) -> bool:
    """The same sentence, or nearly: one's words inside the other's, or a word overlap
    (Jaccard) of at least `threshold`."""
    wa, wb = words(a), words(b)
    if not wa or not wb:
        return a.strip() == b.strip()
    if wa <= wb or wb <= wa:
        return True
    return len(wa & wb) / len(wa | wb) >= threshold


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
