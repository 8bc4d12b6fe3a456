"""Settings → chat model."""

from __future__ import annotations

from quarry.agents.errors import LLMUnavailableError
from quarry.core.chat import ChatModel
from quarry.core.settings import LLMSettings


def make_chat_model(settings: LLMSettings) -> ChatModel | None:
    """The chat model `settings.backend` names, or None for the extractive reader (no
    generative model). Raises LLMUnavailableError when the backend cannot run here. Nothing
    heavy happens yet: in-process models load on first use."""
    if settings.backend == "extractive":
        return None
    if not settings.model:
        what = "the model name the endpoint serves" if settings.backend == "openai" else "a model folder or hub id"
        raise LLMUnavailableError(f"llm.backend={settings.backend!r} needs llm.model (QUARRY_LLM__MODEL): {what}")
    if settings.backend == "openai":
        from quarry.agents.llm.openai import OpenAIChatModel

        return OpenAIChatModel(settings)
    if settings.backend == "vllm":
        from quarry.agents.llm.vllm import VLLMChatModel

        return VLLMChatModel(settings)
    if settings.backend == "hf":
        from quarry.agents.llm.hf import HFChatModel

        return HFChatModel(settings)
    raise LLMUnavailableError(f"unknown llm.backend {settings.backend!r}")
