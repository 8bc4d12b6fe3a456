"""One model in memory: with llm.backend = "hf", the chat model and the memory engine that
the product's factories build in one process (API services, a worker's runtime, the long
reader) read with the same weights, loaded once, even when two threads need them first at
the same moment."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM

from quarry.agents.llm import HFChatModel, Message, make_chat_model
from quarry.agents.long_reader import LongDocumentReader, make_long_reader
from quarry.api.keys import KeyStore
from quarry.api.services import Services
from quarry.core.settings import Settings
from quarry.retrieval.embedder import SentenceEmbedder
from quarry.retrieval.library import Library
from quarry.workers.jobs import JobStore
from quarry.workers.tasks import Runtime
from tests.conftest import make_settings
from tests.memory.conftest import CHAT_TEMPLATE
from tests.tiny_models import save_tiny_llama

QUESTION = [Message(role="user", content="Where is the harbor?")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama saved like a real checkpoint, over the bundled WordPiece vocabulary."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), CHAT_TEMPLATE)


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path) -> Settings:
    return make_settings(tmp_path, llm={"backend": "hf", "model": str(model_dir), "device": "cpu", "max_tokens": 3})


@pytest.fixture
def weight_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every load of causal-LM weights in this process, slowed down so that two threads
    that both need the model would both be inside the load at once."""
    loads: list[str] = []
    original = AutoModelForCausalLM.from_pretrained

    def counting(source: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(str(source))
        time.sleep(0.3)
        return original(source, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", counting)
    return loads


def chat(model: Any) -> str:
    return asyncio.run(model.complete(QUESTION)).text


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Runs the calls in threads released together; their results in order."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, call: Callable[[], Any]) -> None:
        start.wait()
        try:
            results[i] = call()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def services(settings: Settings, embedder: SentenceEmbedder) -> Iterator[Services]:
    library = Library(settings, embedder=embedder)
    engine = library.store.engine
    yield Services(settings, library, JobStore(engine), KeyStore(engine), None, model=make_chat_model(settings.llm))
    library.close()


def test_api_services_chat_and_memory_engine_share_one_load(services: Services, weight_loads: list[str]) -> None:
    model = services.model
    assert isinstance(model, HFChatModel)
    _, engine = at_once(lambda: chat(model), services.memory_engine)  # both need the weights first
    assert len(weight_loads) == 1
    weights, tokenizer = model.load()
    assert engine.model is weights and engine.tokenizer is tokenizer
    assert services.memory_engine() is engine
    # both still work on the shared model, one after the other or at once
    answers = at_once(
        lambda: chat(model), lambda: engine.answer("The harbor is by the silver river.", "Where?", mechanism="full")
    )
    assert isinstance(answers[0], str) and answers[1].completion_tokens >= 1
    # the long reader as the service wires it for a tenant's agent uses that same engine
    reader = make_long_reader(services.settings, services.library.store, model, services.memory_engine)
    assert isinstance(reader, LongDocumentReader) and reader.engine is engine
    assert len(weight_loads) == 1


def test_worker_runtime_shares_one_load(settings: Settings, weight_loads: list[str]) -> None:
    runtime = Runtime(settings)
    engine, model = at_once(lambda: runtime.memory_engine, lambda: runtime.model)
    assert runtime.model is model and runtime.memory_engine is engine
    chat(model)
    assert engine.model is model.load()[0]
    assert len(weight_loads) == 1


def test_long_reader_factory_shares_one_load_across_threads(
    settings: Settings, services: Services, weight_loads: list[str]
) -> None:
    """make_long_reader's own engine factory (no service around it), its engine built by
    two threads at once while the chat model is also loading."""
    model = make_chat_model(settings.llm)
    assert isinstance(model, HFChatModel)
    reader = make_long_reader(settings, services.library.store, model)
    assert isinstance(reader, LongDocumentReader)
    first, second, _ = at_once(lambda: reader.engine, lambda: reader.engine, lambda: chat(model))
    assert first is second
    assert first.model is model.load()[0]
    assert len(weight_loads) == 1
