"""Language-model backends behind one small `ChatModel` protocol."""

from agents.llm.base import ChatModel, Completion, Message, StreamChunk, Usage
from agents.llm.factory import make_chat_model
from agents.llm.hf import HFChatModel
from agents.llm.openai import OpenAIChatModel
from agents.llm.vllm import VLLMChatModel

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
