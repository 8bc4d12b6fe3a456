"""Sentences with exact offsets, and what tells a whole sentence from a fragment: shared by
ingestion (which stores each chunk's answer-candidate sentences with their embeddings) and
the extractive reader, the writer and the citation check, which look them up."""

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
    if first.islower() and not text.startswith("`"):  # "`max_age` - Sets ..." names a parameter
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


def candidate_sentences(text: str) -> tuple[list[Sentence], bool]:
    """The sentences of a passage that can answer a question, and whether they are prose: its
    running prose less the fragments; where it has none (a table, a list of labels), its whole
    sentences of any kind that are not fragments (and False)."""
    prose = [s for s in _joined(text, prose_sentences(text)) if not is_fragment(s.text)]
    if prose:
        return prose, True
    return [s for s in _joined(text, split_sentences(text)) if not is_fragment(s.text)], False


def _joined(text: str, sentences: list[Sentence]) -> list[Sentence]:
    """Sentences with a short tail on the same line joined to the sentence before it: in
    "`max_age` - Sets how long browsers cache responses. Defaults to `600`." the default is
    the answer, and alone it is too short to count as a sentence."""
    out: list[Sentence] = []
    for s in sentences:
        prev = out[-1] if out else None
        if prev is not None and len(WORD.findall(s.text)) < 4 and "\n" not in text[prev.end : s.start]:
            out[-1] = Sentence(text[prev.start : s.end], prev.start, s.end)
        else:
            out.append(s)
    return out


# a sentence that names its subject only by referring back: "It was designed by ...", "The bridge ..."
_REFERS = re.compile(r"(?:It|He|She|They|Its|His|Her|Their|This|These|The\s+[a-z]+)\b")


def refers_back(text: str) -> bool:
    return _REFERS.match(text) is not None


def embedding_texts(sentences: list[Sentence]) -> list[str]:
    """What to embed for each candidate sentence of one passage: the sentence, led by the one
    before it where it refers back ("It was designed by Joseph Strauss." says nothing of the
    bridge without the sentence that named it)."""
    return [
        f"{sentences[j - 1].text} {s.text}" if j and refers_back(s.text) else s.text for j, s in enumerate(sentences)
    ]
