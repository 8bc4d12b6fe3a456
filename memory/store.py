"""The context store: prefilled, clustered fixed contexts on disk as safetensors files,
keyed by model, content hash and configuration, so a later question loads them instead
of prefilling.

Layout: `<root>/<model slug>/<content hash>-<config digest>.safetensors`. The file's
header repeats the model id and fingerprint (a hash of its shape and a sample of its
weights), the content hash and the full configuration; a file whose header disagrees with
what was asked for is refused (ContextMismatchError), never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from quarry.memory.config import SqueezedConfig
from quarry.memory.errors import ContextMismatchError, ContextStoreError
from quarry.memory.squeezed import INDEX_TENSORS, SqueezedIndex, Thresholds

FORMAT = "quarry-context/1"


@dataclass(frozen=True)
class ModelFingerprint:
    """Which model produced a context: its id, and a digest of its architecture and of
    a sample of its weights (same name, other weights: another fingerprint)."""

    model_id: str
    digest: str

    @classmethod
    def of(cls, model: Any, model_id: str | None = None) -> ModelFingerprint:
        config = model.config.get_text_config()
        shape = {
            name: getattr(config, name, None)
            for name in (
                "model_type",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
                "vocab_size",
                "rope_parameters",
                "rope_theta",
            )
        }
        h = hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode())
        for name, param in model.named_parameters():
            if "k_proj" in name or "embed_tokens" in name:
                sample = param.detach().flatten()[:65536].float().cpu()  # (<=65536,)
                h.update(name.encode())
                h.update(sample.numpy().tobytes())
        ident = model_id or getattr(model.config, "name_or_path", None) or type(model).__name__
        return cls(model_id=str(ident), digest=h.hexdigest()[:16])


def content_hash(input_ids: Sequence[int]) -> str:
    """sha256 of a fixed context's token ids (the prompt prefix, template included)."""
    return hashlib.sha256(torch.tensor(list(input_ids), dtype=torch.int64).numpy().tobytes()).hexdigest()


@dataclass(frozen=True)
class ContextKey:
    model: ModelFingerprint
    content_hash: str
    config: SqueezedConfig


@dataclass
class ContextEntry:
    """A prefilled, clustered fixed context with its calibrated thresholds."""

    key: ContextKey
    input_ids: torch.Tensor  # (N,) int64
    layers: list[SqueezedIndex]
    thresholds: Thresholds
    info: dict[str, str] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> ContextEntry:
        return ContextEntry(self.key, self.input_ids, [ix.to(device) for ix in self.layers], self.thresholds, self.info)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for ix in self.layers for t in ix.tensors().values())


class ContextStore:
    """Context entries under a root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: ContextKey) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key.model.model_id).strip("._") or "model"
        return self.root / slug[-100:] / f"{key.content_hash[:40]}-{key.config.digest()}.safetensors"

    def contains(self, key: ContextKey) -> bool:
        return self.path(key).exists()

    def save(self, entry: ContextEntry) -> Path:
        """Writes an entry atomically (a reader never sees half a file)."""
        from safetensors.torch import save_file

        path = self.path(entry.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"input_ids": entry.input_ids.cpu(), "thresholds": entry.thresholds.tensor()}
        for i, index in enumerate(entry.layers):
            for name, t in index.tensors().items():
                tensors[f"layers.{i}.{name}"] = t.detach().cpu().contiguous()
        metadata = {
            "format": FORMAT,
            "model_id": entry.key.model.model_id,
            "model_digest": entry.key.model.digest,
            "content_hash": entry.key.content_hash,
            "config": entry.key.config.to_json(),
            "num_layers": str(len(entry.layers)),
            "info": json.dumps(entry.info, sort_keys=True),
        }
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=metadata)
            os.replace(tmp, path)
        except OSError as exc:
            raise ContextStoreError(f"cannot write context entry {path}: {exc}") from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def load(self, key: ContextKey, device: torch.device | str = "cpu") -> ContextEntry | None:
        """The entry for `key` on `device`; None when there is none. Raises
        ContextMismatchError when the file was made for another model, content or
        configuration, ContextStoreError when it cannot be read."""
        from safetensors import SafetensorError, safe_open

        path = self.path(key)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                meta = f.metadata() or {}
                _check(meta, key, path)
                layers = [
                    SqueezedIndex(**{name: f.get_tensor(f"layers.{i}.{name}") for name in INDEX_TENSORS})
                    for i in range(int(meta["num_layers"]))
                ]
                input_ids = f.get_tensor("input_ids").cpu()
                thresholds = Thresholds.from_tensor(f.get_tensor("thresholds").cpu())
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise ContextStoreError(f"cannot read context entry {path}: {exc}") from exc
        if content_hash(input_ids.tolist()) != key.content_hash:
            raise ContextMismatchError(f"{path}: the stored tokens do not match the content hash")
        return ContextEntry(key, input_ids, layers, thresholds, json.loads(meta.get("info", "{}")))

    def delete(self, key: ContextKey) -> bool:
        path = self.path(key)
        if path.exists():
            path.unlink()
            return True
        return False


def _check(meta: dict[str, str], key: ContextKey, path: Path) -> None:
    if meta.get("format") != FORMAT:
        raise ContextMismatchError(f"{path}: not a {FORMAT} file")
    wanted = {
        "model_id": key.model.model_id,
        "model_digest": key.model.digest,
        "content_hash": key.content_hash,
        "config": key.config.to_json(),
    }
    for name, value in wanted.items():
        if meta.get(name) != value:
            raise ContextMismatchError(
                f"{path} was made for another {name.replace('_', ' ')}: {meta.get(name)!r}, expected {value!r}"
            )
