"""The long-document engine on a tiny random Llama: the cached context gives the logits
of a fresh prefill, later questions skip the prefill, the mechanisms agree where they are
exact, and the HFChatModel hooks plug in."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import quarry.memory.engine
from quarry.agents.llm import HFChatModel, Message, OpenAIChatModel
from quarry.core.settings import LLMSettings
from quarry.memory.config import InfLLMConfig, SqueezedConfig
from quarry.memory.context import context_cache, prefill_context
from quarry.memory.engine import LongContextEngine, infllm_generate_kwargs, precompute_context, squeezed_generate_kwargs
from quarry.memory.prefix import ask_with_prefix_cache, cache_hit_share, prefix_cached_messages
from quarry.memory.prompts import fixed_context_messages
from quarry.memory.store import ContextStore
from tests.agents.scripted_openai import ScriptedOpenAI, chat_reply

WORDS = "river stone garden window market silver winter letter engine harbor candle forest".split()
EXACT_SQUEEZED = SqueezedConfig(cluster_share=0.05, coarse_share=0.01, key_budget=1.0, prefill_chunk=128)
EXACT_INFLLM = InfLLMConfig(block_size=16, sink_tokens=8, window=64, top_k=1000, chunk_size=32, positions="exact")


def document(words: int = 450, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def engine_for(
    chat_model: Any, tokenizer: Any, root: Path, squeezed: SqueezedConfig = EXACT_SQUEEZED
) -> LongContextEngine:
    return LongContextEngine(
        chat_model, tokenizer, store=ContextStore(root), infllm=EXACT_INFLLM, squeezed=squeezed, model_id="tiny"
    )


def question_logits(model: Any, suffix: list[int], cache: Any) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([suffix]), past_key_values=cache, use_cache=True).logits  # (1, T, V)


def test_prompt_prefix_is_the_same_for_every_question(chat_model: Any, tokenizer: Any, tmp_path: Path) -> None:
    engine = engine_for(chat_model, tokenizer, tmp_path)
    doc = document()
    a, b = engine.encode(doc, "Where is the harbor?"), engine.encode(doc, "What burns?")
    assert a.prefix == b.prefix and a.suffix != b.suffix
    whole = tokenizer.apply_chat_template(
        fixed_context_messages(doc, "What burns?"), tokenize=False, add_generation_prompt=True
    )
    assert tokenizer.decode(b.prefix + b.suffix) == tokenizer.decode(
        tokenizer(whole, add_special_tokens=False)["input_ids"]
    )


def test_cached_context_gives_the_logits_of_prefilling_again(chat_model: Any, tokenizer: Any, tmp_path: Path) -> None:
    engine = engine_for(chat_model, tokenizer, tmp_path)
    doc = document()
    parts = engine.encode(doc, "Where is the silver candle?")
    with torch.inference_mode():
        again = chat_model(torch.tensor([parts.prefix + parts.suffix])).logits[:, len(parts.prefix) :]  # (1, T, V)
    assert engine.precompute(doc).created
    reader = engine_for(chat_model, tokenizer, tmp_path)  # a later process: nothing resident
    entry, reused = reader.context(doc)
    assert reused and entry.length == len(parts.prefix)
    cached = question_logits(chat_model, parts.suffix, context_cache(chat_model, entry))
    assert (cached - again).abs().max() < 1e-4


def test_loaded_context_equals_the_one_just_built(chat_model: Any, tokenizer: Any, tmp_path: Path) -> None:
    """With a calibrated (pruning) threshold too, loading changes nothing."""
    config = SqueezedConfig(cluster_share=0.05, coarse_share=0.01, key_budget=0.2, prefill_chunk=128)
    engine = engine_for(chat_model, tokenizer, tmp_path, config)
    parts = engine.encode(document(seed=1), "Which winter letter?")
    built = prefill_context(chat_model, parts.prefix, config, "tiny")
    loaded = ContextStore(tmp_path).load(built.key) if ContextStore(tmp_path).save(built) else None
    assert loaded is not None
    first = question_logits(chat_model, parts.suffix, context_cache(chat_model, built))
    second = question_logits(chat_model, parts.suffix, context_cache(chat_model, loaded))
    assert torch.equal(first, second)


def test_a_second_question_skips_the_prefill(
    chat_model: Any, tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(chat_model, tokenizer, tmp_path)
    doc = document(seed=2)
    first = engine.answer(doc, "What is in the garden?", max_new_tokens=4)
    assert first.mechanism == "squeezed" and not first.context_reused and first.key_share == 1.0
    second = engine.answer(doc, "What is in the market?", max_new_tokens=4)
    assert second.context_reused

    def no_prefill(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the context was prefilled again")

    monkeypatch.setattr(quarry.memory.engine, "prefill_context", no_prefill)
    later = engine_for(chat_model, tokenizer, tmp_path).answer(doc, "What is in the forest?", max_new_tokens=4)
    assert later.context_reused and later.completion_tokens >= 1


def test_mechanisms_agree_where_they_are_exact(chat_model: Any, tokenizer: Any, tmp_path: Path) -> None:
    engine = engine_for(chat_model, tokenizer, tmp_path)
    doc, question = document(seed=3), "Where does the river go?"
    answers = {m: engine.answer(doc, question, mechanism=m, max_new_tokens=6) for m in ("full", "infllm", "squeezed")}
    assert len({a.text for a in answers.values()}) == 1
    assert answers["infllm"].memory_blocks and answers["infllm"].memory_blocks > 0
    assert answers["full"].prompt_tokens == answers["squeezed"].prompt_tokens > 400


def test_precompute_context_is_idempotent(chat_model: Any, tokenizer: Any, tmp_path: Path) -> None:
    engine = engine_for(chat_model, tokenizer, tmp_path)
    first = precompute_context(document(seed=4), engine=engine)
    again = precompute_context(document(seed=4), engine=engine)
    assert first.created and not again.created and first.path == again.path and first.path.exists()


def hf_complete(model: HFChatModel, messages: list[Message]) -> str:
    return asyncio.run(model.complete(messages, max_tokens=6)).text


def test_hf_chat_model_hooks(chat_model: Any, tokenizer: Any, tmp_path: Path) -> None:
    settings = LLMSettings(backend="hf", model=None, device="cpu", max_tokens=6)
    doc = document(seed=5)
    messages = [Message.model_validate(m) for m in fixed_context_messages(doc, "Which engine?")]
    plain = hf_complete(HFChatModel(settings, model=chat_model, tokenizer=tokenizer), messages)

    with_infllm = HFChatModel(
        settings, model=chat_model, tokenizer=tokenizer, generate_kwargs=infllm_generate_kwargs(EXACT_INFLLM)
    )
    assert hf_complete(with_infllm, messages) == plain

    entry, _ = engine_for(chat_model, tokenizer, tmp_path).context(doc)
    hook, used = squeezed_generate_kwargs(entry), []

    def spy(model: Any, input_ids: Any) -> Any:
        extra = hook(model, input_ids)
        used.append("past_key_values" in extra)
        return extra

    with_context = HFChatModel(settings, model=chat_model, tokenizer=tokenizer, generate_kwargs=spy)
    assert hf_complete(with_context, messages) == plain
    other = [Message.model_validate(m) for m in fixed_context_messages(document(seed=6), "Which engine?")]
    hf_complete(with_context, other)
    assert used == [True, False]  # the other document's prompt runs without the cached context


@pytest.fixture(scope="module")
def openai_server() -> Iterator[ScriptedOpenAI]:
    server = ScriptedOpenAI()
    server.start()
    yield server
    server.stop()


def test_prefix_cache_layout_and_hit_share(openai_server: ScriptedOpenAI) -> None:
    doc = document(seed=7)
    openai_server.script(
        chat_reply("garden", prompt_tokens=600, cached=None),
        chat_reply("market", prompt_tokens=610, cached=592),
    )
    model = OpenAIChatModel(LLMSettings(backend="openai", model="scripted", base_url=openai_server.base_url))

    async def ask_twice() -> list[Any]:
        return [await ask_with_prefix_cache(model, doc, q) for q in ("What is in the garden?", "And the market?")]

    first, second = asyncio.run(ask_twice())
    assert first.hit_share is None and second.cached_tokens == 592
    assert second.hit_share == pytest.approx(592 / 610)
    bodies = [r.body["messages"] for r in openai_server.received]
    assert bodies[0][0] == bodies[1][0]  # the instructions, byte for byte
    first_user, second_user = bodies[0][1]["content"], bodies[1][1]["content"]
    cut = first_user.index("\n\nQuestion: ")
    assert first_user[:cut] == second_user[:cut] == "Document:\n" + doc  # document first, unchanged
    assert second_user.endswith("And the market?")
    assert [m.role for m in prefix_cached_messages(doc, "q")] == ["system", "user"]
    assert cache_hit_share(second.completion.usage) == second.hit_share


def test_loading_from_settings_with_the_memory_attention(chat_model: Any, tokenizer: Any, tmp_path: Path) -> None:
    """The worker's path: the model loads by path with attn_implementation set to the
    registered memory attention, and `precompute_context` fills the store once."""
    from quarry.core.settings import Settings
    from quarry.memory.interface import ATTENTION_NAME, register_attention

    chat_model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    settings = Settings(
        storage={"data_dir": tmp_path / "data"},
        llm={"backend": "hf", "model": str(tmp_path / "model"), "device": "cpu", "dtype": "float32"},
        memory={"squeezed_cluster_share": 0.05, "squeezed_coarse_share": 0.01, "squeezed_prefill_chunk": 256},
    )
    engine = LongContextEngine.from_settings(settings)
    assert engine.model.config._attn_implementation == ATTENTION_NAME
    report = precompute_context(document(seed=8), engine=engine)
    assert report.created and report.path.is_relative_to(tmp_path / "data" / "contexts")
    assert not precompute_context(document(seed=8), settings=settings).created  # loads its own model

    register_attention()
    hf = HFChatModel(
        settings.llm,
        model_kwargs={"attn_implementation": ATTENTION_NAME},
        generate_kwargs=infllm_generate_kwargs(EXACT_INFLLM),
    )
    messages = [Message.model_validate(m) for m in fixed_context_messages(document(seed=8), "Which letter?")]
    assert hf_complete(hf, messages) == hf_complete(HFChatModel(settings.llm), messages)
