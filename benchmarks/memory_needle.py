"""Needle in a haystack for the memory layer's retrieval: is the needle's part of the
document among what the question attends?

Haystack: the Paul Graham essays of `../shared/eval/needle` (gkamradt/LLMTest_NeedleInAHaystack),
tokenised with the bundled WordPiece tokenizer and cut to each length; the default needle
is inserted at each depth (after a sentence end) and the default question follows the
document. The model is tiny and built here, not trained: a 2-layer Llama whose attention
heads are set to match identical tokens (queries and keys are the same projection of
random token embeddings, placed on the lowest rotary frequencies so that a match survives
any distance), like a lexical retrieval head. Its answers mean nothing; what it attends
shows whether each mechanism brings the needle back:

- InfLLM (paper settings: units of 128, 128 sinks, 4K window, top-16 units of 4
  representative keys): the question is read as its own chunk; `infllm` is the share of
  layers whose selected units include a token of the needle (`local` when the needle is
  still in the local window or the sinks, where it is always attended); `unit rank` the
  best rank of a needle unit among all units (over layers);
- Squeezed Attention (budget 10%, hierarchical): `squeezed` is the share of the needle's
  keys read by the question's queries, over layers and KV heads; `keys` the share of all
  keys read.

A selection that ignored the question would find the needle's unit with probability
about 16 / units (InfLLM) and read about 10% of its keys (Squeezed).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from common import apply_threads, base_parser, load_essays, print_table, quiet_environment, say, write_json


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384, 32768])
    parser.add_argument("--depths", type=float, nargs="+", default=[10, 50, 90], help="Percent of the document.")
    parser.add_argument("--budget", type=float, default=0.1)
    args = parser.parse_args()
    quiet_environment()
    apply_threads(args.threads)
    import torch

    from quarry.core.settings import DEFAULT_EMBEDDING_MODEL
    from quarry.retrieval.embedder import resolve_model

    needles = json.loads((args.eval_dir / "needle" / "needles.json").read_text())["single_needle"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_EMBEDDING_MODEL))
    model = lexical_model(len(tokenizer), args.seed)
    hay = tokenizer("\n\n".join(p.text for p in load_essays(args.eval_dir)), add_special_tokens=False)["input_ids"]
    needle = tokenizer(needles["needle"].strip(), add_special_tokens=False)["input_ids"]
    question = tokenizer("\n\nQuestion: " + needles["retrieval_question"] + "\nassistant:", add_special_tokens=False)[
        "input_ids"
    ]
    period = tokenizer.convert_tokens_to_ids(".")
    rows, results = [], []
    for n in args.lengths:
        if n > len(hay):
            say(f"skipping {n}: the essays have {len(hay)} tokens")
            continue
        for depth in args.depths:
            body = hay[: n - len(needle) - len(question)]
            at = _sentence_end(body, round(len(body) * depth / 100), period)
            prefix = [tokenizer.cls_token_id, *body[:at], *needle, *body[at:]]
            span = (at + 1, at + 1 + len(needle))
            say(f"{n} tokens, needle at {depth:.0f}% (tokens {span[0]}-{span[1]})")
            with torch.inference_mode():
                inf = infllm_probe(model, prefix, question, span)
                sq = squeezed_probe(model, prefix, question, span, args)
            results.append({"tokens": n, "depth": depth, "needle_span": span, "infllm": inf, "squeezed": sq})
            rows.append(
                [
                    n,
                    f"{depth:.0f}%",
                    "local" if inf["local"] else f"{inf['retrieved']:.2f}",
                    f"{inf['best_rank'] or '-'}/{inf['units']}",
                    f"{sq['needle_recall']:.2f}",
                    f"{sq['key_share']:.3f}",
                ]
            )
    columns = ["tokens", "depth", "infllm", "unit rank", "squeezed", "keys"]
    print_table("Needle retrieval (tiny lexical-match model, CPU)", columns, rows)
    summary = {
        "infllm_retrieved_mean": statistics.fmean(r["infllm"]["retrieved"] for r in results if not r["infllm"]["local"])
        if any(not r["infllm"]["local"] for r in results)
        else None,
        "squeezed_recall_mean": statistics.fmean(r["squeezed"]["needle_recall"] for r in results) if results else None,
    }
    write_json("memory_needle", args, {"rows": results, "summary": summary})


def lexical_model(vocab: int, seed: int) -> Any:
    """A 2-layer Llama whose heads attend to identical tokens, on slow rotary dimensions."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from quarry.memory.interface import prepare_model

    torch.manual_seed(seed)
    hidden, heads, head_dim = 128, 2, 64
    config = LlamaConfig(
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=head_dim,
        intermediate_size=256,
        vocab_size=vocab,
        max_position_embeddings=65536,
        rope_parameters={"rope_type": "default", "rope_theta": 1e12},
    )
    model = LlamaForCausalLM(config).eval()
    slow = [i for i in range(head_dim // 2) if i >= head_dim // 4]  # lowest frequencies of each half
    dims = slow + [i + head_dim // 2 for i in slow]  # (32,) rotary pairs kept together
    gain = 2.0
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_()
        for layer in model.model.layers:
            attn = layer.self_attn
            for w in (attn.q_proj.weight, attn.k_proj.weight):
                w.zero_()
                for h in range(heads):
                    for j, d in enumerate(dims):
                        w[h * head_dim + d, (h * len(dims) + j) % hidden] = gain
            attn.o_proj.weight.mul_(0.05)
            layer.mlp.down_proj.weight.mul_(0.05)
            layer.input_layernorm.weight.fill_(1.0)
    return prepare_model(model)


def infllm_probe(model: Any, prefix: list[int], question: list[int], span: tuple[int, int]) -> dict[str, Any]:
    import torch

    from quarry.memory.config import InfLLMConfig
    from quarry.memory.infllm import InfLLMCache

    config = InfLLMConfig()
    cache = InfLLMCache.for_model(model, config)
    ids = torch.tensor([prefix])  # (1, N)
    for a in range(0, ids.shape[1], config.chunk_size):
        model(input_ids=ids[:, a : a + config.chunk_size], past_key_values=cache, use_cache=True, logits_to_keep=1)
    layers = cache.memory_layers()
    first_local = layers[0].local_start  # the window the question's chunk sees
    model(input_ids=torch.tensor([question]), past_key_values=cache, use_cache=True, logits_to_keep=1)
    local = span[1] > first_local or span[0] < config.sink_tokens
    hits, ranks = [], []
    covered = {(p - config.sink_tokens) // config.block_size for p in range(*span) if p >= config.sink_tokens}
    for layer in layers:
        chosen = set() if layer.last_selection is None else set(layer.last_selection.flatten().tolist())
        hits.append(bool(chosen & covered))
        scored = [u for u in covered if layer.last_scores is not None and u < layer.last_scores.shape[-1]]
        if layer.last_scores is not None and scored:
            total = layer.last_scores.sum(dim=0)  # (N,) the layer's shared choice
            best = max(float(total[u]) for u in scored)
            ranks.append(int((total > best).sum()) + 1)
    return {
        "local": local,
        "retrieved": statistics.fmean(hits),
        "units": layers[0].memory.count,
        "best_rank": min(ranks) if ranks else None,
    }


def squeezed_probe(
    model: Any, prefix: list[int], question: list[int], span: tuple[int, int], args: Any
) -> dict[str, Any]:
    import torch

    from quarry.memory.config import SqueezedConfig
    from quarry.memory.context import context_cache, prefill_context
    from quarry.memory.squeezed import SqueezedLayer

    config = SqueezedConfig(key_budget=args.budget, prefill_chunk=4096)
    entry = prefill_context(model, prefix, config)
    cache = context_cache(model, entry)
    model(input_ids=torch.tensor([question]), past_key_values=cache, use_cache=True, logits_to_keep=1)
    recalls = []
    for layer, index in zip(cache.layers, entry.layers, strict=True):
        assert isinstance(layer, SqueezedLayer) and layer.last_read is not None
        for positions in layer.last_read.positions(index):
            read = set(positions.tolist())
            recalls.append(sum(p in read for p in range(*span)) / (span[1] - span[0]))
    return {"needle_recall": statistics.fmean(recalls), "key_share": cache.squeezed_stats.key_share}


def _sentence_end(tokens: list[int], at: int, period: int) -> int:
    """The position just after the last period at or before `at` (0 if none)."""
    for i in range(min(at, len(tokens)) - 1, -1, -1):
        if tokens[i] == period:
            return i + 1
    return 0


if __name__ == "__main__":
    main()
