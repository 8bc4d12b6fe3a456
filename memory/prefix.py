"""Fixed contexts for vLLM's automatic prefix caching: the document first and
byte-identical across questions, the question last, so the server can reuse the cached KV
of the document's blocks; and how much of a prompt was served from that cache, read from
the usage the server reports (`usage.prompt_tokens_details.cached_tokens`, which the
OpenAI-compatible backend puts in `Usage.cached_prompt_tokens`)."""

from __future__ import annotations

from dataclasses import dataclass

from quarry.core.chat import ChatModel, Completion, Message, Usage
from quarry.memory.prompts import READER_INSTRUCTIONS, fixed_context_messages


def prefix_cached_messages(document: str, question: str, instructions: str = READER_INSTRUCTIONS) -> list[Message]:
    """The messages for a question about `document`, laid out for prefix caching."""
    return [Message.model_validate(m) for m in fixed_context_messages(document, question, instructions)]


def cache_hit_share(usage: Usage) -> float | None:
    """Share of the prompt served from the server's prefix cache; None when the server did
    not say (vLLM reports it with `--enable-prompt-tokens-details`). vLLM caches whole
    blocks (16 tokens by default), so the share moves in block steps."""
    if usage.cached_prompt_tokens is None or usage.prompt_tokens <= 0:
        return None
    return min(1.0, usage.cached_prompt_tokens / usage.prompt_tokens)


@dataclass(frozen=True)
class PrefixCachedAnswer:
    completion: Completion
    cached_tokens: int | None
    hit_share: float | None


async def ask_with_prefix_cache(
    model: ChatModel,
    document: str,
    question: str,
    *,
    max_tokens: int | None = None,
    instructions: str = READER_INSTRUCTIONS,
) -> PrefixCachedAnswer:
    """Asks `model` (a vLLM server through the OpenAI-compatible backend, typically) a
    question about a document with the prefix-cache layout; reports the cache hit."""
    completion = await model.complete(prefix_cached_messages(document, question, instructions), max_tokens=max_tokens)
    usage = completion.usage
    return PrefixCachedAnswer(completion, usage.cached_prompt_tokens, cache_hit_share(usage))
