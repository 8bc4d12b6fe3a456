"""The extractive reader: no generative weights. It picks the whole sentences of the
evidence that best answer a question (embedding similarity plus term overlap), refuses when
nothing in the evidence is about the question, and, where the question asks for a date,
number, person or place, the span of the best sentence that is one."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from quarry.agents.text import capitalised_spans, dates, quantity_spans, question_entities
from quarry.core.types import Evidence
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.sentence_store import SentenceVectors, StoredSentences
from quarry.retrieval.sentences import (
    Sentence,
    candidate_sentences,
    embedding_texts,
    near_duplicate,
    refers_back,
    split_sentences,
    words,
)
from quarry.retrieval.sparse import Analyzer

_YES_NO = re.compile(r"^(is|are|was|were|do|does|did|can|could|has|have|had|will|would|should)\b", re.I)
# words that say what kind of answer is wanted, not what it is about
_QUESTION_WORDS = frozenset(
    "who whom whose what which where when why how many much did does do name named called year years date kind type "
    "tell list give describe explain".split()
)
_PLACE = re.compile(
    r"\b(?:[Ii]n|[Aa]t|[Nn]ear|[Ff]rom|[Oo]utside|[Ii]nto|to)\s+(?:or\s+around\s+|the\s+)?"
    r"([A-Z][\w'’.\-]*(?:,?\s+(?:of\s+|the\s+|de\s+)?[A-Z][\w'’.\-]*)*)"
)
_NOT_PERSON = frozenset(
    """united states kingdom county district city university college school island islands river lake mountain mount
    street park company inc ltd corporation church hall museum airport station republic empire province state north
    south east west national international league club records band party army navy force council association
    society institute festival award awards prize cup championship series season episode album film show day war
    hotel bridge tower castle cathedral square road avenue valley bay ocean sea desert forest library congress
    parliament commission committee court ministry department agency office board bank group atoll peninsula coast
    harbor harbour port canal strait gulf cape beach falls springs heights hills territory region prefecture village
    town borough parish area airport stadium arena theatre theater""".split()
)
_MONTH_WORDS = frozenset(
    "january february march april may june july august september october november december".split()
)
# a sentence holding the kind of thing asked for (a date for "when") ranks higher
_TYPE_BONUS = {"date": 0.15, "number": 0.15, "name": 0.08, "place": 0.08}
_DEMONYM = re.compile(r"^[A-Z][a-z]+(?:an|ese|ish|ch|ic)$")  # "American", "Chinese": a description, not a subject


@dataclass(frozen=True)
class ScoredSentence:
    text: str
    evidence: int  # index into the evidence list
    start: int  # offsets in the document
    end: int
    score: float
    about: bool = True  # its passage names what the question is about (or the question names nothing)


@dataclass
class Reading:
    found: bool
    answer: str | None  # the short answer span when one was located, else the best sentence
    span: str | None
    sentences: list[ScoredSentence] = field(default_factory=list)  # the answer sentences, best first


def answer_kind(question: str) -> str:
    q = question.lower().strip()
    q = re.sub(r"^[^:?]*:\s*(?=\w)", "", q) if re.match(r"^[^:?]{0,80}:\s*(when|who|where|how)\b", q) else q
    if re.match(r"^(when|what year|which year|in what year|in which year|what date|on what date|what day)\b", q):
        return "date"
    if re.match(r"^(how many|how much|how long|how old|how far|how tall|how big|how large|what percentage)\b", q):
        return "number"
    if re.match(r"^(who|whom|whose)\b", q):
        return "name"
    if re.match(r"^(where|(in |from )?(what|which) (city|country|state|town|county|province|region)('s)?)\b", q):
        return "place"
    if _YES_NO.match(q):
        return "yesno"
    # the type asked for later in the question: "... was born in what year?", "... from what state?"
    if re.search(r"\b(what|which) year\b", q):
        return "date"
    if re.search(r"\bhow (many|much)\b", q):
        return "number"
    if re.search(r"\b(in|from|of|near) (what|which) (\w+ )?(city|country|state|town|county|province|region)\b", q):
        return "place"
    if re.match(r"^(what|which)\b", q):
        return "entity"
    return "text"


class ExtractiveReader:
    """Scores sentences of the evidence against the question and picks the answer ones.

    `min_score` is the support bar: the best sentence must reach it (similarity and the
    share of the question's content terms it holds), and, when the question names
    something, its passage must name it too; otherwise the reading is not found. 0.5 was
    calibrated on SQuAD dev with half of its articles left out of the collection: 145 of
    150 questions about the collection's articles found an answer, 11 of 150 about the
    left-out articles did (43 at 0.3)."""

    def __init__(
        self,
        embedder: SentenceEmbedder,
        analyzer: Analyzer,
        min_score: float = 0.5,
        margin: float = 0.12,
        stored: StoredSentences | None = None,
    ) -> None:
        self.embedder = embedder
        self.analyzer = analyzer
        # chunk id -> the sentences and embeddings ingest stored (Store.sentences); chunks
        # without them have their sentences found and embedded here, as a question needs them
        self.stored = stored
        self.min_score = min_score
        self.margin = margin  # further answer sentences score within this of the best
        # the searcher and then the writer rank the same node's evidence: remember a few
        self._recent: OrderedDict[tuple[str, tuple[int, ...]], list[ScoredSentence]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def for_library(cls, library: Library) -> ExtractiveReader:
        """A reader of the library's passages, with its embedder and the sentences its
        ingest stored."""
        return cls(library.embedder, Analyzer(), stored=library.sentences)

    def content_terms(self, question: str) -> set[str]:
        """The question's analysed terms, less the words that only say what kind of answer it wants."""
        generic = set(self.analyzer(" ".join(_QUESTION_WORDS)))
        return set(self.analyzer(question)) - generic

    def rank(self, question: str, evidence: list[Evidence]) -> list[ScoredSentence]:
        """Every whole sentence of the evidence, best first."""
        key = (question, tuple(ev.chunk_id for ev in evidence))
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                return self._recent[key]
        ranked = self._rank(focus(question), evidence)
        with self._lock:
            self._recent[key] = ranked
            while len(self._recent) > 256:
                self._recent.popitem(last=False)
        return ranked

    def passage_sentences(self, evidence: list[Evidence]) -> list[SentenceVectors | None]:
        """Each passage's candidate sentences as ingest stored them, None where it stored none."""
        if self.stored is None or not evidence:
            return [None] * len(evidence)
        found = self.stored([ev.chunk_id for ev in evidence])
        out: list[SentenceVectors | None] = []
        for ev in evidence:
            data = found.get(ev.chunk_id)
            # stored spans index the chunk's own text: anything else (a trimmed passage) is read afresh
            out.append(data if data is not None and (not data.spans or data.spans[-1][1] <= len(ev.text)) else None)
        return out

    def _rank(self, question: str, evidence: list[Evidence]) -> list[ScoredSentence]:
        stored = self.passage_sentences(evidence)
        per_passage: list[tuple[list[Sentence], bool, np.ndarray | None]] = []
        for ev, data in zip(evidence, stored, strict=True):
            if data is not None:
                per_passage.append((data.sentences(ev.text), data.prose, data.vectors))
            else:
                sentences, prose = candidate_sentences(ev.text)
                per_passage.append((sentences, prose, None))
        # prose; where no passage has any, whole sentences of any kind (a table row that says something)
        any_prose = any(prose and sentences for sentences, prose, _ in per_passage)
        candidates: list[tuple[int, int, int, str]] = []
        known: list[np.ndarray | None] = []
        to_embed: list[str] = []  # what embeds each candidate (the sentence, or it and the one before)
        for i, (ev, (sentences, prose, vectors)) in enumerate(zip(evidence, per_passage, strict=True)):
            if prose != any_prose:
                continue
            for j, (s, embedded) in enumerate(zip(sentences, embedding_texts(sentences), strict=True)):
                candidates.append((i, ev.start_char + s.start, ev.start_char + s.end, s.text))
                known.append(None if vectors is None else vectors[j])
                to_embed.append(embedded)
        if not candidates:
            return []
        missing = [k for k, v in enumerate(known) if v is None]
        fresh = self.embedder.encode([question] + [to_embed[k] for k in missing])
        for k, vector in zip(missing, fresh[1:], strict=True):
            known[k] = vector
        similarity = np.stack([v for v in known if v is not None]) @ fresh[0]
        q_terms = self.content_terms(question) or set(self.analyzer(question))
        kind = answer_kind(question)
        # names compared as analysed terms: "Tesla" is in "Tesla's", "Quickbooks" in "QuickBooks"
        entities = [t for e in question_entities(question) if not _DEMONYM.match(e) and (t := self.analyzer(e))]
        passage_words = [set(self.analyzer(f"{ev.title} {ev.text}")) for ev in evidence]
        # the page title and the headings a passage sits under say what its sentences are about
        title_terms = [set(self.analyzer(f"{ev.title} {ev.heading}")) for ev in evidence]
        how_to = _HOW_TO.match(question) is not None
        scored: list[ScoredSentence] = []
        previous: tuple[int, set[str]] = (-1, set())  # the passage and terms of the sentence before
        for (i, start, end, text), sim in zip(candidates, similarity, strict=True):
            terms = set(self.analyzer(text))
            # what a sentence is about without naming it: its passage's title, and for one that
            # refers back ("It was designed by ...", "The bridge ..."), the sentence before it
            context = title_terms[i] | (previous[1] if previous[0] == i and refers_back(text) else set())
            previous = (i, terms)
            held = len(q_terms & terms) + 0.5 * len((q_terms & context) - terms)
            overlap = held / len(q_terms) if q_terms else 0.0
            prior = 0.05 / (1 + i)  # retrieval's own ranking, as a tie-breaker
            bonus = _TYPE_BONUS.get(kind, 0.0) if answer_span(question, text, kind=kind) else 0.0
            if how_to and _CODE.search(text):  # "how do I ...": the sentence naming what to set or call
                bonus += _HOW_TO_BONUS
            about = not entities or any(_names(e, passage_words[i]) for e in entities)
            score = 0.6 * float(sim) + 0.4 * overlap + prior + bonus
            scored.append(ScoredSentence(text, i, start, end, score, about))
        scored.sort(key=lambda s: (not s.about, -s.score))
        return scored

    def read(self, question: str, evidence: list[Evidence], max_sentences: int = 3) -> Reading:
        """The answer sentences (one to `max_sentences`, no two alike) and the short answer."""
        ranked = self.rank(question, evidence)
        chosen = self.choose(ranked, evidence, max_sentences)
        if not chosen:
            return Reading(found=False, answer=None, span=None, sentences=[])
        span = answer_span(focus(question), chosen[0].text, avoid=evidence[chosen[0].evidence].title)
        return Reading(found=True, answer=span or chosen[0].text, span=span, sentences=chosen)

    def supported(self, ranked: list[ScoredSentence]) -> list[ScoredSentence]:
        """The sentences that clear the support bar, best first."""
        return [s for s in ranked if s.about and s.score >= self.min_score]

    def choose(self, ranked: list[ScoredSentence], evidence: list[Evidence], limit: int = 3) -> list[ScoredSentence]:
        """The best supported sentence and up to `limit - 1` more that score close to it,
        without repeats (overlapping chunks hold the same sentence twice)."""
        supported = self.supported(ranked)
        if not supported:
            return []
        best = supported[0]
        chosen = [best]
        for s in supported[1:]:
            if len(chosen) >= limit or s.score < best.score - self.margin:
                break
            doc = evidence[s.evidence].document_id
            if any(
                near_duplicate(s.text, c.text)
                or (evidence[c.evidence].document_id == doc and s.start < c.end and c.start < s.end)
                for c in chosen
            ):
                continue
            chosen.append(s)
        return chosen


_HOW_TO = re.compile(r"^\s*how\s+(?:do|can|could|should|would|to|does|is)\b", re.I)
# code in a sentence: an inline code span, a snake_case or dotted name, a call, a --flag
_CODE = re.compile(r"`[^`\n]+`|\b[a-z]+_[a-z_]+\b|\b\w+\.\w+\(|\b\w+\(\)|(?<!\w)--[a-z][\w-]+")
_HOW_TO_BONUS = 0.06
_ASKING = re.compile(r"^(who|whom|whose|what|which|where|when|why|how|is|are|was|were|do|does|did|can|could)\b", re.I)


def focus(question: str, limit: int = 30) -> str:
    """What a long question asks: a pasted paragraph followed by the question is read as
    its last sentence, or, when that is still long, from its last clause that asks
    ("..., what is green tea made from?")."""
    if len(question.split()) <= limit:
        return question
    sentences = [s.text for s in split_sentences(question)]
    asked = next((s for s in reversed(sentences) if s.rstrip().endswith("?")), sentences[-1] if sentences else question)
    if len(asked.split()) <= limit:
        return asked
    clauses = re.split(r"[,;:]\s+", asked)
    for i in range(len(clauses) - 1, -1, -1):
        if _ASKING.match(clauses[i]):
            return ", ".join(clauses[i:])
    return asked


def answer_span(question: str, sentence: str, avoid: str | None = None, kind: str | None = None) -> str | None:
    """The short answer in `sentence` when the question's type asks for one (a date for
    "when", a number for "how many", a person for "who", a place for "where") and the
    sentence holds exactly that kind of thing; None otherwise. A name in `avoid` (the
    passage's own title, usually the subject rather than the answer) is passed over."""
    kind = kind or answer_kind(question)
    known = words(question)
    if kind == "date":
        found = [d for d in dates(sentence) if not words(d) <= known]
        return found[0] if found else None
    if kind == "number":
        quantities = [(s, y) for s, _, y in quantity_spans(sentence) if not words(s) <= known]
        counts = [s for s, is_year in quantities if not is_year]
        if counts:
            return counts[0]
        return quantities[0][0] if quantities and "old" in question.lower() else None
    avoid_words = words(avoid or "")
    if kind == "name":
        spans = [s for s in capitalised_spans(sentence, exclude=question) if _person_like(s, sentence)]
        spans.sort(key=lambda s: (bool(avoid_words) and words(s) <= avoid_words, f"by {s}" not in sentence))
        return spans[0] if spans else None
    if kind == "place":
        for match in _PLACE.finditer(sentence):
            place = match.group(1).strip(" .,'’-")
            adjective = " " not in place and re.fullmatch(r"[A-Z][a-z]+(?:ern|ian|ese|ish)", place)
            if place and not adjective and not words(place) <= known and not words(place) & _MONTH_WORDS:
                return place
        return None
    return None


def _names(entity: list[str], terms: set[str]) -> bool:
    """Whether a passage's terms name an entity: all of its terms, or, for a longer name,
    its last one and at least half ("Manning" for "Peyton Manning")."""
    held = [t in terms for t in entity]
    return all(held) or (len(entity) >= 2 and held[-1] and 2 * sum(held) >= len(entity))


def _person_like(span: str, sentence: str) -> bool:
    """A name that may be a person's: two to five capitalised words (one, after "by"), no
    digits, dates, possessives or words that name places, bodies or works, not quoted."""
    tokens = span.split()
    if any(ch.isdigit() for ch in span) or words(span) & (_MONTH_WORDS | _NOT_PERSON):
        return False
    if re.search(r"['’]s\b", span) or re.search(rf"[\"“‘']\s*{re.escape(span)}", sentence):
        return False
    if len(tokens) == 1:
        return f"by {span}" in sentence and not span.isupper()
    return 2 <= len(tokens) <= 5 and not span.isupper()


def extract_span(question: str, sentences: list[str], avoid: set[str] | None = None) -> str | None:
    """The short answer in the first of `sentences` (see `answer_span`)."""
    if not sentences:
        return None
    return answer_span(question, sentences[0], avoid=" ".join(avoid or ()))


def cosine_support(embedder: SentenceEmbedder, claims: list[str], passages: list[str]) -> np.ndarray:
    """(len(claims), len(passages)) cosine similarities."""
    if not claims or not passages:
        return np.zeros((len(claims), len(passages)), dtype=np.float32)
    vectors = embedder.encode(claims + passages)
    return vectors[: len(claims)] @ vectors[len(claims) :].T
