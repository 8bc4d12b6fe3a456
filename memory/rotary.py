"""Rotary position embedding as pure rotations, to move keys and queries to other
positions after the model has rotated them (InfLLM's fixed-distance memory)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from quarry.memory.errors import MemoryConfigError


@dataclass(frozen=True)
class Rotary:
    """The rotary frequencies of a model (`inv_freq`, shape (D/2,)), in the half-split
    layout of Llama, Qwen2 and Mistral. Rotations here leave out the model's
    `attention_scaling`: they move a vector that the model already rotated (and scaled)."""

    inv_freq: torch.Tensor  # (D/2,)

    @classmethod
    def from_model(cls, model: Any) -> Rotary:
        """The frequencies of `model`'s rotary embedding module (`model.model.rotary_emb`
        in the supported families). Dynamic RoPE (frequencies that change with the
        length) is refused: memory keys would drift."""
        rotary = None
        for name, module in model.named_modules():
            if name.endswith("rotary_emb") and hasattr(module, "inv_freq"):
                rotary = module
                break
        if rotary is None:
            raise MemoryConfigError(f"{type(model).__name__} has no rotary embedding module with inv_freq")
        if "dynamic" in str(getattr(rotary, "rope_type", "")):
            raise MemoryConfigError("dynamic RoPE scaling is not supported by the memory layer")
        inv_freq = rotary.original_inv_freq if hasattr(rotary, "original_inv_freq") else rotary.inv_freq
        return cls(inv_freq.detach().to(torch.float64).cpu())

    def rotate(self, x: torch.Tensor, angles_at: torch.Tensor) -> torch.Tensor:
        """Rotates x (..., T, D) by the angles of positions `angles_at` (T,), which may be
        negative (to take a rotation back) or differ per token."""
        freqs = angles_at.to(torch.float64)[:, None] * self.inv_freq.to(angles_at.device)[None, :]  # (T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (T, D)
        cos = emb.cos().to(x.dtype)  # (T, D)
        sin = emb.sin().to(x.dtype)  # (T, D)
        return x * cos + rotate_half(x) * sin  # (..., T, D)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the last dimension's halves."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # (..., D)
