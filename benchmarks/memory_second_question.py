"""Time to answer a second question about the same long document, with and without the
cached fixed context (Squeezed Attention's context store: the document's prefill skipped).

A small random-weight Llama (built from a config) answers through `LongContextEngine`
over essays from `../shared/eval/needle` cut to each length, generating `--new-tokens`
tokens (end of sequence disabled, so every system generates the same number):

- `full`: no cache, the document and the question are prefilled again (exact attention,
  chunks of 2048) for the question;
- `precompute`: the one-off offline cost (prefill, K-means, calibration, writing the
  safetensors entry), what a `gpu`-queue worker pays once per document;
- `squeezed, from store`: a fresh engine (a later process) loads the entry from disk and
  answers; `squeezed, resident`: the entry is already on the device (a third question).

`context s` is the time spent on the document for this question (prefill, or loading),
`question s` the question's prefill and the decoding.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from common import apply_threads, base_parser, load_essays, model_path, print_table, quiet_environment, say, write_json

QUESTIONS = ("What does the author say about startups?", "Which city is mentioned first?", "What is the main argument?")


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    quiet_environment()
    apply_threads(args.threads)
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from quarry.memory.config import SqueezedConfig
    from quarry.memory.engine import LongContextEngine
    from quarry.memory.store import ContextStore

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    tokenizer.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    torch.manual_seed(args.seed)
    config = LlamaConfig(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=2 * args.hidden,
        vocab_size=len(tokenizer),
        max_position_embeddings=max(args.lengths) + 1024,
    )
    model = LlamaForCausalLM(config).to(args.device).eval()
    model.generation_config.eos_token_id = None  # every system generates --new-tokens tokens
    essays = tokenizer("\n\n".join(p.text for p in load_essays(args.eval_dir)), add_special_tokens=False)["input_ids"]
    squeezed = SqueezedConfig(prefill_chunk=2048)
    rows, results = [], []
    for n in args.lengths:
        document = tokenizer.decode(essays[:n])
        with tempfile.TemporaryDirectory(prefix="quarry-bench-contexts-") as tmp:
            store = ContextStore(Path(tmp))
            engine = LongContextEngine(model, tokenizer, store=store, squeezed=squeezed)
            say(f"{n} tokens: full attention")
            full = engine.answer(document, QUESTIONS[1], mechanism="full", max_new_tokens=args.new_tokens)
            say(f"{n} tokens: precompute")
            pre = engine.precompute(document)
            say(f"{n} tokens: squeezed, loaded from the store")
            later = LongContextEngine(model, tokenizer, store=store, squeezed=squeezed)
            loaded = later.answer(document, QUESTIONS[1], max_new_tokens=args.new_tokens)
            resident = later.answer(document, QUESTIONS[2], max_new_tokens=args.new_tokens)
            entry_mb = pre.path.stat().st_size / 2**20
        for name, answer in (("full", full), ("squeezed, from store", loaded), ("squeezed, resident", resident)):
            total = answer.context_seconds + answer.generate_seconds
            results.append(_row(n, name, answer, total, full))
            rows.append(
                [
                    n,
                    name,
                    f"{answer.context_seconds:.2f}",
                    f"{answer.generate_seconds:.2f}",
                    f"{total:.2f}",
                    f"{(full.context_seconds + full.generate_seconds) / total:.1f}x",
                    "-" if answer.key_share is None else f"{answer.key_share:.3f}",
                ]
            )
        results.append({"tokens": n, "system": "precompute", "seconds": pre.seconds, "entry_mb": entry_mb})
        rows.append([n, f"precompute (once; entry {entry_mb:.0f} MB)", "-", "-", f"{pre.seconds:.2f}", "-", "-"])
    columns = ["tokens", "system", "context s", "question s", "total s", "vs full", "keys"]
    print_table(f"Second question about one document ({args.device})", columns, rows)
    write_json("memory_second_question", args, {"rows": results})


def _row(n: int, name: str, answer: Any, total: float, full: Any) -> dict[str, Any]:
    return {
        "tokens": n,
        "system": name,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "context_seconds": answer.context_seconds,
        "question_seconds": answer.generate_seconds,
        "total_seconds": total,
        "speedup": (full.context_seconds + full.generate_seconds) / total,
        "context_reused": answer.context_reused,
        "key_share": answer.key_share,
    }


if __name__ == "__main__":
    main()
