"""Embedder: micro-batching of concurrent single queries, and the ONNX Runtime backends."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from quarry.core.errors import ConfigurationError
from quarry.core.settings import EmbeddingSettings
from quarry.retrieval.embedder import MicroBatcher, SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.retrieval.loaders import text_document


def _fake_encode(calls: list[list[str]], gate: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        if gate is not None and len(calls) == 1:
            gate.wait(5)  # the first batch runs until the test lets it go
        return np.array([[float(len(t)), float(sum(map(ord, t)))] for t in texts], dtype=np.float32)

    return encode


def test_lone_query_is_embedded_at_once_not_after_the_window() -> None:
    calls: list[list[str]] = []
    batcher = MicroBatcher(_fake_encode(calls), window_s=2.0, max_batch=8)
    started = time.perf_counter()
    vector = batcher.encode_one("hello")
    assert time.perf_counter() - started < 1.0  # the window is 2 s: a lone query never waits for it
    assert vector.tolist() == [5.0, float(sum(map(ord, "hello")))]
    assert calls == [["hello"]] and batcher.batches == [1]


def test_queries_arriving_during_a_batch_are_embedded_together_each_getting_its_own() -> None:
    calls: list[list[str]] = []
    gate = threading.Event()
    batcher = MicroBatcher(_fake_encode(calls, gate), window_s=0.005, max_batch=4)
    texts = [f"query number {i}" + "!" * i for i in range(9)]
    with ThreadPoolExecutor(9) as pool:
        first = pool.submit(batcher.encode_one, texts[0])
        while not calls:
            time.sleep(0.001)
        rest = [pool.submit(batcher.encode_one, t) for t in texts[1:]]
        while len(batcher._pending) < 8:  # all eight queued behind the running batch
            time.sleep(0.001)
        started = time.perf_counter()
        gate.set()
        results = [first.result(5)] + [f.result(5) for f in rest]
        waited = time.perf_counter() - started
    assert [r[0] for r in results] == [float(len(t)) for t in texts]  # each got its own vector
    assert batcher.batches == [1, 4, 4]  # at most max_batch a batch
    assert sorted(sum(calls, [])) == sorted(texts)
    assert waited < 1.0  # full batches do not wait out the window; small ones wait 5 ms at most


def test_an_error_reaches_every_query_of_the_batch() -> None:
    gate = threading.Event()
    seen: list[int] = []

    def broken(texts: list[str]) -> np.ndarray:
        seen.append(len(texts))
        if len(seen) == 1:
            gate.wait(5)
            return np.zeros((len(texts), 2), dtype=np.float32)
        raise RuntimeError("model failed")

    batcher = MicroBatcher(broken, window_s=0.001, max_batch=8)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.encode_one, "a")
        while not seen:
            time.sleep(0.001)
        rest = [pool.submit(batcher.encode_one, t) for t in "bcd"]
        while len(batcher._pending) < 3:
            time.sleep(0.001)
        gate.set()
        assert first.result(5).shape == (2,)
        for f in rest:
            with pytest.raises(RuntimeError, match="model failed"):
                f.result(5)
    assert batcher._running == 0
    with pytest.raises(RuntimeError):  # usable afterwards (this encode fails too, alone and at once)
        batcher.encode_one("e")


def test_concurrent_searches_get_the_hits_of_sequential_ones(library: Library) -> None:
    facts = [
        "Mount Etna is an active volcano on the east coast of Sicily.",
        "The Danube flows through ten countries before reaching the Black Sea.",
        "Sourdough bread rises thanks to wild yeast and lactic acid bacteria.",
        "The telescope on La Palma observed a distant quasar.",
        "The Sicilian Defence opens with the moves 1.e4 c5.",
        "Honey bees communicate the direction of flowers with a waggle dance.",
    ]
    library.ingest_documents("kb", [text_document(t, name=f"f{i}.txt") for i, t in enumerate(facts)])
    queries = ["volcano in Italy", "river to the Black Sea", "yeast in bread", "quasar telescope",
               "chess opening", "how bees dance", "active volcano", "lactic acid"] * 3  # fmt: skip

    def hits(q: str) -> list[tuple[str, float]]:
        return [(h.document, round(h.score, 4)) for h in library.search("kb", q, k=3, mode="dense")]

    sequential = [hits(q) for q in queries]
    batcher = library.embedder.batcher
    assert batcher is not None
    before = len(batcher.batches)
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(hits, queries))
    assert concurrent == sequential
    assert len(batcher.batches) - before <= len(queries)


def test_micro_batching_off_with_a_zero_window() -> None:
    assert SentenceEmbedder(EmbeddingSettings(query_batch_window_ms=0)).batcher is None


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return tmp_path_factory.mktemp("onnx-models")


TEXTS = [
    "What is reciprocal rank fusion?",
    "Mount Etna is an active volcano on the east coast of Sicily, one of the most active in the world.",
    "x",
    "A long passage about retrieval, ranking and evaluation. " * 30,  # past the model's 256 tokens
]


@pytest.mark.parametrize(("backend", "min_cosine"), [("onnx", 0.9999), ("onnx-int8", 0.98)])
def test_onnx_backend_matches_torch(
    backend: str, min_cosine: float, onnx_cache: Path, embedder: SentenceEmbedder
) -> None:
    onnx = SentenceEmbedder(EmbeddingSettings(backend=backend), cache_dir=onnx_cache)
    assert (onnx.dimension, onnx.max_tokens) == (embedder.dimension, embedder.max_tokens)
    assert onnx.token_ids(TEXTS[1]) == embedder.token_ids(TEXTS[1])  # chunk sizes count the same tokens
    vectors = onnx.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), embedder.dimension) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosine = (vectors * embedder.encode(TEXTS)).sum(axis=1)
    assert cosine.min() >= min_cosine
    # the export is cached: a second embedder (another process, say) loads it without exporting
    [export] = [p for p in onnx_cache.glob("*/model.onnx") if ("int8" in p.parent.name) == (backend == "onnx-int8")]
    stamp = export.stat().st_mtime_ns
    again = SentenceEmbedder(EmbeddingSettings(backend=backend), cache_dir=onnx_cache)
    # int8 activations are quantised per batch, so a text's vector moves a little with its batch-mates
    tolerance = 1e-5 if backend == "onnx" else 2e-2
    assert np.allclose(again.encode(TEXTS[:2]), vectors[:2], atol=tolerance)
    assert export.stat().st_mtime_ns == stamp


def test_onnx_backend_refuses_an_unsupported_model(onnx_cache: Path, tmp_path: Path) -> None:
    model = tmp_path / "odd-model"
    model.mkdir()
    (model / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.StaticEmbedding"}])
    )
    odd = SentenceEmbedder(EmbeddingSettings(model=str(model), backend="onnx"), cache_dir=onnx_cache)
    with pytest.raises(ConfigurationError, match="Transformer"):
        odd.encode(["hello"])


def test_parallel_batches_each_query_gets_its_own_vector_once() -> None:
    """Two batches at once (two cores): many threads, every query answered exactly once."""
    calls: list[list[str]] = []
    lock = threading.Lock()

    def encode(texts: list[str]) -> np.ndarray:
        with lock:
            calls.append(list(texts))
        time.sleep(0.002)
        return np.array([[float(len(t)), 0.0] for t in texts], dtype=np.float32)

    batcher = MicroBatcher(encode, window_s=0.001, max_batch=8, parallel=2)
    texts = [f"q{'x' * i}" for i in range(200)]
    with ThreadPoolExecutor(32) as pool:
        vectors = list(pool.map(batcher.encode_one, texts))
    assert [v[0] for v in vectors] == [float(len(t)) for t in texts]
    assert sorted(sum(calls, [])) == sorted(texts)  # each embedded once
    assert max(map(len, calls)) <= 8 and len(calls) < len(texts)  # batched
    assert batcher._running == 0 and not batcher._pending


def test_torch_bf16_backend_is_close_to_float32(embedder: SentenceEmbedder) -> None:
    bf16 = SentenceEmbedder(EmbeddingSettings(backend="torch-bf16", device="cpu"))
    vectors = bf16.encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), embedder.dimension)
    assert (vectors * embedder.encode(TEXTS)).sum(axis=1).min() >= 0.999
    assert bf16.token_ids(TEXTS[1]) == embedder.token_ids(TEXTS[1])
