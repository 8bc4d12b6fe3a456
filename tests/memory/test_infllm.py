"""InfLLM memory units: exact where it must be, the paper's positions, retrieval of a
dominant key, offloading bounds."""

from __future__ import annotations

import pytest
import torch

from quarry.memory.config import InfLLMConfig
from quarry.memory.infllm import BlockMemory, InfLLMCache, InfLLMLayer
from quarry.memory.interface import prepare_model
from quarry.memory.rotary import Rotary, rotate_half
from tests.memory.conftest import FAMILIES, random_ids, tiny_model

# float32 logits of a 2-layer random model; differences come from summation order only
LOGIT_TOLERANCE = 1e-4


def chunked_logits(model: torch.nn.Module, ids: torch.Tensor, cache: InfLLMCache, step: int) -> torch.Tensor:
    with torch.inference_mode():
        parts = [
            model(ids[:, a : a + step], past_key_values=cache, use_cache=True).logits
            for a in range(0, ids.shape[1], step)
        ]
    return torch.cat(parts, dim=1)  # (1, T, V)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_block_selected_equals_full_attention(family: str) -> None:
    """With true positions for memory and top-k covering every unit, InfLLM is full
    attention: sinks + units + partial unit + window partition the past exactly."""
    model = tiny_model(family)
    ids = random_ids(900)
    with torch.inference_mode():
        full = model(ids).logits  # (1, 900, V), sdpa
    prepare_model(model)
    config = InfLLMConfig(block_size=16, sink_tokens=8, window=64, top_k=1000, chunk_size=32, positions="exact")
    cache = InfLLMCache.for_model(model, config)
    got = chunked_logits(model, ids, cache, step=50)
    assert (got - full).abs().max() < LOGIT_TOLERANCE
    stats = cache.stats()
    assert stats.blocks == 2 * ((900 - 64 - 8) // 16)  # every evicted token went to a unit (2 layers)


def test_generate_with_all_blocks_matches_plain_generate() -> None:
    model = tiny_model("llama")
    ids = random_ids(400, seed=3)
    with torch.inference_mode():
        plain = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    prepare_model(model)
    config = InfLLMConfig(block_size=16, sink_tokens=8, window=48, top_k=1000, chunk_size=32, positions="exact")
    with torch.inference_mode():
        got = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=8,
            do_sample=False,
            past_key_values=InfLLMCache.for_model(model, config),
            prefill_chunk_size=config.chunk_size,
        )
    assert torch.equal(plain, got)


def test_window_covering_the_input_is_full_attention_with_fixed_positions() -> None:
    model = tiny_model("qwen2")
    ids = random_ids(300, seed=1)
    with torch.inference_mode():
        full = model(ids).logits
    prepare_model(model)
    cache = InfLLMCache.for_model(model, InfLLMConfig(window=512, top_k=2, block_size=16, chunk_size=64))
    assert (chunked_logits(model, ids, cache, step=100) - full).abs().max() < LOGIT_TOLERANCE


def rotate(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """HF-style rotary embedding of x (..., T, D) at positions (T,)."""
    freqs = positions.double()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return x * emb.cos().float() + rotate_half(x) * emb.sin().float()


def test_fixed_positions_match_a_dense_reference() -> None:
    """The paper's positions: a query sees its local tokens at their true distance and
    every memory token (sinks, units, partial unit) at distance `window`."""
    torch.manual_seed(0)
    d, hq, hkv, n, window, chunk = 16, 4, 2, 260, 40, 20
    inv_freq = 1.0 / (100.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    config = InfLLMConfig(block_size=8, sink_tokens=4, window=window, top_k=1000, chunk_size=chunk)
    layer = InfLLMLayer(config, Rotary(inv_freq))
    q_raw, k_raw, v = torch.randn(1, hq, n, d), torch.randn(1, hkv, n, d), torch.randn(1, hkv, n, d)
    positions = torch.arange(n)
    q_rot, k_rot = rotate(q_raw, positions, inv_freq), rotate(k_raw, positions, inv_freq)
    outputs = []
    for a in range(0, n, chunk):
        layer.update(k_rot[:, :, a : a + chunk], v[:, :, a : a + chunk])
        outputs.append(layer.attend(q_rot[:, :, a : a + chunk], 0.25))
    got = torch.cat(outputs, dim=2)

    expected = torch.empty_like(got)
    k_full = k_rot.repeat_interleave(hq // hkv, dim=1)[0]  # (Hq, n, D)
    k_mem = k_raw.repeat_interleave(hq // hkv, dim=1)[0]  # unrotated
    v_full = v.repeat_interleave(hq // hkv, dim=1)[0]
    for p in range(n):
        chunk_start = p - p % chunk
        local_from = max(0, chunk_start - window)  # evicted after the previous chunk
        q_mem = rotate(q_raw[0, :, p : p + 1], torch.tensor([window]), inv_freq)  # (Hq, 1, D)
        local = (q_rot[0, :, p : p + 1] @ k_full[:, local_from : p + 1].transpose(-1, -2))[:, 0]  # (Hq, L)
        memory = (q_mem @ k_mem[:, :local_from].transpose(-1, -2))[:, 0]  # (Hq, M)
        weights = torch.softmax(torch.cat([memory, local], dim=-1) * 0.25, dim=-1)  # (Hq, p+1)
        expected[0, :, p] = torch.einsum("hs,hsd->hd", weights, v_full[:, : p + 1])
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("seed", range(4))
def test_a_planted_dominant_key_is_selected(seed: int) -> None:
    """A key that dominates attention (a large component along a direction the queries
    share) becomes its unit's representative while local, and that unit is the one chosen
    for a later chunk whose queries look for it, with top-1 out of many units."""
    torch.manual_seed(seed)
    d, hq, hkv, n, chunk = 32, 4, 2, 2048, 64
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    config = InfLLMConfig(block_size=32, sink_tokens=16, window=128, top_k=1, representative_keys=2, chunk_size=chunk)
    layer = InfLLMLayer(config, Rotary(inv_freq))
    direction = torch.zeros(d)
    direction[[d // 2 - 1, d - 1]] = 1.0  # the lowest rotary frequency: position barely turns it
    needle = int(torch.randint(200, 1500, (1,)))
    k = torch.randn(1, hkv, n, d) * 0.5
    k[:, :, needle] += 12.0 * direction
    q = torch.randn(1, hq, n, d) * 0.5 + 1.0 * direction
    positions = torch.arange(n)
    k, q = rotate(k, positions, inv_freq), rotate(q, positions, inv_freq)
    v = torch.randn(1, hkv, n, d)
    for a in range(0, n, chunk):
        layer.update(k[:, :, a : a + chunk], v[:, :, a : a + chunk])
        layer.attend(q[:, :, a : a + chunk], d**-0.5)
    assert layer.last_selection is not None
    block = (needle - config.sink_tokens) // config.block_size
    assert (layer.last_selection == block).all()


def test_device_working_set_is_flat_in_the_length() -> None:
    """Units go to host memory; what stays on the device (window, sinks, partial unit, LRU
    of units, representative keys) does not grow with the input, apart from the
    representative keys (r of every B tokens)."""
    torch.manual_seed(0)
    config = InfLLMConfig(block_size=16, sink_tokens=8, window=64, top_k=4, chunk_size=64, device_cache_blocks=8)

    def run(n: int) -> tuple[int, int, int]:
        layer = InfLLMLayer(config, Rotary(torch.ones(8, dtype=torch.float64)))
        for _ in range(0, n, 64):
            layer.update(torch.randn(1, 2, 64, 16), torch.randn(1, 2, 64, 16))
            layer.attend(torch.randn(1, 4, 64, 16), 0.25)
        reps = layer.memory.representatives.numel() * 4
        return layer.device_bytes() - reps, layer.memory.host_bytes(), len(layer.memory.cached)

    short, long = run(1024), run(4096)
    assert short[0] == long[0]
    assert long[1] > 3.5 * short[1]
    assert long[2] <= config.device_cache_blocks


def test_lru_cache_of_units() -> None:
    memory = BlockMemory(torch.device("cpu"), capacity=2)
    for i in range(4):
        memory.add(torch.full((2, 4, 3), float(i)), torch.zeros(2, 4, 3), torch.zeros(2, 1, 3))
    keys, _ = memory.fetch([0, 1])
    assert keys.shape == (2, 2, 4, 3) and keys[1, 0, 0, 0] == 1.0
    memory.fetch([1, 2])  # 1 hit, 2 loaded, 0 evicted
    assert list(memory.cached) == [1, 2] and (memory.hits, memory.misses) == (1, 3)
    keys, _ = memory.fetch([0, 1, 3])  # more than the capacity at once: all served, then trimmed
    assert keys[:, 0, 0, 0].tolist() == [0.0, 1.0, 3.0]
    assert list(memory.cached) == [1, 3]
