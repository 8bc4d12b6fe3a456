"""Tiny random-weight models built from configs (nothing is downloaded), and the bundled
embedding model's WordPiece tokenizer with a small chat template."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from quarry.core.settings import DEFAULT_EMBEDDING_MODEL
from quarry.retrieval.embedder import resolve_model

CHAT_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)
FAMILIES = ("llama", "qwen2")


def tiny_model(family: str = "llama", vocab_size: int = 128, seed: int = 0, **overrides: Any) -> Any:
    """A 2-layer random model with grouped-query attention (4 query heads, 2 KV heads)."""
    torch.manual_seed(seed)
    shape: dict[str, Any] = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "vocab_size": vocab_size,
        "max_position_embeddings": 8192,
        **overrides,
    }
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**shape)).eval()
    if family == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**shape)).eval()
    raise ValueError(family)


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    tok = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_EMBEDDING_MODEL))
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def chat_model(tokenizer: Any) -> Any:
    """A tiny Llama over the tokenizer's vocabulary."""
    return tiny_model(
        "llama",
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def random_ids(length: int, vocab_size: int = 128, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (1, length), generator=generator)  # (1, T)
