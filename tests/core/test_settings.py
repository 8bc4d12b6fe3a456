"""The settings tree: defaults, environment, quarry.toml, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from quarry.core.settings import Settings


def test_defaults() -> None:
    s = Settings()
    assert s.storage.data_dir == Path(".quarry")
    assert s.storage.resolved_database_url.endswith(".quarry/quarry.db")
    assert s.ingest.chunk_overlap < s.ingest.chunk_size


def test_environment_with_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARRY_SEARCH__RRF_K", "30")
    monkeypatch.setenv("QUARRY_STORAGE__DATABASE_URL", "postgresql+psycopg://db/quarry")
    s = Settings()
    assert s.search.rrf_k == 30
    assert s.storage.resolved_database_url == "postgresql+psycopg://db/quarry"


def test_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "quarry.toml"
    config.write_text("[ingest]\nchunk_size = 300\n\n[index]\nivf_nprobe = 8\n")
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.ingest.chunk_size == 300 and s.index.ivf_nprobe == 8
    monkeypatch.setenv("QUARRY_INGEST__CHUNK_SIZE", "123")  # the environment wins over the file
    assert Settings().ingest.chunk_size == 123
    other = tmp_path / "other.toml"
    other.write_text("[search]\ndefault_k = 4\n")
    monkeypatch.setenv("QUARRY_CONFIG", str(other))
    assert Settings().search.default_k == 4


@pytest.mark.parametrize(
    "bad",
    [
        {"ingest": {"chunk_size": 5}},
        {"ingest": {"chunk_size": 100, "chunk_overlap": 100}},
        {"search": {"rrf_k": 0}},
        {"search": {"unknown": 1}},
        {"nonsense": {}},
        {"embedding": {"device": "tpu"}},
    ],
)
def test_invalid_values_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)
