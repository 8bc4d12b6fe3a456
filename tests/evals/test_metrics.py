"""Metrics against hand-worked examples."""

from __future__ import annotations

import pytest

from quarry.core.types import Evidence
from quarry.evals.metrics import (
    all_gold_at_k,
    choice_accuracy,
    citation_precision,
    citation_recall,
    contains_answer,
    contains_fact,
    distinct,
    exact_match,
    normalize_answer,
    percentile,
    predicted_letters,
    recall_at_k,
    reciprocal_rank,
    retrieval_scores,
    token_f1,
)
from quarry.evals.scoring import GoldResolver, score
from quarry.evals.systems import Prediction, clean_answer, parse_system
from quarry.evals.types import QAItem


def test_squad_normalisation() -> None:
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("Theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("  ") == ""


def test_exact_match_and_f1() -> None:
    assert exact_match("the Denver Broncos.", ["Denver Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0
    assert exact_match("Carolina", ["Denver Broncos", "carolina!"]) == 1.0  # best of the answers
    # pred [denver, broncos, won] vs gold [denver, broncos]: P = 2/3, R = 1, F1 = 0.8
    assert token_f1("Denver Broncos won", ["the Denver Broncos"]) == pytest.approx(0.8)
    # repeated tokens count once per occurrence: pred [a1, a1] vs gold [a1]: P = 1/2, R = 1 -> 2/3
    assert token_f1("x x", ["x"]) == pytest.approx(2 / 3)
    assert token_f1("Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert token_f1("nothing shared", ["Denver"]) == 0.0
    assert token_f1("the", ["a"]) == 1.0  # both normalise to empty


def test_contains_answer_on_word_boundaries() -> None:
    assert contains_answer("It was completed in 1889 [1].", ["1889"]) == 1.0
    assert contains_answer("It was completed in 18890.", ["1889"]) == 0.0
    assert contains_answer("Sit in Dolores Park.", ["dolores park"]) == 1.0


def test_recall_all_gold_and_mrr() -> None:
    # two gold entries; ranked passages satisfy: gold 0, nothing, gold 1, gold 0 again
    matches = [{0}, set(), {1}, {0}]
    assert recall_at_k(matches, 2, 1) == 0.5
    assert all_gold_at_k(matches, 2, 1) == 0.0
    assert recall_at_k(matches, 2, 2) == 0.5
    assert recall_at_k(matches, 2, 3) == 1.0
    assert all_gold_at_k(matches, 2, 3) == 1.0
    assert reciprocal_rank(matches) == 1.0
    assert reciprocal_rank([set(), set(), {0}]) == pytest.approx(1 / 3)
    assert reciprocal_rank([set(), set()]) == 0.0
    scores = retrieval_scores([set(), {0}], 1, [1, 2])
    assert scores == {"recall@1": 0.0, "recall@2": 1.0, "mrr": 0.5}  # no all@k with one gold entry
    with pytest.raises(ValueError):
        recall_at_k(matches, 0, 1)


def test_distinct_documents() -> None:
    assert distinct(["a", "a", "b", "a", "c", "d"], 3) == ["a", "b", "c"]


def test_citation_precision_and_recall() -> None:
    # three citations: a gold passage, one holding a gold fact, one neither
    assert citation_precision([{0}, {1}, set()]) == pytest.approx(2 / 3)
    assert citation_precision([]) is None
    assert citation_recall([{0}, {0}, set()], 2) == 0.5
    assert citation_recall([], 2) == 0.0
    assert citation_recall([{0}], 0) is None


def test_gold_facts_inside_passages() -> None:
    fact = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day."
    assert contains_fact(f"Some essay text. {fact} More text.", fact)
    cut = fact.split(" on a sunny")[0]  # a chunk boundary cut the last three words: 17 of 20 words left
    assert not contains_fact(cut, fact)
    assert contains_fact(fact.replace("sunny ", ""), fact)  # 19 of 20 words: 95%
    assert not contains_fact("Dolores Park", fact)


def test_multiple_choice_letters() -> None:
    choices = ["red", "green", "blue", "yellow"]
    assert predicted_letters("B", choices) == "B"
    assert predicted_letters("(C) blue", choices) == "C"
    assert predicted_letters("The answer is D.", choices) == "D"
    assert predicted_letters("A, C", choices) == "AC"
    assert predicted_letters("the sky is blue today", choices) == "C"  # no letter: the closest option
    assert predicted_letters("nothing in common", choices) == ""
    assert predicted_letters("E", choices) == ""  # not an option
    assert choice_accuracy("(b)", ["B"], choices) == 0.0  # letters are capitals
    assert choice_accuracy("Answer: B", ["B"], choices) == 1.0
    assert choice_accuracy("C A", ["AC"], choices) == 1.0


def test_percentiles() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    assert percentile([7], 95) == 7


def _ev(doc: str, text: str, chunk: int) -> Evidence:
    return Evidence(
        chunk_id=chunk,
        document_id=chunk,
        document=doc,
        title=doc,
        text=text,
        start_char=0,
        end_char=len(text),
        score=1.0,
    )


def test_score_one_prediction() -> None:
    """Chunk hits → distinct documents; gold by id or title; citations judged against gold
    documents and facts."""
    resolver = GoldResolver([("a", "Alpha", ["a"]), ("b", "Beta", ["b"]), ("c", "Gamma", ["c"])])
    item = QAItem(
        id="q",
        question="Which?",
        answers=["the Gamma ray"],
        gold=["c", "Alpha"],
        gold_facts=["Gamma rays are energetic."],
    )
    prediction = Prediction(
        ranked=[_ev("a", "x", 1), _ev("a", "y", 2), _ev("b", "Gamma rays are energetic.", 3), _ev("c", "z", 4)],
        answer="Gamma ray [1]. It is energetic.",
        short_answer="Gamma Ray",
        cited=[_ev("b", "Gamma rays are energetic.", 3), _ev("c", "z", 4), _ev("b", "nothing", 5)],
    )
    scores, ranked, cited = score(item, prediction, lambda d: d, resolver, [1, 2, 3])
    assert ranked == ["a", "b", "c"]
    assert cited == ["b", "c", "b"]
    assert scores["recall@1"] == 0.5 and scores["recall@2"] == 0.5 and scores["recall@3"] == 1.0
    assert scores["all@2"] == 0.0 and scores["all@3"] == 1.0
    assert scores["mrr"] == 1.0
    assert scores["em"] == 1.0 and scores["f1"] == 1.0 and scores["contains"] == 1.0
    assert scores["cite_precision"] == pytest.approx(2 / 3)  # b holds the fact, c is gold, the last neither
    assert scores["cite_recall"] == 0.5  # c cited, a (Alpha) not
    assert scores["citations"] == 3


def test_system_names_and_answers() -> None:
    assert parse_system("hybrid-no-reorder").name == "hybrid-no-reorder"
    spec = parse_system("agent-no-rerank-no-reorder")
    assert (spec.base, spec.rerank, spec.reorder) == ("agent", False, False)
    assert parse_system("sparse", reorder=False).name == "bm25-no-reorder"
    assert (
        clean_answer(
            "It was 1889 [1]. (Extractive answer: sentences quoted from the sources; no generative "
            "model is configured.)"
        )
        == "It was 1889."
    )
