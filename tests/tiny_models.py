"""Tiny random-weight generative models the tests build themselves (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from quarry.core.settings import DEFAULT_EMBEDDING_MODEL
from quarry.retrieval.embedder import resolve_model


def save_tiny_llama(path: Path, chat_template: str) -> Path:
    """A 2-layer random Llama saved like a real checkpoint, over the bundled embedding
    model's WordPiece vocabulary."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_EMBEDDING_MODEL))
    tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
