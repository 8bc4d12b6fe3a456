"""The extractive reader: no generative weights. It picks the sentences of the evidence
that best answer a question (embedding similarity plus term overlap) and, where the
question asks for a date, number or name, the span of the best sentence that fits."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from quarry.agents.text import Sentence, capitalised_spans, dates, numbers, prose_sentences, split_sentences
from quarry.core.types import Evidence
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.sparse import Analyzer

_YES_NO = re.compile(r"^(is|are|was|were|do|does|did|can|could|has|have|had|will|would|should)\b", re.I)


@dataclass(frozen=True)
class ScoredSentence:
    text: str
    evidence: int  # index into the evidence list
    start: int  # offsets in the document
    end: int
    score: float


@dataclass
class Reading:
    found: bool
    answer: str | None
    span: str | None
    sentences: list[ScoredSentence] = field(default_factory=list)


def answer_kind(question: str) -> str:
    q = question.lower().strip()
    if re.match(r"^(when|what year|which year|in what year|in which year|what date|on what date)\b", q):
        return "date"
    if re.match(r"^(how many|how much|how long|how old|how far|how tall|how big|what percentage)\b", q):
        return "number"
    if re.match(r"^(who|whom|whose)\b", q):
        return "name"
    if re.match(r"^(where|in what (city|country|state)|in which (city|country|state))\b", q):
        return "place"
    if _YES_NO.match(q):
        return "yesno"
    if re.match(r"^(what|which)\b", q):
        return "entity"
    return "text"


class ExtractiveReader:
    """Scores sentences of the evidence against the question."""

    def __init__(self, embedder: SentenceEmbedder, analyzer: Analyzer, min_score: float = 0.3) -> None:
        self.embedder = embedder
        self.analyzer = analyzer
        self.min_score = min_score
        # the searcher and then the writer rank the same node's evidence: remember a few
        self._recent: OrderedDict[tuple[str, tuple[int, ...]], list[ScoredSentence]] = OrderedDict()
        self._lock = threading.Lock()

    def rank(self, question: str, evidence: list[Evidence]) -> list[ScoredSentence]:
        """Every sentence of the evidence, best first."""
        key = (question, tuple(ev.chunk_id for ev in evidence))
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                return self._recent[key]
        ranked = self._rank(question, evidence)
        with self._lock:
            self._recent[key] = ranked
            while len(self._recent) > 256:
                self._recent.popitem(last=False)
        return ranked

    def _rank(self, question: str, evidence: list[Evidence]) -> list[ScoredSentence]:
        def sentences(split: Callable[[str], list[Sentence]]) -> list[tuple[int, int, int, str]]:
            return [
                (i, ev.start_char + s.start, ev.start_char + s.end, s.text)
                for i, ev in enumerate(evidence)
                for s in split(ev.text)
            ]

        # prose; where there is nothing but code, headings or tables, quote those rather than nothing
        candidates = sentences(prose_sentences) or sentences(split_sentences)
        if not candidates:
            return []
        vectors = self.embedder.encode([question] + [c[3] for c in candidates])
        similarity = vectors[1:] @ vectors[0]
        q_terms = set(self.analyzer(question))
        scored: list[ScoredSentence] = []
        for (i, start, end, text), sim in zip(candidates, similarity, strict=True):
            terms = set(self.analyzer(text))
            overlap = len(q_terms & terms) / len(q_terms) if q_terms else 0.0
            prior = 0.05 / (1 + i)  # retrieval's own ranking, as a tie-breaker
            scored.append(ScoredSentence(text, i, start, end, float(0.6 * sim + 0.4 * overlap + prior)))
        scored.sort(key=lambda s: -s.score)
        return scored

    def read(self, question: str, evidence: list[Evidence], max_sentences: int = 3) -> Reading:
        ranked = self.rank(question, evidence)
        if not ranked or ranked[0].score < self.min_score:
            return Reading(found=False, answer=None, span=None, sentences=ranked[:max_sentences])
        best = ranked[:max_sentences]
        titles = {evidence[s.evidence].title for s in best}
        span = extract_span(question, [s.text for s in best], avoid=titles)
        return Reading(found=True, answer=span or best[0].text, span=span, sentences=best)


def extract_span(question: str, sentences: list[str], avoid: set[str] | None = None) -> str | None:
    """The short answer inside the best sentences, when the question's type says what to
    look for; None when the sentence itself is the answer. Names in `avoid` (the passages'
    own titles, usually the subject rather than the answer) come last."""
    kind = answer_kind(question)
    avoid_words = [set(a.lower().split()) for a in (avoid or set())]
    for sentence in sentences:
        if kind == "date":
            found = dates(sentence)
        elif kind == "number":
            found = numbers(sentence, exclude=question)
        elif kind in ("name", "place", "entity"):
            # agents ("by X") first, then names of several words, then single capitalised words;
            # a passage's own title last
            spans = capitalised_spans(sentence, exclude=question)
            found = sorted(
                spans,
                key=lambda s: (
                    any(set(s.lower().split()) <= a for a in avoid_words),
                    f"by {s}" not in sentence,
                    -min(len(s.split()), 2),
                ),
            )
        else:
            return None
        if found:
            return found[0]
    return None


def cosine_support(embedder: SentenceEmbedder, claims: list[str], passages: list[str]) -> np.ndarray:
    """(len(claims), len(passages)) cosine similarities."""
    if not claims or not passages:
        return np.zeros((len(claims), len(passages)), dtype=np.float32)
    vectors = embedder.encode(claims + passages)
    return vectors[: len(claims)] @ vectors[len(claims) :].T
