"""Following a multi-hop question's chain without a model.

A composition question ("Who is the spouse of the Green performer?") names its first
step and describes the rest. The first search finds the passage about the named part
("Green is an album by Steve Hillage"); the terms of the question that passage covers
are done ("green"), the others ("spouse", "performer") are still open, and the next hop
searches for them together with the bridge entity the passage leads to ("Steve Hillage").

The bridge entity is chosen by the passage graph, not by the first capitalised word: an
entity that is the subject of some document of the collection (a page of its own to hop
to), mentioned in the passage that covers the question best, rare in the collection, and
not already named by the question or an earlier hop."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from quarry.core.types import Evidence
from quarry.retrieval.entities import Mention, extract, normalise
from quarry.retrieval.graph import PassageGraph

_WORD = re.compile(r"[\w'’-]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")
# words that ask rather than describe: never an open term of the chain
_QUESTION_WORDS = {
    "who", "whom", "whose", "what", "which", "when", "where", "why", "how", "many", "much", "long", "old",
    "is", "was", "are", "were", "did", "does", "do", "the", "a", "an", "of", "in", "on", "at", "to", "by", "for",
    "from", "with", "that", "this", "it", "its", "and", "or", "as", "be", "been", "has", "have", "had", "name",
    "named", "called", "year", "there", "than", "into", "s",
    # the asker and the asking: "How can I ...", "Should my app ..."
    "i", "me", "my", "we", "us", "our", "you", "your", "can", "could", "should", "would", "may", "might",
    "will", "shall", "must", "want", "need", "way",
    # literals of code that read as names
    "true", "false", "none", "null",
    # comparing words: answered by comparing what each side's page says, not by a hop
    "older", "oldest", "younger", "youngest", "earlier", "earliest", "later", "latest", "first", "last",
    "larger", "largest", "bigger", "biggest", "smaller", "smallest", "longer", "longest", "shorter", "shortest",
    "taller", "tallest", "higher", "highest", "lower", "lowest", "more", "most", "less", "least", "fewer",
    "greater", "newer", "newest", "both", "same", "either",
}  # fmt: skip


MAX_OPEN_WORDS = 6  # a hop's query: the bridge and at most this many open words


@dataclass(frozen=True)
class Term:
    word: str  # as the question writes it
    stem: str


@dataclass(frozen=True)
class Bridge:
    entity: str  # key of the entity to hop to
    name: str  # as the passage writes it
    passage: int  # chunk id of the passage that leads there
    covered: tuple[Term, ...]  # open terms that passage answered
    remaining: tuple[Term, ...]  # terms still open after it

    def query(self) -> str:
        """The next hop's search: the bridge entity and what is still open."""
        return f"{self.name} {' '.join(t.word for t in self.remaining[:MAX_OPEN_WORDS])}".strip()


def open_terms(text: str, stem: Callable[[str], list[str]]) -> list[Term]:
    """The describing words of a question, stemmed, without the asking words."""
    terms: list[Term] = []
    for word in _WORD.findall(text):
        if word.lower() in _QUESTION_WORDS or word.isdigit() and len(word) < 3:
            continue
        stems = stem(word)
        if stems:
            terms.append(Term(word, stems[0]))
    return list({t.stem: t for t in terms}.values())


def choose_bridges(
    terms: Sequence[Term],
    evidence: Sequence[Evidence],
    graph: PassageGraph | None,
    stem: Callable[[str], list[str]],
    exclude: set[str],
    arrived: str | None = None,
    answer: str | None = None,
    beam: int = 1,
    top: int = 5,
) -> list[Bridge]:
    """Up to `beam` ways on, best first, each from a different passage; none when no
    passage covers an open term or leads anywhere new.

    The passages to go on from are those among the first `top` that cover most open terms.
    After a hop (`arrived` is the entity hopped to) that entity's own page comes first when
    it was found: it resolves at least one open term, the first one the question still
    names when none of its words are there ("spouse" is answered by "married to"). A short
    name the reader gave as the node's answer (its type matched the question) is the first
    bridge when it is not already used."""
    if not terms:
        return []
    passages: list[tuple[int, int, Evidence, set[str], list[tuple[Mention, int]]]] = []
    for rank, ev in enumerate(evidence[:top]):
        words = set(stem(f"{ev.title} {ev.text}"))
        covered = {t.stem for t in terms if t.stem in words}
        if arrived is not None and normalise(ev.title) == arrived:
            passages.append((len(terms) + 1, rank, ev, covered or {terms[0].stem}, extract(ev.text)))
        elif covered:
            passages.append((len(covered), rank, ev, covered, extract(ev.text)))
    passages.sort(key=lambda p: (-p[0], p[1]))
    used = set(exclude)
    bridges: list[Bridge] = []
    if passages and answer and _is_name(answer):
        key = normalise(answer)
        holder = next((p for p in passages if key in {m.key for m, _ in p[4]}), None)
        if holder is not None and key not in used:
            bridges.append(_bridge(key, answer, holder[2], holder[3], terms))
            used.add(key)
    ranked: list[tuple[float, str, str, Evidence, set[str]]] = []
    for order, (_, _, passage, covered, mentions) in enumerate(passages):
        exclude_here = used | {normalise(passage.title)}
        for score, key, name in _entities(passage, mentions, graph, exclude_here, terms, stem):
            ranked.append((score / (1.0 + 0.5 * order), key, name, passage, covered))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    for _, key, name, passage, covered in ranked:
        if len(bridges) >= beam:
            break
        if key not in used:
            bridges.append(_bridge(key, name, passage, covered, terms))
            used.add(key)
    return bridges[:beam]


def _is_name(text: str) -> bool:
    """A short answer that names something (not a sentence, not a bare number)."""
    words = text.split()
    return 0 < len(words) <= 6 and text[0].isupper() and not re.search(r"[.!?;:]\s|[.!?]$|^\d+$", text)


_PERSON_NOUNS = {
    "actor", "actress", "performer", "singer", "author", "writer", "director", "spouse", "wife", "husband",
    "father", "mother", "son", "daughter", "sister", "brother", "sibling", "founder", "composer", "player",
    "president", "artist", "creator", "producer", "owner", "leader", "king", "queen", "member", "voice", "voices",
    "played", "plays", "starred", "wrote", "sang", "painted", "coach", "manager", "child", "parent", "partner",
}  # fmt: skip
_PLACE_NOUNS = {"country", "city", "state", "place", "location", "birthplace", "headquarters", "capital", "region"}
_ORG_NOUNS = {
    "company", "label", "team", "organization", "organisation", "publisher", "manufacturer", "employer", "band",
    "university", "school", "network", "channel", "club", "party", "group", "airline", "developer", "broadcaster",
}  # fmt: skip
_NOT_PERSON = {
    "group", "company", "records", "movie", "film", "university", "school", "river", "city", "county", "state",
    "corporation", "inc", "ltd", "league", "cup", "award", "awards", "party", "band", "album", "series", "show",
    "church", "station", "airport", "street", "park", "museum", "war", "battle", "act", "day", "center", "centre",
    "comics", "press", "news", "times", "house", "studios", "pictures", "entertainment", "media", "network",
}  # fmt: skip


def wanted_kind(terms: Sequence[Term]) -> str | None:
    """What the next hop's entity should be, from the open terms ("the actor who ..." a
    person, "the country where ..." a place, "the label of ..." an organisation)."""
    words = {t.word.lower() for t in terms}
    for kind, nouns in (("person", _PERSON_NOUNS), ("place", _PLACE_NOUNS), ("org", _ORG_NOUNS)):
        if words & nouns:
            return kind
    return None


def _looks_like(name: str, kind: str | None) -> float:
    """How well a name agrees with the wanted kind: 2 agrees, 1 unknown, 0.5 disagrees."""
    if kind is None:
        return 1.0
    words = name.split()
    lower = {w.lower().strip(".,") for w in words}
    person = 2 <= len(words) <= 4 and all(w[:1].isupper() for w in words) and not lower & _NOT_PERSON
    if kind == "person":
        return 2.0 if person else 0.5
    if kind == "org":
        return 2.0 if lower & _NOT_PERSON else (0.7 if person else 1.0)
    return 0.7 if person else 1.0


def _entities(
    passage: Evidence,
    mentions: list[tuple[Mention, int]],
    graph: PassageGraph | None,
    used: set[str],
    terms: Sequence[Term],
    stem: Callable[[str], list[str]],
) -> list[tuple[float, str, str]]:
    """The entities of a passage worth a hop, scored: written near the question's words
    ("Will Arnett reprising his role as Batman"), of the kind the open terms ask for, with
    a document of their own in the collection, written as a name, and rare; never one the
    question already names word for word."""
    text = passage.text
    wanted = {t.stem for t in terms}
    kind = wanted_kind(terms)
    tokens = [(m.start(), stem(m.group(0))) for m in _WORD.finditer(text)]
    anchors = [pos for pos, st in tokens if st and st[0] in wanted]
    scored: dict[str, tuple[float, str]] = {}
    for mention, _count in mentions:
        key = mention.key
        if key in used or set(stem(key)) <= wanted:
            continue
        at = [m.start() for m in re.finditer(re.escape(mention.name), text)]
        if anchors and at:
            gap = min(abs(a - b) for a in at for b in anchors) / 6.0  # in words, roughly
            near = 1.0 + 2.0 / (1.0 + gap / 4.0)
        else:
            near = 1.0
        own_page = graph is not None and graph.names_a_document(key)
        rarity = (graph.rarity(key) if graph is not None else 0.0) or 1.0
        score = near * (2.0 if own_page else 1.0) * (1.0 + 0.25 * math.log(rarity)) * _looks_like(mention.name, kind)
        if mention.kind in ("name", "title", "quoted"):
            score *= 1.5
        if score > scored.get(key, (0.0, ""))[0]:
            scored[key] = (score, mention.name)
    return [(score, key, name) for key, (score, name) in scored.items()]


def _bridge(key: str, name: str, passage: Evidence, covered: set[str], terms: Sequence[Term]) -> Bridge:
    return Bridge(
        entity=key,
        name=name,
        passage=passage.chunk_id,
        covered=tuple(t for t in terms if t.stem in covered),
        remaining=tuple(t for t in terms if t.stem not in covered),
    )
