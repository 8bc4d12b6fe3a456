"""Configurations of the two mechanisms, as frozen dataclasses (tensor code reads these;
`core.settings.MemorySettings` is where their values come from in a running service)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from quarry.memory.errors import MemoryConfigError

if TYPE_CHECKING:
    from quarry.core.settings import MemorySettings

PositionMode = Literal["fixed", "exact"]


@dataclass(frozen=True)
class InfLLMConfig:
    """InfLLM memory units (Xiao et al. 2024, "InfLLM: Training-Free Long-Context
    Extrapolation for LLMs with an Efficient Context Memory").

    Defaults are the paper's: memory units of 128 tokens, 128 initial (sink) tokens, a
    4K local window, 16 units selected per chunk, 4 representative tokens per unit, and
    input encoded in chunks of 512 tokens.

    `positions="fixed"` is the paper's scheme: memory keys (sinks, units, the not yet full
    unit) are kept without rotary position and the query sees them all at one distance,
    the window size. `positions="exact"` keeps every key at its true position instead
    (with every unit selected that is plain full attention, which is what the tests use
    to check the bookkeeping)."""

    block_size: int = 128
    sink_tokens: int = 128
    window: int = 4096
    top_k: int = 16
    representative_keys: int = 4
    chunk_size: int = 512
    device_cache_blocks: int = 64
    per_head: bool = False
    positions: PositionMode = "fixed"

    def __post_init__(self) -> None:
        _positive(self, "block_size", "window", "top_k", "representative_keys", "chunk_size", "device_cache_blocks")
        if self.sink_tokens < 0:
            raise MemoryConfigError("infllm sink_tokens must be >= 0")
        if self.representative_keys > self.block_size:
            raise MemoryConfigError("infllm representative_keys cannot exceed block_size")
        if self.positions not in ("fixed", "exact"):
            raise MemoryConfigError(f"infllm positions must be 'fixed' or 'exact', not {self.positions!r}")


@dataclass(frozen=True)
class SqueezedConfig:
    """Squeezed Attention over a cached fixed context (Hooper et al. 2024, "Squeezed
    Attention: Accelerating Long Context Length LLM Inference").

    Keys of the fixed context are clustered per layer and KV head by K-means on
    normalised keys; the number of clusters is `cluster_share` of the context length
    (`coarse_share` for the first level of the hierarchical lookup). One global threshold
    is calibrated on the context's last `calibration_queries` queries so that on them a
    share `key_budget` of the keys is attended (`coarse_budget`: share of keys under the
    coarse clusters that pass the first level). `min_clusters` clusters with the highest
    estimate always pass, so the single most attended region is never dropped.

    Keys whose norm exceeds `outlier_ratio` times the head's median key norm (at most
    `outlier_share` of the context, largest first) get a cluster of their own that the
    hierarchical lookup always compares: a centroid would average away a key that
    dominates attention by its norm (our addition to the paper's method)."""

    cluster_share: float = 0.02
    hierarchical: bool = True
    coarse_share: float = 0.002
    key_budget: float = 0.1
    coarse_budget: float = 0.3
    calibration_queries: int = 64
    min_clusters: int = 1
    outlier_ratio: float = 2.0
    outlier_share: float = 0.002
    kmeans_iterations: int = 12
    kmeans_max_points_per_centroid: int = 128
    seed: int = 0
    prefill_chunk: int = 2048

    def __post_init__(self) -> None:
        _positive(self, "calibration_queries", "kmeans_iterations", "kmeans_max_points_per_centroid", "prefill_chunk")
        for name in ("cluster_share", "coarse_share", "key_budget", "coarse_budget"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise MemoryConfigError(f"squeezed {name} must be in (0, 1], not {value}")
        if self.hierarchical and self.coarse_share >= self.cluster_share:
            raise MemoryConfigError("squeezed coarse_share must be smaller than cluster_share")
        if self.min_clusters < 0:
            raise MemoryConfigError("squeezed min_clusters must be >= 0")
        if self.outlier_ratio <= 1 or not 0 <= self.outlier_share <= 0.1:
            raise MemoryConfigError("squeezed outlier_ratio must be > 1 and outlier_share in [0, 0.1]")

    def digest(self) -> str:
        """A short, stable hash of every field (part of a context-store key)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SqueezedConfig:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


def infllm_config(settings: MemorySettings) -> InfLLMConfig:
    """The InfLLM configuration the settings describe."""
    return InfLLMConfig(
        block_size=settings.infllm_block_size,
        sink_tokens=settings.infllm_sink_tokens,
        window=settings.infllm_window,
        top_k=settings.infllm_top_k,
        representative_keys=settings.infllm_representative_keys,
        chunk_size=settings.infllm_chunk_size,
        device_cache_blocks=settings.infllm_device_cache_blocks,
        per_head=settings.infllm_per_head,
    )


def squeezed_config(settings: MemorySettings) -> SqueezedConfig:
    """The Squeezed Attention configuration the settings describe."""
    return SqueezedConfig(
        cluster_share=settings.squeezed_cluster_share,
        hierarchical=settings.squeezed_hierarchical,
        coarse_share=settings.squeezed_coarse_share,
        key_budget=settings.squeezed_key_budget,
        coarse_budget=settings.squeezed_coarse_budget,
        calibration_queries=settings.squeezed_calibration_queries,
        kmeans_iterations=settings.squeezed_kmeans_iterations,
        prefill_chunk=settings.squeezed_prefill_chunk,
    )


def _positive(config: object, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise MemoryConfigError(f"{type(config).__name__}.{name} must be >= 1")
