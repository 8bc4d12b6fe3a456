"""Building a cached fixed context: one chunked prefill of the context with exact
attention, then K-means per layer and KV head and the global threshold calibrated on the
context's last queries (Squeezed Attention's offline phase, Hooper et al. 2024)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from quarry.memory.clustering import build_index, calibrate
from quarry.memory.config import SqueezedConfig
from quarry.memory.interface import prepare_model
from quarry.memory.squeezed import ContextPrefillCache, SqueezedCache, Thresholds
from quarry.memory.store import ContextEntry, ContextKey, ModelFingerprint, content_hash


def prefill_context(
    model: Any, input_ids: Sequence[int], config: SqueezedConfig, model_id: str | None = None
) -> ContextEntry:
    """Prefills `input_ids` (the fixed context, N tokens) in chunks of
    `config.prefill_chunk`, clusters each layer's keys and calibrates the thresholds."""
    prepare_model(model)
    if len(input_ids) < 2:
        raise ValueError("a fixed context needs at least two tokens")
    text_config = model.config.get_text_config()
    cache = ContextPrefillCache(text_config.num_hidden_layers, config.calibration_queries)
    ids = torch.tensor([list(input_ids)], dtype=torch.long, device=model.device)  # (1, N)
    started = time.perf_counter()
    with torch.inference_mode():
        for a in range(0, ids.shape[1], config.prefill_chunk):
            model(
                input_ids=ids[:, a : a + config.prefill_chunk], past_key_values=cache, use_cache=True, logits_to_keep=1
            )
    prefilled = time.perf_counter()
    layers = cache.context_layers()
    with torch.inference_mode():
        indexes = []
        for layer in layers:
            assert layer.keys is not None and layer.values is not None
            indexes.append(build_index(layer.keys[0], layer.values[0], config))
            layer.keys = layer.values = None  # free the unsorted copy as we go
        queries = [layer.queries for layer in layers if layer.queries is not None]
        scaling = layers[0].scaling
        assert scaling is not None and len(queries) == len(indexes)
        thresholds = calibrate(indexes, queries, config, scaling)
    key = ContextKey(ModelFingerprint.of(model, model_id), content_hash(input_ids), config)
    info = {
        "tokens": str(len(input_ids)),
        "prefill_seconds": f"{prefilled - started:.3f}",
        "cluster_seconds": f"{time.perf_counter() - prefilled:.3f}",
    }
    return ContextEntry(key, ids[0].cpu(), indexes, thresholds, info)


def context_cache(model: Any, entry: ContextEntry, budget_override: float | None = None) -> SqueezedCache:
    """A fresh question cache over `entry` (its tensors on the model's device). With
    `budget_override` >= 1 every key is kept (exact attention)."""
    prepare_model(model)
    thresholds = entry.thresholds
    if budget_override is not None and budget_override >= 1.0:
        thresholds = Thresholds.keep_all()
    return SqueezedCache.for_model(model, entry.layers, thresholds, entry.key.config.min_clusters)
