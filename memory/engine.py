"""The long-document engine: a long document and a question in, an answer out, read with
InfLLM memory units (any length, memory flat in the length) or Squeezed Attention over a
cached fixed context (the document prefilled and clustered once, in the context store;
later questions skip the prefill).

The prompt is the chat template over `memory.prompts.fixed_context_messages`: the prefix
up to the end of the document is tokenised on its own, so its token ids are the same for
every question, and the question's part is appended. Generation is `model.generate` with
the memory cache as `past_key_values`; the model is switched to the memory attention,
which stays exact for any other use of the model.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from quarry.memory.config import InfLLMConfig, SqueezedConfig, infllm_config, squeezed_config
from quarry.memory.context import context_cache, prefill_context
from quarry.memory.errors import MemoryConfigError
from quarry.memory.infllm import InfLLMCache
from quarry.memory.interface import ATTENTION_NAME, prepare_model, register_attention
from quarry.memory.prompts import QUESTION_HEADER, READER_INSTRUCTIONS, fixed_context_messages
from quarry.memory.store import ContextEntry, ContextKey, ContextStore, ModelFingerprint, content_hash

if TYPE_CHECKING:
    from quarry.core.settings import Settings

Mechanism = Literal["squeezed", "infllm", "full"]
GenerateKwargs = Callable[[Any, Any], Mapping[str, Any]]


@dataclass(frozen=True)
class PromptParts:
    """Token ids of a prompt: the fixed prefix (template, instructions, document) and the
    question's part (question, end of turn, generation prompt)."""

    prefix: list[int]
    suffix: list[int]


@dataclass(frozen=True)
class LongAnswer:
    text: str
    mechanism: Mechanism
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    context_reused: bool  # squeezed: the context came from the store (or memory), not a prefill now
    context_seconds: float  # time spent on the document now: prefill (+ clustering), or loading it
    generate_seconds: float  # the question's prefill and the decoding
    key_share: float | None = None  # squeezed: share of (query, context key) pairs attended
    memory_blocks: int | None = None  # infllm: memory units over all layers


@dataclass(frozen=True)
class PrecomputeReport:
    path: Path
    tokens: int
    created: bool  # False: the entry was already in the store
    seconds: float


class LongContextEngine:
    """Answers questions about long documents with a transformers causal LM (Llama, Qwen2,
    Mistral families). One generation at a time; `resident` prepared contexts stay on
    the device between questions. A model and tokenizer shared with another user (the hf
    chat model) come with that user's `lock`, held here around every use of them."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        store: ContextStore | None = None,
        infllm: InfLLMConfig | None = None,
        squeezed: SqueezedConfig | None = None,
        model_id: str | None = None,
        instructions: str = READER_INSTRUCTIONS,
        resident: int = 1,
        lock: threading.Lock | None = None,
    ) -> None:
        self._lock = lock or threading.Lock()
        with self._lock:
            self.model = prepare_model(model)  # switches attention under the lock: a shared model may be generating
        self.tokenizer = tokenizer
        self.store = store
        self.infllm = infllm or InfLLMConfig()
        self.squeezed = squeezed or SqueezedConfig()
        self.instructions = instructions
        self.fingerprint = ModelFingerprint.of(model, model_id)
        self._resident: OrderedDict[ContextKey, ContextEntry] = OrderedDict()
        self._resident_max = resident

    @classmethod
    def from_settings(
        cls, settings: Settings, model: Any = None, tokenizer: Any = None, lock: threading.Lock | None = None
    ) -> LongContextEngine:
        """An engine over `settings.llm.model` (loaded here unless passed in, with the lock
        of their owner), with the context store under `settings.memory.context_dir`
        (default: data_dir/contexts)."""
        memory = settings.memory
        if model is None or tokenizer is None:
            model, tokenizer = load_model(settings)
        root = memory.context_dir or settings.storage.data_dir / "contexts"
        return cls(
            model,
            tokenizer,
            store=ContextStore(root),
            infllm=infllm_config(memory),
            squeezed=squeezed_config(memory),
            model_id=settings.llm.model,
            lock=lock,
        )

    # -- prompts -------------------------------------------------------------------------

    def encode(self, document: str, question: str) -> PromptParts:
        """The prompt's token ids, split where the question starts."""
        messages = fixed_context_messages(document, question, self.instructions)
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = str(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            bos: list[int] = []
        else:
            text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
            bos = [tok.bos_token_id] if getattr(tok, "bos_token_id", None) is not None else []
        try:
            cut = text.rindex(QUESTION_HEADER + question.strip())
        except ValueError as exc:
            raise MemoryConfigError("the chat template rewrites message content; cannot split the prompt") from exc
        prefix = bos + list(tok(text[:cut], add_special_tokens=False)["input_ids"])
        suffix = list(tok(text[cut:], add_special_tokens=False)["input_ids"])
        return PromptParts(prefix, suffix)

    def count_tokens(self, text: str) -> int:
        with self._lock:  # a fast tokenizer used from two threads at once can fail ("Already borrowed")
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def context_key(self, prefix: list[int]) -> ContextKey:
        return ContextKey(self.fingerprint, content_hash(prefix), self.squeezed)

    # -- fixed contexts --------------------------------------------------------------------

    def context(self, document: str) -> tuple[ContextEntry, bool]:
        """The prepared fixed context of `document` on the model's device, and whether it
        was reused (resident or in the store) rather than prefilled now; a new one is
        saved to the store."""
        return self._context(self.encode(document, "?").prefix)

    def _context(self, prefix: list[int]) -> tuple[ContextEntry, bool]:
        key = self.context_key(prefix)
        entry = self._resident.get(key)
        if entry is not None:
            self._resident.move_to_end(key)
            return entry, True
        reused = True
        entry = self.store.load(key, self.model.device) if self.store is not None else None
        if entry is None:
            reused = False
            entry = prefill_context(self.model, prefix, self.squeezed, self.fingerprint.model_id)
            if self.store is not None:
                self.store.save(entry)
            entry = entry.to(self.model.device)
        self._resident[key] = entry
        while len(self._resident) > self._resident_max:
            self._resident.popitem(last=False)
        return entry, reused

    def precompute(self, document: str) -> PrecomputeReport:
        """Makes sure the store has `document`'s fixed context (for a worker to call)."""
        if self.store is None:
            raise MemoryConfigError("precomputing a context needs a context store")
        with self._lock:
            started = time.perf_counter()
            prefix = self.encode(document, "?").prefix
            key = self.context_key(prefix)
            created = not self.store.contains(key)
            if created:
                self.store.save(prefill_context(self.model, prefix, self.squeezed, self.fingerprint.model_id))
            return PrecomputeReport(self.store.path(key), len(prefix), created, time.perf_counter() - started)

    # -- answering -----------------------------------------------------------------------

    def answer(
        self,
        document: str,
        question: str,
        *,
        mechanism: Mechanism = "squeezed",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
    ) -> LongAnswer:
        """Generates an answer to `question` about `document` with `mechanism`."""
        with self._lock:
            parts = self.encode(document, question)
            started = time.perf_counter()
            reused, share, blocks = False, None, None
            with torch.inference_mode():
                if mechanism == "squeezed":
                    entry, reused = self._context(parts.prefix)
                    cache: Any = context_cache(self.model, entry)
                elif mechanism == "infllm":
                    cache = InfLLMCache.for_model(self.model, self.infllm)
                    self._prefill(cache, parts.prefix, self.infllm.chunk_size)
                elif mechanism == "full":
                    from transformers import DynamicCache

                    cache = DynamicCache(config=self.model.config)
                    self._prefill(cache, parts.prefix, self.squeezed.prefill_chunk)
                else:
                    raise MemoryConfigError(f"unknown memory mechanism {mechanism!r}")
                context_done = time.perf_counter()
                ids = self._generate(parts, cache, max_new_tokens, temperature)
            done = time.perf_counter()
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        if mechanism == "squeezed":
            share = cache.squeezed_stats.key_share
        elif mechanism == "infllm":
            blocks = cache.stats().blocks
        eos = _eos_ids(self.model, self.tokenizer)
        finish = "stop" if ids and ids[-1] in eos else ("length" if len(ids) >= max_new_tokens else "stop")
        return LongAnswer(
            text=text,
            mechanism=mechanism,
            prompt_tokens=len(parts.prefix) + len(parts.suffix),
            completion_tokens=len(ids),
            finish_reason=finish,
            context_reused=reused,
            context_seconds=context_done - started,
            generate_seconds=done - context_done,
            key_share=share,
            memory_blocks=blocks,
        )

    def _prefill(self, cache: Any, prefix: list[int], chunk: int) -> None:
        ids = torch.tensor([prefix], dtype=torch.long, device=self.model.device)  # (1, N)
        for a in range(0, ids.shape[1], chunk):
            self.model(input_ids=ids[:, a : a + chunk], past_key_values=cache, use_cache=True, logits_to_keep=1)

    def _generate(self, parts: PromptParts, cache: Any, max_new_tokens: int, temperature: float) -> list[int]:
        ids = torch.tensor([parts.prefix + parts.suffix], dtype=torch.long, device=self.model.device)  # (1, T)
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),  # (1, T)
            "past_key_values": cache,
            "max_new_tokens": max_new_tokens,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            kwargs["temperature"] = temperature
        if self.model.generation_config.pad_token_id is None:
            pad = (
                self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
            )
            if pad is not None:
                kwargs["pad_token_id"] = pad
        output = self.model.generate(**kwargs)  # (1, T + new)
        return list(output[0, ids.shape[1] :].tolist())


# -- hooks for agents.llm.hf.HFChatModel -------------------------------------------------------


def infllm_generate_kwargs(config: InfLLMConfig | None = None) -> GenerateKwargs:
    """A `generate_kwargs` hook for HFChatModel: every prompt is read through a fresh InfLLM
    cache with chunked prefill (use with `model_kwargs={"attn_implementation":
    memory.ATTENTION_NAME}` after `memory.register_attention()`)."""
    chosen = config or InfLLMConfig()

    def hook(model: Any, input_ids: Any) -> Mapping[str, Any]:
        prepare_model(model)
        return {"past_key_values": InfLLMCache.for_model(model, chosen), "prefill_chunk_size": chosen.chunk_size}

    return hook


def squeezed_generate_kwargs(entry: ContextEntry) -> GenerateKwargs:
    """A `generate_kwargs` hook for HFChatModel: prompts whose token ids start with the
    entry's fixed context skip its prefill; other prompts run as usual. (HFChatModel
    tokenises the whole prompt at once, which may join tokens across the document's
    end differently from `LongContextEngine.encode`; then the prefix does not match.)"""
    prefix = entry.input_ids

    def hook(model: Any, input_ids: Any) -> Mapping[str, Any]:
        n = prefix.shape[0]
        if input_ids.shape[1] <= n or not torch.equal(input_ids[0, :n].cpu(), prefix):
            return {}
        return {"past_key_values": context_cache(model, entry)}

    return hook


# -- model loading and the worker entry point ---------------------------------------------------


def load_model(settings: Settings) -> tuple[Any, Any]:
    """The causal LM and tokenizer of `settings.llm.model`, with the memory attention."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = settings.llm.model
    if not source:
        raise MemoryConfigError("the memory engine needs llm.model (QUARRY_LLM__MODEL): a model folder or hub id")
    register_attention()
    dtype: Any = "auto" if settings.llm.dtype == "auto" else getattr(torch, settings.llm.dtype)
    device = settings.llm.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation=ATTENTION_NAME)
    except (OSError, ValueError, ImportError) as exc:
        raise MemoryConfigError(f"cannot load {source!r} for the memory engine: {exc}") from exc
    model.to(device)
    model.eval()
    return model, tokenizer


def precompute_context(
    document: str, *, settings: Settings | None = None, engine: LongContextEngine | None = None
) -> PrecomputeReport:
    """Prefills, clusters and stores `document`'s fixed context unless the store has it
    (idempotent: keyed by model, content and configuration). A `gpu`-queue worker should
    build one engine at start (`LongContextEngine.from_settings`) and pass it in; without
    one, the model is loaded for this call."""
    if engine is None:
        if settings is None:
            from quarry.core.settings import get_settings

            settings = get_settings()
        engine = LongContextEngine.from_settings(settings)
    return engine.precompute(document)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    found = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found
