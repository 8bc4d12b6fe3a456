"""In-process vLLM (`vllm.LLM`) with prefix caching; vLLM comes with the gpu extra."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from quarry.agents.errors import LLMError, LLMUnavailableError
from quarry.agents.llm.structured import complete_json
from quarry.core.chat import Completion, Message, StreamChunk, Usage
from quarry.core.settings import LLMSettings

INSTALL_HINT = "the vllm backend needs vLLM, which is not installed; install the gpu extra: pip install -e '.[gpu]'"


def vllm_installed() -> bool:
    """Whether vLLM can be imported here (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


class VLLMChatModel:
    """`vllm.LLM` in this process, built on first use with `enable_prefix_caching=True`.

    Generation runs in a worker thread, one request at a time. JSON schemas use vLLM's
    structured outputs (`StructuredOutputsParams` on newer vLLM, `GuidedDecodingParams`
    on older), then are validated and retried once. `stream` yields the whole
    completion as one chunk: `vllm.LLM` returns a request only when it is finished
    (use the openai backend against `vllm serve` for token streaming)."""

    def __init__(self, settings: LLMSettings, llm: Any = None) -> None:
        if llm is None and not vllm_installed():
            raise LLMUnavailableError(INSTALL_HINT)
        if llm is None and not settings.model:
            raise LLMUnavailableError(
                "the vllm backend needs llm.model (QUARRY_LLM__MODEL): a local model folder or a hub id"
            )
        self.settings = settings
        self.name: str = settings.model or type(llm).__name__
        self._llm = llm
        self._owns_llm = llm is None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        stop: Sequence[str] | None = None,
    ) -> Completion:
        """One completion; with `json_schema`, constrained decoding plus validation."""

        async def call(conversation: list[Message]) -> Completion:
            return await asyncio.to_thread(self._generate, conversation, max_tokens, temperature, stop, json_schema)

        if json_schema is None:
            return await call(list(messages))
        return await complete_json(call, messages, json_schema, model_name=self.name)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        """The whole completion as one delta, then a chunk with the usage."""
        done = await self.complete(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        if done.text:
            yield StreamChunk(delta=done.text)
        yield StreamChunk(usage=done.usage, finish_reason=done.finish_reason)

    async def aclose(self) -> None:
        """Drops an engine this instance started (GPU memory is freed once nothing else
        holds it); a passed-in engine stays with its owner."""
        if self._owns_llm:
            with self._load_lock:
                self._llm = None

    # -- internals (these run in worker threads) -----------------------------------

    def _ensure_loaded(self) -> Any:
        with self._load_lock:
            if self._llm is None:
                from vllm import LLM

                kwargs: dict[str, Any] = {
                    "model": self.settings.model,
                    "enable_prefix_caching": True,
                    "gpu_memory_utilization": self.settings.gpu_memory_utilization,
                    "dtype": self.settings.dtype,
                }
                if self.settings.max_model_len is not None:
                    kwargs["max_model_len"] = self.settings.max_model_len
                try:
                    self._llm = LLM(**kwargs)
                except (OSError, ValueError, RuntimeError) as exc:
                    raise LLMUnavailableError(f"cannot start vLLM with {self.settings.model!r}: {exc}") from exc
            return self._llm

    def _generate(
        self,
        messages: list[Message],
        max_tokens: int | None,
        temperature: float | None,
        stop: Sequence[str] | None,
        json_schema: dict[str, Any] | None,
    ) -> Completion:
        from vllm import SamplingParams

        llm = self._ensure_loaded()
        kwargs: dict[str, Any] = {
            "max_tokens": max_tokens if max_tokens is not None else self.settings.max_tokens,
            "temperature": temperature if temperature is not None else self.settings.temperature,
        }
        if stop:
            kwargs["stop"] = list(stop)
        if json_schema is not None:
            kwargs.update(_structured_kwargs(json_schema))
        chat = [{"role": m.role, "content": m.content} for m in messages]
        try:
            with self._generate_lock:
                outputs = llm.chat(chat, sampling_params=SamplingParams(**kwargs), use_tqdm=False)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise LLMError(f"{self.name}: generation failed: {exc}") from exc
        request = outputs[0]
        generated = request.outputs[0]
        cached = getattr(request, "num_cached_tokens", None)
        usage = Usage(
            prompt_tokens=len(request.prompt_token_ids or []),
            completion_tokens=len(generated.token_ids),
            cached_prompt_tokens=int(cached) if cached is not None else None,
        )
        return Completion(text=generated.text, usage=usage, finish_reason=generated.finish_reason)


def _structured_kwargs(schema: dict[str, Any]) -> dict[str, Any]:
    """SamplingParams arguments constraining output to `schema`, for new and old vLLM."""
    from vllm import sampling_params

    if hasattr(sampling_params, "StructuredOutputsParams"):
        return {"structured_outputs": sampling_params.StructuredOutputsParams(json=schema)}
    if hasattr(sampling_params, "GuidedDecodingParams"):
        return {"guided_decoding": sampling_params.GuidedDecodingParams(json=schema)}
    raise LLMUnavailableError("this vLLM offers neither StructuredOutputsParams nor GuidedDecodingParams")
