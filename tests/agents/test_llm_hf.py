"""The transformers backend with a tiny random-weight Llama built here, loaded from disk
through settings.model like a real one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer, DynamicCache, LlamaForCausalLM

from quarry.agents.errors import LLMOutputError, LLMUnavailableError
from quarry.agents.llm import Completion, HFChatModel, Message, StreamChunk
from quarry.core.settings import LLMSettings
from tests.tiny_models import save_tiny_llama

QUESTION = [Message(role="system", content="Answer briefly."), Message(role="user", content="Where is the Louvre?")]
CHAT_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama over the bundled embedding model's WordPiece vocabulary."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), CHAT_TEMPLATE)


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> HFChatModel:
    """Loaded once for the module through the real loading path."""
    return HFChatModel(LLMSettings(backend="hf", model=str(tiny_model_dir), device="cpu", max_tokens=12))


def complete(model: HFChatModel, messages: Sequence[Message] = QUESTION, **kwargs: Any) -> Completion:
    return asyncio.run(model.complete(messages, **kwargs))


def stream(model: HFChatModel, messages: Sequence[Message] = QUESTION, **kwargs: Any) -> list[StreamChunk]:
    async def go() -> list[StreamChunk]:
        return [chunk async for chunk in model.stream(messages, **kwargs)]

    return asyncio.run(go())


def test_complete_text_and_usage(model: HFChatModel, tiny_model_dir: Path) -> None:
    done = complete(model, max_tokens=10)
    assert done.text.strip()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = [m.model_dump() for m in QUESTION]
    prompt = str(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
    assert prompt.endswith("[assistant]")
    assert done.usage.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert 1 <= done.usage.completion_tokens <= 10
    assert done.usage.cached_prompt_tokens is None


def test_greedy_is_deterministic(model: HFChatModel) -> None:
    first = complete(model, temperature=0.0)
    second = complete(model, temperature=0.0)
    assert first.text == second.text
    assert first.usage == second.usage


def test_max_tokens_respected(model: HFChatModel) -> None:
    short = complete(model, max_tokens=3)
    longer = complete(model, max_tokens=9)
    for budget, done in ((3, short), (9, longer)):
        assert 1 <= done.usage.completion_tokens <= budget
        # "length" when the budget ran out, "stop" only if the model chose its end token
        assert done.finish_reason == ("length" if done.usage.completion_tokens == budget else "stop")
    assert longer.text.startswith(short.text)


def test_default_budget_from_settings(model: HFChatModel) -> None:
    done = complete(model)
    assert done.usage.completion_tokens <= 12


def test_sampling_runs_within_budget(model: HFChatModel) -> None:
    done = complete(model, temperature=1.0, max_tokens=5)
    assert done.usage.completion_tokens <= 5


def test_stream_joins_to_complete_text(model: HFChatModel) -> None:
    done = complete(model, max_tokens=10)
    chunks = stream(model, max_tokens=10)
    assert "".join(c.delta for c in chunks) == done.text
    assert len([c for c in chunks if c.delta]) > 1
    final = chunks[-1]
    assert final.usage == done.usage
    assert final.finish_reason == done.finish_reason
    assert all(c.usage is None for c in chunks[:-1])


def test_stop_string_cuts_text_in_complete_and_stream(model: HFChatModel) -> None:
    full = complete(model, max_tokens=12).text
    words = full.split()
    assert len(words) >= 3
    stop = words[2]
    expected = full[: full.find(stop)]
    stopped = complete(model, max_tokens=12, stop=[stop])
    assert stopped.text == expected
    assert stopped.finish_reason == "stop"
    assert stopped.usage.completion_tokens < 12
    chunks = stream(model, max_tokens=12, stop=[stop])
    assert "".join(c.delta for c in chunks) == expected


def test_leaving_a_stream_early_stops_generation(model: HFChatModel) -> None:
    async def go() -> Completion:
        async with aclosing(model.stream(QUESTION, max_tokens=400)) as chunks:
            async for _ in chunks:
                break
        return await model.complete(QUESTION, max_tokens=4)  # the model is free again

    assert asyncio.run(asyncio.wait_for(go(), timeout=120)).usage.completion_tokens <= 4


def test_json_schema_with_random_model_raises_output_error(model: HFChatModel) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    with pytest.raises(LLMOutputError, match="did not match the JSON schema, even after one retry"):
        complete(model, json_schema=schema, max_tokens=8)


def test_passed_in_model_without_template_and_generate_hook(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None  # the plain "role: content" layout
    llama = LlamaForCausalLM.from_pretrained(tiny_model_dir).eval()
    seen: list[tuple[Any, tuple[int, ...]]] = []

    def hook(m: Any, input_ids: torch.Tensor) -> dict[str, Any]:
        seen.append((m, tuple(input_ids.shape)))
        return {"past_key_values": DynamicCache()}

    chat = HFChatModel(LLMSettings(backend="hf"), model=llama, tokenizer=tokenizer, generate_kwargs=hook)
    done = complete(chat, max_tokens=4)
    text = "system: Answer briefly.\nuser: Where is the Louvre?\nassistant:"
    prompt_len = len(tokenizer(text)["input_ids"])
    assert done.usage.prompt_tokens == prompt_len
    assert seen == [(llama, (1, prompt_len))]
    assert 1 <= done.usage.completion_tokens <= 4


def test_missing_model_folder_is_unavailable(tmp_path: Path) -> None:
    chat = HFChatModel(LLMSettings(backend="hf", model=str(tmp_path / "nowhere"), device="cpu"))
    with pytest.raises(LLMUnavailableError, match="cannot load"):
        complete(chat)


def test_no_model_configured_is_unavailable() -> None:
    with pytest.raises(LLMUnavailableError, match="llm.model"):
        HFChatModel(LLMSettings(backend="hf"))
