"""Metrics as pure functions: answers (SQuAD exact match and token F1, containment,
multiple-choice letters), retrieval (recall@k, all-gold@k, MRR), citations (precision and
recall) and latency percentiles.

Retrieval and citation metrics work on *matches*: for each ranked (or cited) passage, the
set of gold entries it satisfies (a gold document it belongs to, or a gold fact it
contains). That one shape serves document-level gold (HotpotQA titles, SQuAD passage ids)
and fact-level gold (a needle sentence) alike."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Collection, Iterable, Sequence

from quarry.evals.types import LETTERS

Matches = Sequence[Collection[int]]  # per ranked passage: indices of the gold entries it satisfies

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)


# answers -----------------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Iterable[str]) -> float:
    """1.0 when the normalised prediction equals any normalised answer."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def _f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Iterable[str]) -> float:
    """SQuAD token F1, the best over the answers."""
    return max((_f1(prediction, a) for a in answers), default=0.0)


def contains_answer(text: str, answers: Iterable[str]) -> float:
    """1.0 when any normalised answer occurs in the normalised text, on word boundaries."""
    padded = f" {normalize_answer(text)} "
    return float(any(normalize_answer(a) and f" {normalize_answer(a)} " in padded for a in answers))


_LETTER_PATTERNS = (
    re.compile(r"^\s*\(?([A-Z](?:\s*(?:,|and)?\s*[A-Z])*)\)?\s*\.?\s*$"),  # "B", "(B)", "A, C", "ABD"
    re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[).:])(?:\s|$)"),  # "(B) text", "B. text", "B) text"
    re.compile(r"(?i:\b(?:answer|option|choice)\s*(?:is|:)?)\s*\(?([A-Z])\b\)?(?![a-z])"),  # "Answer: B"
)


def predicted_letters(prediction: str, choices: Sequence[str]) -> str:
    """The option letters a prediction names ('B', '(B) ...', 'Answer: A, C'), sorted; failing
    that, the letter of the option whose text best matches the prediction (token F1), so an
    extractive answer that quotes an option still counts. Empty when nothing matches."""
    valid = set(LETTERS[: len(choices)])
    for pattern in _LETTER_PATTERNS:
        match = pattern.search(prediction)
        if match:
            found = {ch for ch in "".join(g for g in match.groups() if g) if ch in valid}
            if found:
                return "".join(sorted(found))
    scores = [_f1(prediction, option) for option in choices]
    best = max(scores, default=0.0)
    return LETTERS[scores.index(best)] if best > 0 else ""


def choice_accuracy(prediction: str, answers: Sequence[str], choices: Sequence[str]) -> float:
    """1.0 when the predicted letters are exactly one answer's letters."""
    got = predicted_letters(prediction, choices)
    return float(bool(got) and any(got == "".join(sorted(set(a.upper()))) for a in answers))


# gold matching -----------------------------------------------------------------------------
def contains_fact(passage: str, fact: str) -> bool:
    """Whether a passage holds a gold fact: the normalised fact inside the normalised
    passage, or (a fact cut by a chunk boundary) 90% of its words in the passage."""
    norm_fact, norm_passage = normalize_answer(fact), normalize_answer(passage)
    if not norm_fact:
        return False
    if norm_fact in norm_passage:
        return True
    words = norm_fact.split()
    present = set(norm_passage.split())
    return len(words) >= 8 and sum(w in present for w in words) >= 0.9 * len(words)


def fact_matches(passages: Sequence[str], facts: Sequence[str]) -> list[frozenset[int]]:
    """For each passage, the indices of the facts it contains."""
    return [frozenset(i for i, fact in enumerate(facts) if contains_fact(text, fact)) for text in passages]


def distinct(keys: Iterable[str], depth: int) -> list[str]:
    """The first `depth` distinct keys, in order (chunk hits → documents)."""
    seen: dict[str, None] = {}
    for key in keys:
        if len(seen) == depth:
            break
        seen.setdefault(key, None)
    return list(seen)


# retrieval ---------------------------------------------------------------------------------
def recall_at_k(matches: Matches, n_gold: int, k: int) -> float:
    """Fraction of the gold entries satisfied by the first k passages."""
    if n_gold <= 0:
        raise ValueError("recall needs at least one gold entry")
    found: set[int] = set().union(*matches[:k]) if matches[:k] else set()
    return len(found) / n_gold


def all_gold_at_k(matches: Matches, n_gold: int, k: int) -> float:
    """1.0 when every gold entry is satisfied by the first k passages (HotpotQA's both-found rate)."""
    return float(recall_at_k(matches, n_gold, k) == 1.0)


def reciprocal_rank(matches: Matches) -> float:
    """1 / rank of the first passage that satisfies any gold entry; 0 when none does."""
    return next((1.0 / rank for rank, m in enumerate(matches, start=1) if m), 0.0)


def retrieval_scores(matches: Matches, n_gold: int, ks: Sequence[int]) -> dict[str, float]:
    """recall@k and all@k for each k, and the reciprocal rank (averaged over questions: MRR)."""
    scores: dict[str, float] = {}
    for k in ks:
        scores[f"recall@{k}"] = recall_at_k(matches, n_gold, k)
        if n_gold > 1:
            scores[f"all@{k}"] = all_gold_at_k(matches, n_gold, k)
    scores["mrr"] = reciprocal_rank(matches)
    return scores


# citations ---------------------------------------------------------------------------------
def citation_precision(matches: Matches) -> float | None:
    """Fraction of the cited passages that satisfy some gold entry; None without citations."""
    if not matches:
        return None
    return sum(1 for m in matches if m) / len(matches)


def citation_recall(matches: Matches, n_gold: int) -> float | None:
    """Fraction of the gold entries that some citation satisfies; None without gold."""
    if n_gold <= 0:
        return None
    found: set[int] = set().union(*matches) if matches else set()
    return len(found) / n_gold


# latency -----------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between order statistics."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / mean in milliseconds, and the count."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": sum(ms) / len(ms) if ms else float("nan"),
        "n": float(len(ms)),
    }
