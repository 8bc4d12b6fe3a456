"""InfLLM memory units as a transformers `Cache` (Xiao et al. 2024, "InfLLM: Training-Free
Long-Context Extrapolation for LLMs with an Efficient Context Memory").

Each layer keeps, for a sequence of any length:
- the initial (sink) tokens;
- a local window of the most recent tokens, attended with their true positions;
- older tokens grouped into memory units (blocks) of `block_size` tokens, each with a few
  representative keys: the keys that received the most attention while they were local;
- the evicted tokens that do not fill a unit yet.

Per chunk of queries, the chunk's mean query scores every unit by its representative keys
and the top-k units join the attention, together with the sinks and the partial unit.
Memory keys carry no rotary position and the query sees them at one fixed distance (the
window size), as in the paper. Unit keys and values live in host memory; the units a chunk
needs are copied to the device through a small LRU cache. Attention over memory and over
the local window is computed separately and merged exactly (log-sum-exp).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from quarry.memory.attention import Partial, attend, causal_mask, merge
from quarry.memory.config import InfLLMConfig
from quarry.memory.errors import MemoryConfigError
from quarry.memory.interface import check_model, hand_over
from quarry.memory.rotary import Rotary

# -- pure functions ----------------------------------------------------------------------


def representative_keys(keys: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
    """The `count` keys of a unit that received the most attention: (Hkv, r, D)."""
    top = scores.topk(count, dim=-1).indices  # (Hkv, r)
    return keys.gather(1, top[..., None].expand(-1, -1, keys.shape[-1]))  # (Hkv, r, D)


def score_blocks(mean_query: torch.Tensor, representatives: torch.Tensor) -> torch.Tensor:
    """Relevance of each unit to a chunk: the mean query (Hkv, D), summed over the query
    heads of each KV head, against the unit's representative keys (Hkv, N, r, D),
    averaged over them: (Hkv, N)."""
    scores = torch.einsum("hd,hnrd->hnr", mean_query.float(), representatives.float())  # (Hkv, N, r)
    return scores.mean(dim=-1)  # (Hkv, N)


def select_blocks(scores: torch.Tensor, top_k: int, per_head: bool) -> torch.Tensor:
    """Top-k units (Hkv, k); one choice shared by all heads of the layer unless per_head."""
    k = min(top_k, scores.shape[-1])
    if not per_head:
        shared = scores.sum(dim=0).topk(k).indices  # (k,)
        return shared[None, :].expand(scores.shape[0], -1)  # (Hkv, k)
    return scores.topk(k, dim=-1).indices  # (Hkv, k)


# -- block storage -------------------------------------------------------------------------


class BlockMemory:
    """Memory units of one layer: keys and values in host memory (pinned when the device
    is a GPU), representative keys on the device, and an LRU cache of units on the device."""

    def __init__(self, device: torch.device, capacity: int) -> None:
        self.device = device
        self.capacity = capacity
        self.offload = device.type != "cpu"
        self.host_keys: list[torch.Tensor] = []  # each (Hkv, B, D)
        self.host_values: list[torch.Tensor] = []  # each (Hkv, B, D)
        self._reps: torch.Tensor | None = None  # (Hkv, capacity, r, D), grown by doubling
        self.count = 0
        self.cached: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def representatives(self) -> torch.Tensor:
        """(Hkv, N, r, D) representative keys of the N units."""
        assert self._reps is not None
        return self._reps[:, : self.count]  # (Hkv, N, r, D)

    def add(self, keys: torch.Tensor, values: torch.Tensor, reps: torch.Tensor) -> None:
        """Stores a unit: keys/values (Hkv, B, D) and its representatives (Hkv, r, D)."""
        self.host_keys.append(self._to_host(keys))
        self.host_values.append(self._to_host(values))
        if self._reps is None or self.count == self._reps.shape[1]:
            grown = torch.empty(
                (reps.shape[0], max(16, 2 * self.count), *reps.shape[1:]), dtype=reps.dtype, device=reps.device
            )  # (Hkv, 2N, r, D)
            if self._reps is not None:
                grown[:, : self.count] = self._reps[:, : self.count]
            self._reps = grown
        self._reps[:, self.count] = reps
        self.count += 1

    def fetch(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Units `ids` on the device: keys and values (U, Hkv, B, D)."""
        keys, values = [], []
        for i in ids:
            if i in self.cached:
                self.cached.move_to_end(i)
                self.hits += 1
            else:
                self.misses += 1
                self.cached[i] = (
                    self.host_keys[i].to(self.device, non_blocking=True),
                    self.host_values[i].to(self.device, non_blocking=True),
                )
            k, v = self.cached[i]
            keys.append(k)
            values.append(v)
        while len(self.cached) > self.capacity:
            self.cached.popitem(last=False)  # least recently used first
        return torch.stack(keys), torch.stack(values)  # (U, Hkv, B, D)

    def device_bytes(self) -> int:
        """Representative keys plus the cached units (on a CPU "device" the cached units
        are the host tensors themselves; they count as the working set)."""
        reps = 0 if self._reps is None else _nbytes(self.representatives)
        return reps + sum(_nbytes(k) + _nbytes(v) for k, v in self.cached.values())

    def host_bytes(self) -> int:
        return sum(_nbytes(k) + _nbytes(v) for k, v in zip(self.host_keys, self.host_values, strict=True))

    def _to_host(self, x: torch.Tensor) -> torch.Tensor:
        if not self.offload:
            return x.clone()
        host = x.to("cpu")
        return host.pin_memory() if torch.cuda.is_available() else host


# -- the cache -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InfLLMStats:
    """What an InfLLM cache holds, summed over layers."""

    tokens: int
    blocks: int
    device_bytes: int
    host_bytes: int
    cache_hits: int
    cache_misses: int


class InfLLMLayer(CacheLayerMixin):
    """One layer's InfLLM memory (batch size 1)."""

    is_compileable = False
    is_croppable = False

    def __init__(self, config: InfLLMConfig, rotary: Rotary | None) -> None:
        super().__init__()
        if config.positions == "fixed" and rotary is None:
            raise MemoryConfigError("InfLLM with fixed memory positions needs the model's rotary frequencies")
        self.config = config
        self.rotary = rotary
        self.seen = 0
        self.local_start = 0  # position of the first local token
        self.last_selection: torch.Tensor | None = None  # (Hkv, k) units chosen for the last chunk
        self.last_scores: torch.Tensor | None = None  # (Hkv, N) unit scores for the last chunk

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        if key_states.shape[0] != 1:
            raise MemoryConfigError("the InfLLM cache supports batch size 1")
        self.dtype, self.device = key_states.dtype, key_states.device
        _, hkv, _, d = key_states.shape
        empty = torch.zeros((1, hkv, 0, d), dtype=self.dtype, device=self.device)  # (1, Hkv, 0, D)
        self.local_k, self.local_v = empty, empty.clone()  # (1, Hkv, L, D), rotated at true positions
        self.local_score = torch.zeros((hkv, 0), dtype=torch.float32, device=self.device)  # (Hkv, L)
        self.sink_k, self.sink_v = empty[0], empty[0].clone()  # (Hkv, S, D), memory format
        self.pending_k, self.pending_v = empty[0].clone(), empty[0].clone()  # (Hkv, P, D), memory format
        self.pending_score = torch.zeros((hkv, 0), dtype=torch.float32, device=self.device)  # (Hkv, P)
        self.memory = BlockMemory(self.device, self.config.device_cache_blocks)
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Appends the chunk's keys/values (1, Hkv, T, D) to the local window; returns a
        handle for `memory_attention`."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        t = key_states.shape[2]
        self.local_k = torch.cat([self.local_k, key_states], dim=2)  # (1, Hkv, L+T, D)
        self.local_v = torch.cat([self.local_v, value_states], dim=2)  # (1, Hkv, L+T, D)
        fresh = torch.zeros((key_states.shape[1], t), dtype=torch.float32, device=self.device)  # (Hkv, T)
        self.local_score = torch.cat([self.local_score, fresh], dim=1)  # (Hkv, L+T)
        self.seen += t
        return hand_over(self.local_k, self), self.local_v

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.seen + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.is_initialized = False
        self.seen = 0
        self.local_start = 0
        self.last_selection = None

    # -- attention -----------------------------------------------------------------------

    def attend(self, query: torch.Tensor, scaling: float) -> torch.Tensor:
        """Queries (1, Hq, T, D) of the tokens just added, in chunks of `chunk_size`."""
        t = query.shape[2]
        start = self.seen - t
        outs = []
        for a in range(0, t, self.config.chunk_size):
            b = min(a + self.config.chunk_size, t)
            outs.append(self._attend_chunk(query[:, :, a:b], start + a, start + b, scaling))
        return torch.cat(outs, dim=2)  # (1, Hq, T, D)

    def _attend_chunk(self, query: torch.Tensor, qa: int, qb: int, scaling: float) -> torch.Tensor:
        """Local window before the chunk (no mask), the chunk itself (causal) and memory,
        each attended separately and merged."""
        past, visible = qa - self.local_start, qb - self.local_start
        q_pos = torch.arange(qa, qb, device=self.device)  # (t,)
        parts: list[Partial] = []
        if past:
            parts.append(attend(query, self.local_k[:, :, :past], self.local_v[:, :, :past], scaling, keep_probs=True))
        own = attend(
            query,
            self.local_k[:, :, past:visible],  # (1, Hkv, t, D)
            self.local_v[:, :, past:visible],  # (1, Hkv, t, D)
            scaling,
            causal_mask(q_pos, q_pos),  # (t, t)
            keep_probs=True,
        )
        parts.append(own)
        local = len(parts)
        memory_query = self._memory_query(query, q_pos)  # (1, Hq, t, D)
        memory_kv = self._memory_kv(memory_query)
        if memory_kv is not None:
            parts.append(attend(memory_query, memory_kv[0], memory_kv[1], scaling))
        out, total = merge(parts)  # (1, Hq, t, D), (1, Hq, t)
        start = 0
        for part in parts[:local]:
            start = self._score_local(part, total, start)
        self._evict(qb - self.config.window)
        return out

    def _memory_query(self, query: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The query as it sees memory: at distance `window` from every memory key."""
        if self.config.positions == "exact":
            return query
        assert self.rotary is not None
        return self.rotary.rotate(query, self.config.window - positions)  # (1, Hq, t, D)

    def _memory_kv(self, memory_query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Sinks, the selected units and the partial unit: keys/values (1, Hkv, M, D)."""
        keys, values = [self.sink_k], [self.sink_v]  # (Hkv, S, D)
        if self.memory.count:
            chosen = self._select(memory_query)  # (Hkv, k)
            self.last_selection = chosen
            ids = sorted(set(chosen.flatten().tolist()))
            unit_k, unit_v = self.memory.fetch(ids)  # (U, Hkv, B, D)
            where = torch.tensor(ids, device=self.device)  # (U,)
            slot = torch.searchsorted(where, chosen.contiguous())  # (Hkv, k)
            heads = torch.arange(chosen.shape[0], device=self.device)[:, None]  # (Hkv, 1)
            hkv, k, d = chosen.shape[0], chosen.shape[1], unit_k.shape[-1]
            keys.append(unit_k[slot, heads].reshape(hkv, k * self.config.block_size, d))  # (Hkv, k*B, D)
            values.append(unit_v[slot, heads].reshape(hkv, k * self.config.block_size, d))  # (Hkv, k*B, D)
        keys.append(self.pending_k)  # (Hkv, P, D)
        values.append(self.pending_v)  # (Hkv, P, D)
        mem_k = torch.cat(keys, dim=1)  # (Hkv, M, D)
        if mem_k.shape[1] == 0:
            return None
        return mem_k[None], torch.cat(values, dim=1)[None]  # (1, Hkv, M, D)

    def _select(self, memory_query: torch.Tensor) -> torch.Tensor:
        n = self.memory.count
        hkv = self.sink_k.shape[0]
        if n <= self.config.top_k:
            return torch.arange(n, device=self.device)[None, :].expand(hkv, -1)  # (Hkv, N)
        _, hq, _, d = memory_query.shape
        mean = memory_query[0].mean(dim=1)  # (Hq, D)
        grouped = mean.view(hkv, hq // hkv, d).sum(dim=1)  # (Hkv, D)
        scores = score_blocks(grouped, self.memory.representatives)  # (Hkv, N)
        self.last_scores = scores
        return select_blocks(scores, self.config.top_k, self.config.per_head)  # (Hkv, k)

    def _score_local(self, local: Partial, total: torch.Tensor, start: int) -> int:
        """Adds the attention mass that local keys [start, start + S) received (in the
        merged softmax, summed over the chunk's queries and the query heads of their KV
        head) to their scores; returns start + S."""
        assert local.probs is not None
        b, hkv, g, t, s = local.probs.shape
        weight = torch.nan_to_num(torch.exp(local.lse - total)).view(b, hkv, g, t)  # (1, Hkv, G, t)
        mass = torch.einsum("bhgts,bhgt->bhs", local.probs, weight)  # (1, Hkv, S)
        self.local_score[:, start : start + s] += mass[0]
        return start + s

    def _evict(self, until: int) -> None:
        """Moves local tokens at positions < until out of the window: into the sinks while
        they are not full, then into the partial unit; full units go to block memory."""
        n = until - self.local_start
        if n <= 0:
            return
        positions = torch.arange(self.local_start, until, device=self.device)  # (n,)
        k = self._to_memory(self.local_k[0, :, :n], positions)  # (Hkv, n, D)
        v = self.local_v[0, :, :n]  # (Hkv, n, D)
        score = self.local_score[:, :n]  # (Hkv, n)
        self.local_k = self.local_k[:, :, n:]  # (1, Hkv, L-n, D)
        self.local_v = self.local_v[:, :, n:]  # (1, Hkv, L-n, D)
        self.local_score = self.local_score[:, n:]  # (Hkv, L-n)
        self.local_start = until
        take = min(self.config.sink_tokens - self.sink_k.shape[1], n)
        if take > 0:
            self.sink_k = torch.cat([self.sink_k, k[:, :take]], dim=1)  # (Hkv, S, D)
            self.sink_v = torch.cat([self.sink_v, v[:, :take]], dim=1)  # (Hkv, S, D)
            k, v, score = k[:, take:], v[:, take:], score[:, take:]
        self.pending_k = torch.cat([self.pending_k, k], dim=1)  # (Hkv, P, D)
        self.pending_v = torch.cat([self.pending_v, v], dim=1)  # (Hkv, P, D)
        self.pending_score = torch.cat([self.pending_score, score], dim=1)  # (Hkv, P)
        size = self.config.block_size
        while self.pending_k.shape[1] >= size:
            unit_k, unit_v = self.pending_k[:, :size], self.pending_v[:, :size]  # (Hkv, B, D)
            reps = representative_keys(unit_k, self.pending_score[:, :size], self.config.representative_keys)
            self.memory.add(unit_k, unit_v, reps)
            self.pending_k = self.pending_k[:, size:].clone()  # (Hkv, P-B, D)
            self.pending_v = self.pending_v[:, size:].clone()  # (Hkv, P-B, D)
            self.pending_score = self.pending_score[:, size:].clone()  # (Hkv, P-B)

    def _to_memory(self, keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Keys (Hkv, n, D) rotated at `positions`, as memory keeps them."""
        if self.config.positions == "exact":
            return keys
        assert self.rotary is not None
        return self.rotary.rotate(keys, -positions)  # (Hkv, n, D), no rotary position

    # -- accounting ----------------------------------------------------------------------

    def device_bytes(self) -> int:
        if not self.is_initialized:
            return 0
        tensors = (self.local_k, self.local_v, self.local_score, self.sink_k, self.sink_v, self.pending_k)
        return sum(_nbytes(t) for t in tensors) + _nbytes(self.pending_v) + self.memory.device_bytes()


class InfLLMCache(Cache):
    """InfLLM memory for every layer of a model (batch size 1). Pass it to `model(...)` or
    `model.generate(...)` as `past_key_values`, with the model switched to the memory
    attention (`memory.prepare_model`); chunked prefill through generate's
    `prefill_chunk_size` (or by calling the model chunk by chunk) keeps memory flat."""

    def __init__(self, config: InfLLMConfig, num_layers: int, rotary: Rotary | None) -> None:
        self.config = config
        layers: list[Any] = [InfLLMLayer(config, rotary) for _ in range(num_layers)]
        super().__init__(layers=layers)

    @classmethod
    def for_model(cls, model: Any, config: InfLLMConfig | None = None) -> InfLLMCache:
        """A cache sized for `model` (which must use the memory attention)."""
        config = config or InfLLMConfig()
        check_model(model.config)
        rotary = Rotary.from_model(model) if config.positions == "fixed" else None
        return cls(config, model.config.get_text_config().num_hidden_layers, rotary)

    def memory_layers(self) -> list[InfLLMLayer]:
        return [layer for layer in self.layers if isinstance(layer, InfLLMLayer)]

    def stats(self) -> InfLLMStats:
        layers = [layer for layer in self.memory_layers() if layer.is_initialized]
        return InfLLMStats(
            tokens=self.get_seq_length(),
            blocks=sum(layer.memory.count for layer in layers),
            device_bytes=sum(layer.device_bytes() for layer in layers),
            host_bytes=sum(layer.memory.host_bytes() for layer in layers),
            cache_hits=sum(layer.memory.hits for layer in layers),
            cache_misses=sum(layer.memory.misses for layer in layers),
        )


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
