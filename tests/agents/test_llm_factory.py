"""Settings → chat model, and the clear errors where a backend cannot run."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from quarry.agents.errors import LLMUnavailableError
from quarry.agents.llm import ChatModel, HFChatModel, OpenAIChatModel, VLLMChatModel, make_chat_model
from quarry.core.settings import LLMSettings

VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None


def test_extractive_needs_no_model() -> None:
    assert make_chat_model(LLMSettings()) is None
    assert make_chat_model(LLMSettings(backend="extractive", model="ignored")) is None


@pytest.mark.parametrize("backend", ["openai", "vllm", "hf"])
def test_generative_backend_without_model_is_unavailable(backend: str) -> None:
    with pytest.raises(LLMUnavailableError, match="needs llm.model"):
        make_chat_model(LLMSettings(backend=backend))


def test_openai_backend() -> None:
    model = make_chat_model(LLMSettings(backend="openai", model="qwen", base_url="http://127.0.0.1:9/v1"))
    assert isinstance(model, OpenAIChatModel)
    assert isinstance(model, ChatModel)
    assert model.name == "qwen"
    asyncio.run(model.aclose())


def test_hf_backend_loads_nothing_yet() -> None:
    model = make_chat_model(LLMSettings(backend="hf", model="/no/such/model/yet"))
    assert isinstance(model, HFChatModel)
    assert isinstance(model, ChatModel)


@pytest.mark.skipif(VLLM_INSTALLED, reason="vLLM is installed here")
def test_vllm_missing_names_the_gpu_extra() -> None:
    with pytest.raises(LLMUnavailableError, match=r"pip install -e '\.\[gpu\]'"):
        make_chat_model(LLMSettings(backend="vllm", model="Qwen/Qwen2.5-0.5B-Instruct"))
    with pytest.raises(LLMUnavailableError, match="gpu extra"):
        VLLMChatModel(LLMSettings(backend="vllm", model="Qwen/Qwen2.5-0.5B-Instruct"))
