"""Long-context memory: InfLLM-style memory units and Squeezed-Attention cached fixed
contexts, plugged into transformers through a `Cache` subclass and an attention function
registered with `AttentionInterface`.

Importing the package is light; the tensor modules (and torch, transformers) load when one
of their names is first used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from quarry.memory.config import InfLLMConfig, SqueezedConfig
from quarry.memory.errors import (
    ContextMismatchError,
    ContextStoreError,
    MemoryConfigError,
    MemoryLayerError,
)

if TYPE_CHECKING:
    from quarry.memory.engine import (
        LongAnswer,
        LongContextEngine,
        PrecomputeReport,
        infllm_generate_kwargs,
        precompute_context,
        squeezed_generate_kwargs,
    )
    from quarry.memory.infllm import InfLLMCache
    from quarry.memory.interface import ATTENTION_NAME, prepare_model, register_attention
    from quarry.memory.prefix import ask_with_prefix_cache, cache_hit_share, prefix_cached_messages
    from quarry.memory.squeezed import SqueezedCache
    from quarry.memory.store import ContextEntry, ContextKey, ContextStore, ModelFingerprint

_LAZY = {
    "ATTENTION_NAME": "quarry.memory.interface",
    "prepare_model": "quarry.memory.interface",
    "register_attention": "quarry.memory.interface",
    "InfLLMCache": "quarry.memory.infllm",
    "SqueezedCache": "quarry.memory.squeezed",
    "ContextEntry": "quarry.memory.store",
    "ContextKey": "quarry.memory.store",
    "ContextStore": "quarry.memory.store",
    "ModelFingerprint": "quarry.memory.store",
    "LongAnswer": "quarry.memory.engine",
    "LongContextEngine": "quarry.memory.engine",
    "PrecomputeReport": "quarry.memory.engine",
    "infllm_generate_kwargs": "quarry.memory.engine",
    "precompute_context": "quarry.memory.engine",
    "squeezed_generate_kwargs": "quarry.memory.engine",
    "ask_with_prefix_cache": "quarry.memory.prefix",
    "cache_hit_share": "quarry.memory.prefix",
    "prefix_cached_messages": "quarry.memory.prefix",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'memory' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ATTENTION_NAME",
    "ContextEntry",
    "ContextKey",
    "ContextMismatchError",
    "ContextStore",
    "ContextStoreError",
    "InfLLMCache",
    "InfLLMConfig",
    "LongAnswer",
    "LongContextEngine",
    "MemoryConfigError",
    "MemoryLayerError",
    "ModelFingerprint",
    "PrecomputeReport",
    "SqueezedCache",
    "SqueezedConfig",
    "ask_with_prefix_cache",
    "cache_hit_share",
    "infllm_generate_kwargs",
    "precompute_context",
    "prefix_cached_messages",
    "prepare_model",
    "register_attention",
    "squeezed_generate_kwargs",
]
