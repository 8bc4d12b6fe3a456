"""In-process generation with transformers, on CPU or GPU. This backend also hosts the
memory layer, through the two hooks described on `HFChatModel`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quarry.agents.errors import LLMError, LLMUnavailableError
from quarry.agents.llm.prompts import json_instruction
from quarry.agents.llm.structured import complete_json
from quarry.core.chat import Completion, Message, StreamChunk, Usage
from quarry.core.settings import LLMSettings

GenerateKwargs = Callable[[Any, Any], Mapping[str, Any]]
"""(model, input_ids of shape (1, T)) -> extra keyword arguments for `model.generate`."""

STOP_WINDOW_TOKENS = 16  # tokens decoded beyond a stop string's length when looking for it


@dataclass(frozen=True)
class _Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class HFChatModel:
    """A causal LM run with `model.generate` in a worker thread (one generation at a time).

    The model and tokenizer load from `settings.model` (a local path or hub id) on first
    use unless they are passed in (once, whichever thread comes first); a passed-in model
    is used where it is (no device move). `load()` hands them out, so that the memory
    engine reads with the same weights; whoever shares them holds `generation_lock`
    around tokenising and generating, as this model does.
    Prompts use the tokenizer's chat template when it has one, else a plain
    "role: content" layout. Temperature 0 decodes greedily. JSON schemas are asked for in
    the system prompt, then parsed, validated and retried once (no constrained decoding).

    Hooks for the memory layer (kept small on purpose):
    - `model_kwargs`: extra arguments for `AutoModelForCausalLM.from_pretrained`, e.g.
      `{"attn_implementation": "squeezed"}` for an attention function registered through
      transformers' `AttentionInterface`;
    - `generate_kwargs`: called before every generation with the model and the prompt's
      input ids (shape (1, T)); its mapping is merged into `model.generate(...)`'s keyword
      arguments, e.g. `{"past_key_values": MemoryCache(...)}` for a custom `Cache`.
    """

    def __init__(
        self,
        settings: LLMSettings,
        model: Any = None,
        tokenizer: Any = None,
        *,
        model_kwargs: Mapping[str, Any] | None = None,
        generate_kwargs: GenerateKwargs | None = None,
    ) -> None:
        if model is None and not settings.model:
            raise LLMUnavailableError(
                "the hf backend needs llm.model (QUARRY_LLM__MODEL): a local model folder or a hub id"
            )
        self.settings = settings
        config = getattr(model, "config", None)
        self.name: str = settings.model or getattr(config, "name_or_path", None) or type(model).__name__
        self._model = model
        self._tokenizer = tokenizer
        self._owns_model = model is None
        self._model_kwargs = dict(model_kwargs or {})
        self._generate_kwargs = generate_kwargs
        self._load_lock = threading.Lock()
        self.generation_lock = threading.Lock()

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        stop: Sequence[str] | None = None,
    ) -> Completion:
        """One completion; with `json_schema`, prompted JSON validated and retried once."""

        async def call(conversation: list[Message]) -> Completion:
            done = await asyncio.to_thread(self._generate, conversation, max_tokens, temperature, stop)
            usage = Usage(prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens)
            return Completion(text=done.text, usage=usage, finish_reason=done.finish_reason)

        if json_schema is None:
            return await call(list(messages))
        instructed = _with_system(messages, json_instruction(json_schema))
        return await complete_json(call, instructed, json_schema, model_name=self.name)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        """Text as `TextIteratorStreamer` releases it (whole words); the last chunk has the
        usage. Joined, the deltas equal `complete`'s text (tokenizers whose decoding changes
        across a newline may differ there in whitespace). Leaving the loop early stops the
        generation."""
        from transformers import TextIteratorStreamer

        _, tokenizer = await asyncio.to_thread(self.load)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel = threading.Event()
        task = asyncio.ensure_future(
            asyncio.to_thread(self._generate, list(messages), max_tokens, temperature, stop, streamer, cancel)
        )
        stops = [s for s in stop or [] if s]
        hold = max((len(s) for s in stops), default=1) - 1  # a stop string may still be forming
        text = emitted = ""
        pieces = iter(streamer)
        try:
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                text += piece
                cut = _find_stop(text, stops)
                if cut is not None:
                    cancel.set()
                    if cut > len(emitted):
                        yield StreamChunk(delta=text[len(emitted) : cut])
                    emitted = text[:cut]
                    break
                if len(text) - hold > len(emitted):
                    yield StreamChunk(delta=text[len(emitted) : len(text) - hold])
                    emitted = text[: len(text) - hold]
            else:
                if len(text) > len(emitted):
                    yield StreamChunk(delta=text[len(emitted) :])
            done = await task
        finally:
            if not task.done():
                cancel.set()
                task.add_done_callback(_consume_exception)
        usage = Usage(prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens)
        yield StreamChunk(usage=usage, finish_reason=done.finish_reason)

    async def aclose(self) -> None:
        """Drops a model this instance loaded (it loads again on next use); a passed-in
        model stays with its owner."""
        if self._owns_model:
            with self._load_lock:
                self._model = None

    def load(self) -> tuple[Any, Any]:
        """The model and tokenizer, loaded now unless they already are (blocking: call it
        from a worker thread)."""
        with self._load_lock:
            if self._tokenizer is None or self._model is None:
                self._load()
            return self._model, self._tokenizer

    # -- internals (these run in worker threads) -----------------------------------

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = self.settings.model or self.name
        try:
            if self._tokenizer is None:
                self._tokenizer = AutoTokenizer.from_pretrained(source)
            if self._model is None:
                model: Any = AutoModelForCausalLM.from_pretrained(
                    source, **_dtype_kwargs(self.settings.dtype), **self._model_kwargs
                )
                model.to(_pick_device(self.settings.device))
                model.eval()
                self._model = model
        except (OSError, ValueError, ImportError) as exc:
            raise LLMUnavailableError(f"cannot load {source!r} for the hf backend: {exc}") from exc

    def _generate(
        self,
        messages: list[Message],
        max_tokens: int | None,
        temperature: float | None,
        stop: Sequence[str] | None,
        streamer: Any = None,
        cancel: threading.Event | None = None,
    ) -> _Generated:
        try:
            model, tokenizer = self.load()
            # one generation at a time; tokenizing inside the lock too, as a fast tokenizer
            # shared between threads can fail with "Already borrowed"
            with self.generation_lock:
                return self._run_generate(model, tokenizer, messages, max_tokens, temperature, stop, streamer, cancel)
        finally:
            if streamer is not None:
                streamer.end()  # unblocks the reader if generation failed before its own end()

    def _run_generate(
        self,
        model: Any,
        tokenizer: Any,
        messages: list[Message],
        max_tokens: int | None,
        temperature: float | None,
        stop: Sequence[str] | None,
        streamer: Any,
        cancel: threading.Event | None,
    ) -> _Generated:
        import torch
        from transformers import StoppingCriteriaList

        budget = max_tokens if max_tokens is not None else self.settings.max_tokens
        heat = temperature if temperature is not None else self.settings.temperature
        stops = [s for s in stop or [] if s]
        prompt = self._encode(tokenizer, messages)
        input_ids = torch.tensor([prompt], dtype=torch.long, device=model.device)  # (1, T)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),  # (1, T)
            "max_new_tokens": budget,
            "do_sample": heat > 0,
        }
        if heat > 0:
            kwargs["temperature"] = heat
        if model.generation_config.pad_token_id is None:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            if pad is not None:
                kwargs["pad_token_id"] = pad
        if stops or cancel is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopCriterion(tokenizer, len(prompt), stops, cancel)])
        if streamer is not None:
            kwargs["streamer"] = streamer
        if self._generate_kwargs is not None:
            kwargs.update(self._generate_kwargs(model, input_ids))
        try:
            with torch.inference_mode():
                output = model.generate(**kwargs)  # (1, T + new)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise LLMError(f"{self.name}: generation failed: {exc}") from exc
        new_ids = output[0, len(prompt) :].tolist()
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        cut = _find_stop(text, stops)
        if cut is not None:
            text, finish = text[:cut], "stop"
        else:
            finish = "length" if len(new_ids) >= budget else "stop"
        return _Generated(text=text, prompt_tokens=len(prompt), completion_tokens=len(new_ids), finish_reason=finish)

    def _encode(self, tokenizer: Any, messages: Sequence[Message]) -> list[int]:
        """Prompt token ids: the chat template when there is one, else "role: content" lines."""
        from jinja2 import TemplateError

        if not getattr(tokenizer, "chat_template", None):
            text = "\n".join(f"{m.role}: {m.content}" for m in messages) + "\nassistant:"
            return list(tokenizer(text)["input_ids"])
        chat = [{"role": m.role, "content": m.content} for m in messages]
        try:
            text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        except (TemplateError, ValueError) as exc:
            raise LLMError(f"{self.name}: the chat template refused the messages: {exc}") from exc
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class _StopCriterion:
    """Stops generation once a stop string appears in the new text, or on cancel."""

    def __init__(self, tokenizer: Any, prompt_len: int, stops: list[str], cancel: threading.Event | None) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stops = stops
        self.cancel = cancel
        self.window = max((len(s) for s in stops), default=0) + STOP_WINDOW_TOKENS

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = self.cancel is not None and self.cancel.is_set()
        if not done and self.stops:
            start = max(self.prompt_len, input_ids.shape[1] - self.window)
            tail = self.tokenizer.decode(input_ids[0, start:].tolist(), skip_special_tokens=True)
            done = _find_stop(tail, self.stops) is not None
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)  # (B,)


def _with_system(messages: Sequence[Message], instruction: str) -> list[Message]:
    if messages and messages[0].role == "system":
        first = Message(role="system", content=f"{messages[0].content}\n\n{instruction}")
        return [first, *messages[1:]]
    return [Message(role="system", content=instruction), *messages]


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in `text`, if any does."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _dtype_kwargs(dtype: str) -> dict[str, Any]:
    import torch
    import transformers
    from packaging.version import Version

    value: Any = "auto" if dtype == "auto" else getattr(torch, dtype)
    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {key: value}


def _consume_exception(task: asyncio.Future[Any]) -> None:
    """An abandoned stream's generation may fail after nobody waits for it."""
    if not task.cancelled():
        task.exception()
