"""Cross-encoder reranking with a tiny random-weight model built here."""

from __future__ import annotations

from pathlib import Path

import pytest

from quarry.core.settings import Settings
from quarry.retrieval.embedder import SentenceEmbedder, resolve_model
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document
from quarry.retrieval.rerank import CrossEncoderReranker
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("tiny-ce")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(Settings().embedding.model))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_reranker_scores_are_probabilities(tiny_cross_encoder: str) -> None:
    reranker = CrossEncoderReranker(tiny_cross_encoder, device="cpu")
    scores = reranker.score("query", ["one passage", "another passage", "third"])
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    assert reranker.score("q", []).shape == (0,)


def test_library_reranks_when_configured(tmp_path: Path, embedder: SentenceEmbedder, tiny_cross_encoder: str) -> None:
    settings = make_settings(tmp_path, search={"rerank_model": tiny_cross_encoder})
    lib = Library(settings, embedder=embedder)
    lib.ingest_documents("kb", [text_document(f"Passage {i} on gardening and soil.", name=f"g{i}") for i in range(5)])
    hits = lib.search("kb", "gardening soil", k=3)
    assert [h.score_kind for h in hits] == ["rerank"] * 3
    assert all(h.rerank_score == h.score and 0 <= h.score <= 1 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    plain = lib.search("kb", "gardening soil", k=3, rerank=False)
    assert plain[0].score_kind == "fused" and plain[0].rerank_score is None
    lib.close()
