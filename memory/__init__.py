"""Long-context memory: InfLLM-style memory units and Squeezed-Attention cached fixed
contexts, plugged into transformers through a `Cache` subclass and an attention function
registered with `AttentionInterface`.

Importing the package is light; the tensor modules (and torch, transformers) load when one
of their names is first used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memory.config import InfLLMConfig, SqueezedConfig
from memory.errors import (
    ContextMismatchError,
    ContextStoreError,
    MemoryConfigError,
    MemoryLayerError,
)

if TYPE_CHECKING:
    from memory.engine import (
        LongAnswer,
        LongContextEngine,
        PrecomputeReport,
        infllm_generate_kwargs,
        precompute_context,
        squeezed_generate_kwargs,
    )
    from memory.infllm import InfLLMCache
    from memory.interface import ATTENTION_NAME, prepare_model, register_attention
    from memory.prefix import ask_with_prefix_cache, cache_hit_share, prefix_cached_messages
    from memory.squeezed import SqueezedCache
    from memory.store import ContextEntry, ContextKey, ContextStore, ModelFingerprint

_LAZY = {
    "ATTENTION_NAME": "memory.interface",
    "prepare_model": "memory.interface",
    "register_attention": "memory.interface",
    "InfLLMCache": "memory.infllm",
    "SqueezedCache": "memory.squeezed",
    "ContextEntry": "memory.store",
    "ContextKey": "memory.store",
    "ContextStore": "memory.store",
    "ModelFingerprint": "memory.store",
    "LongAnswer": "memory.engine",
    "LongContextEngine": "memory.engine",
    "PrecomputeReport": "memory.engine",
    "infllm_generate_kwargs": "memory.engine",
    "precompute_context": "memory.engine",
    "squeezed_generate_kwargs": "memory.engine",
    "ask_with_prefix_cache": "memory.prefix",
    "cache_hit_share": "memory.prefix",
    "prefix_cached_messages": "memory.prefix",
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
