"""Scoring one system's prediction for one item against the item's gold."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from quarry.core.types import Evidence
from quarry.evals.answer_shape import shape_problems
from quarry.evals.metrics import (
    choice_accuracy,
    citation_precision,
    citation_recall,
    contains_answer,
    contains_fact,
    distinct,
    exact_match,
    fact_matches,
    retrieval_scores,
    token_f1,
)
from quarry.evals.systems import Prediction
from quarry.evals.types import QAItem

DocOf = Callable[[str], str]  # a passage's document (source name) -> the id gold is matched against


class GoldResolver:
    """Maps a gold entry (a document id, source name, record id or title) to the document
    ids it names."""

    def __init__(self, docs: Iterable[tuple[str, str, Sequence[str]]]) -> None:
        """`docs`: (id, title, other names) per document."""
        self.ids: set[str] = set()
        self.names: dict[str, set[str]] = {}
        self.titles: dict[str, set[str]] = {}
        for doc_id, title, aliases in docs:
            self.ids.add(doc_id)
            for alias in aliases:
                self.names.setdefault(alias, set()).add(doc_id)
            self.titles.setdefault(title, set()).add(doc_id)

    def resolve(self, entry: str) -> frozenset[str]:
        if entry in self.ids:
            return frozenset([entry])
        found = self.names.get(entry) or self.titles.get(entry) or self.titles.get(entry.replace("_", " "))
        return frozenset(found) if found else frozenset([entry])

    def unresolved(self, entries: Iterable[str]) -> list[str]:
        return [
            e
            for e in entries
            if e not in self.ids
            and e not in self.names
            and e not in self.titles
            and e.replace("_", " ") not in self.titles
        ]


def score(
    item: QAItem,
    prediction: Prediction,
    doc_of: DocOf,
    resolver: GoldResolver,
    ks: Sequence[int],
) -> tuple[dict[str, float], list[str], list[str]]:
    """(scores, ranked document ids, cited document ids). Retrieval is judged per document
    when the item names gold documents (chunk hits mapped to their document, repeats
    dropped), else per passage against its gold facts."""
    depth = max(ks)
    scores: dict[str, float] = {}
    ranked_docs = distinct((doc_of(e.document) for e in prediction.ranked), depth)
    cited_docs = [doc_of(e.document) for e in prediction.cited]
    gold_sets = [resolver.resolve(g) for g in item.gold]
    if gold_sets:
        matches = [frozenset(i for i, g in enumerate(gold_sets) if doc in g) for doc in ranked_docs]
        scores.update(retrieval_scores(matches, len(gold_sets), ks))
    elif item.gold_facts:
        passages = [e.text for e in prediction.ranked[:depth]]
        scores.update(retrieval_scores(fact_matches(passages, item.gold_facts), len(item.gold_facts), ks))
    scores.update(_answer_scores(item, prediction))
    scores.update(_citation_scores(item, prediction.cited, cited_docs, gold_sets))
    return scores, ranked_docs, cited_docs


def _answer_scores(item: QAItem, prediction: Prediction) -> dict[str, float]:
    # the answer's form: no lone fragment first, no sentence twice, no markup (answer_shape)
    form = {"well_formed": 0.0 if shape_problems(item.question, prediction.answer) else 1.0}
    if not item.answers:
        return form
    short = prediction.short_answer or prediction.answer
    if item.choices:
        return {**form, "choice": choice_accuracy(short, item.answers, item.choices)}
    return {
        **form,
        "em": exact_match(short, item.answers),
        "f1": token_f1(short, item.answers),
        "contains": max(contains_answer(prediction.answer, item.answers), contains_answer(short, item.answers)),
    }


def _citation_scores(
    item: QAItem, cited: Sequence[Evidence], cited_docs: Sequence[str], gold_sets: Sequence[frozenset[str]]
) -> dict[str, float]:
    if not gold_sets and not item.gold_facts:
        return {}
    out: dict[str, float] = {"citations": float(len(cited))}
    supported = [
        frozenset([0])
        if any(doc in g for g in gold_sets) or any(contains_fact(e.text, f) for f in item.gold_facts)
        else frozenset()
        for e, doc in zip(cited, cited_docs, strict=True)
    ]
    precision = citation_precision(supported)
    if precision is not None:
        out["cite_precision"] = precision
    if gold_sets:
        covered = [frozenset(i for i, g in enumerate(gold_sets) if doc in g) for doc in cited_docs]
        recall = citation_recall(covered, len(gold_sets))
    else:
        recall = citation_recall(fact_matches([e.text for e in cited], item.gold_facts), len(item.gold_facts))
    if recall is not None:
        out["cite_recall"] = recall
    return out


def record(
    system: str,
    item: QAItem,
    prediction: Prediction | None,
    scores: dict[str, float],
    ranked: list[str],
    cited: list[str],
    error: str | None = None,
) -> dict[str, Any]:
    """One line of a run's items.jsonl."""
    return {
        "system": system,
        "item": item.id,
        "group": item.group,
        "question": item.question[:500],
        "answers": item.answers[:5],
        "prediction": (prediction.short_answer or prediction.answer)[:500] if prediction else None,
        "answer": prediction.answer[:2000] if prediction else None,
        "ranked": ranked,
        "cited": cited,
        "scores": scores,
        "timings": {k: round(v, 5) for k, v in prediction.timings.items()} if prediction else {},
        "prompt_tokens": prediction.prompt_tokens if prediction else 0,
        "completion_tokens": prediction.completion_tokens if prediction else 0,
        "error": error,
    }
