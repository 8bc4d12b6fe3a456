"""The context store: round trip, and refusal of entries made for another model,
content or configuration."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from quarry.memory.config import SqueezedConfig
from quarry.memory.context import prefill_context
from quarry.memory.errors import ContextMismatchError, ContextStoreError
from quarry.memory.store import ContextKey, ContextStore, ModelFingerprint
from tests.memory.conftest import random_ids, tiny_model

CONFIG = SqueezedConfig(cluster_share=0.05, coarse_share=0.01, prefill_chunk=128)


@pytest.fixture(scope="module")
def made() -> tuple[torch.nn.Module, ContextKey, object]:
    model = tiny_model("llama")
    entry = prefill_context(model, random_ids(400)[0].tolist(), CONFIG, model_id="tiny-llama")
    return model, entry.key, entry


def test_round_trip(tmp_path: Path, made: tuple) -> None:
    _, key, entry = made
    store = ContextStore(tmp_path)
    assert store.load(key) is None
    path = store.save(entry)
    assert path.exists() and path.suffix == ".safetensors" and store.contains(key)
    loaded = store.load(key)
    assert loaded is not None
    assert torch.equal(loaded.input_ids, entry.input_ids)
    assert loaded.thresholds == entry.thresholds and loaded.info == entry.info
    assert len(loaded.layers) == len(entry.layers) == 2
    for a, b in zip(loaded.layers, entry.layers, strict=True):
        for name, tensor in a.tensors().items():
            assert torch.equal(tensor, b.tensors()[name]), name
        assert torch.equal(a.labels, b.labels) and torch.equal(a.parents, b.parents)
    assert not list(tmp_path.rglob(".tmp-*"))


def test_same_name_other_weights_is_refused(tmp_path: Path, made: tuple) -> None:
    _, key, entry = made
    store = ContextStore(tmp_path)
    store.save(entry)
    other = ModelFingerprint.of(tiny_model("llama", seed=1), model_id="tiny-llama")
    assert other.model_id == key.model.model_id and other.digest != key.model.digest
    with pytest.raises(ContextMismatchError, match="model digest"):
        store.load(replace(key, model=other))


def test_another_model_id_finds_nothing(tmp_path: Path, made: tuple) -> None:
    _, key, entry = made
    store = ContextStore(tmp_path)
    store.save(entry)
    assert store.load(replace(key, model=ModelFingerprint("another-model", key.model.digest))) is None


def test_a_file_under_another_configuration_is_refused(tmp_path: Path, made: tuple) -> None:
    _, key, entry = made
    store = ContextStore(tmp_path)
    other = replace(key, config=replace(CONFIG, key_budget=0.2))
    assert store.path(other) != store.path(key)
    assert store.load(other) is None  # a different configuration is a different entry
    shutil.copy(store.save(entry), store.path(other))  # a file that claims to be it
    with pytest.raises(ContextMismatchError, match="config"):
        store.load(other)


def test_another_content_is_refused(tmp_path: Path, made: tuple) -> None:
    _, key, entry = made
    store = ContextStore(tmp_path)
    other = replace(key, content_hash="0" * 64)
    store.path(other).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(store.save(entry), store.path(other))
    with pytest.raises(ContextMismatchError, match="content hash"):
        store.load(other)


def test_a_damaged_file_is_an_error(tmp_path: Path, made: tuple) -> None:
    _, key, entry = made
    store = ContextStore(tmp_path)
    path = store.save(entry)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ContextStoreError):
        store.load(key)
