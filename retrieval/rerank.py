"""Optional cross-encoder reranking (sentence-transformers `CrossEncoder`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from quarry.core.errors import ConfigurationError
from quarry.retrieval.embedder import pick_device


class CrossEncoderReranker:
    """Scores (query, passage) pairs; scores are probabilities in [0, 1], higher is better."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 32) -> None:
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            from sentence_transformers import CrossEncoder

            try:
                self._model = CrossEncoder(self.model_name, device=pick_device(self.device))
            except OSError as exc:
                raise ConfigurationError(f"cannot load reranker {self.model_name!r}: {exc}") from exc
        return self._model

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        logits = self.model.predict(
            [(query, p) for p in passages],
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            activation_fn=None,
        )
        logits = np.asarray(logits, dtype=np.float32)
        if logits.ndim == 2:  # a two-class head: take the positive class
            logits = logits[:, -1] - logits[:, 0]
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
