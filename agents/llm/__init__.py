"""Language-model backends behind one small `ChatModel` protocol."""

from quarry.agents.llm.factory import make_chat_model
from quarry.agents.llm.hf import HFChatModel
from quarry.agents.llm.openai import OpenAIChatModel
from quarry.agents.llm.vllm import VLLMChatModel
from quarry.core.chat import ChatModel, Completion, Message, StreamChunk, Usage

__all__ = [
    "ChatModel",
    "Completion",
    "HFChatModel",
    "Message",
    "OpenAIChatModel",
    "StreamChunk",
    "Usage",
    "VLLMChatModel",
    "make_chat_model",
]
