"""The bridge to transformers: one attention function registered through
`AttentionInterface`, and the handle by which a memory cache layer reaches it.

A transformers 5 attention module calls `past_key_values.update(k, v, layer_idx)` and
passes what comes back, unchanged, to the attention function chosen by
`config._attn_implementation`. The memory caches' layers return their keys wrapped in a
`MemoryKeys` handle that names the layer; the registered function hands the query to that
layer. Keys that are not a handle (a `DynamicCache`, or no cache) get exact causal
attention, so a model switched to this implementation keeps working for every other use.
No model code is patched."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from quarry.memory.attention import exact_attention
from quarry.memory.errors import MemoryConfigError

ATTENTION_NAME = "quarry_memory"


class MemoryLayer(Protocol):
    """A cache layer that computes its own attention for the queries of one forward."""

    def attend(self, query: torch.Tensor, scaling: float) -> torch.Tensor:
        """(B, Hq, T, D) queries, already rotated at their positions -> (B, Hq, T, D)."""
        ...


class MemoryKeys(torch.Tensor):
    """Keys handed from a memory cache layer to `memory_attention`; operations on it give
    plain tensors (no subclass propagation)."""

    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]
    memory_layer: MemoryLayer


def hand_over(keys: torch.Tensor, layer: MemoryLayer) -> torch.Tensor:
    """`keys` (B, Hkv, S, D) as a handle to `layer` (shares the data)."""
    handle = keys.as_subclass(MemoryKeys)  # (B, Hkv, S, D)
    assert isinstance(handle, MemoryKeys)
    handle.memory_layer = layer
    return handle


def memory_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The registered attention function: (B, Hq, T, D) query -> (B, T, Hq, D) output.
    `attention_mask` is None for this implementation (transformers builds no mask for
    implementations it does not know), so the fallback is causal without padding: batch
    size 1 or unpadded batches. A `sliding_window` keyword (Mistral, Qwen2) and dropout are
    ignored (inference only)."""
    scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
    if isinstance(key, MemoryKeys):
        out = key.memory_layer.attend(query, scale)  # (B, Hq, T, D)
    else:
        out = exact_attention(query, key, value, scale)  # (B, Hq, T, D)
    return out.to(query.dtype).transpose(1, 2).contiguous(), None  # (B, T, Hq, D)


def register_attention() -> None:
    """Registers `memory_attention` under ATTENTION_NAME (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, memory_attention)


def prepare_model(model: Any) -> Any:
    """Registers the attention function and switches `model` to it (the official
    `set_attn_implementation`); returns the model."""
    register_attention()
    if getattr(model.config, "_attn_implementation", None) != ATTENTION_NAME:
        model.set_attn_implementation(ATTENTION_NAME)
    return model


def check_model(model_config: Any) -> None:
    """Raises unless the model (its config) uses the memory attention: under any other
    implementation a memory cache would be read as plain keys, silently wrong."""
    found = getattr(model_config, "_attn_implementation", None)
    if found != ATTENTION_NAME:
        raise MemoryConfigError(
            f"the model uses attn_implementation={found!r}; memory caches need {ATTENTION_NAME!r} "
            "(memory.prepare_model(model), or attn_implementation in HFChatModel's model_kwargs)"
        )
