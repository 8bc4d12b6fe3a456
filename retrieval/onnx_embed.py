"""The embedding model on ONNX Runtime (`embedding.backend = onnx | onnx-int8`).

The model's transformer is exported once with `torch.onnx` (attention written out eagerly so
that ONNX Runtime's BERT optimizer can fuse it into its `Attention` kernels), optionally
quantised to int8 (dynamic, per-channel weights of the MatMuls only: the embeddings and
layer norms stay float), checked against the sentence-transformers model on probe texts,
and cached under `<data_dir>/models/<key>/` (key: the model's files, the options, the
versions of torch and onnxruntime). Later processes load only the cached file, the
model's own `tokenizer.json` and two small JSON configs: no torch, no transformers.

Only models made of a Transformer, a Pooling (mean or CLS token) and optionally a Normalize
module are supported (the common sentence-transformers layout, and the bundled one); any
other layout gets a clear error. sentence-transformers' own `backend="onnx"` needs optimum,
which would take transformers back to the 4.x line, hence this module.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quarry.core.errors import ConfigurationError

_PROBES = (
    "Reciprocal rank fusion combines the rankings of several retrievers.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "short",
    "A much longer probe text, " * 40,
)
_MIN_PROBE_COSINE = {False: 0.999, True: 0.95}  # export (fp32) vs int8


@dataclass(frozen=True)
class ModelLayout:
    """What the ONNX path needs to know about a sentence-transformers model folder."""

    path: Path
    dimension: int
    max_tokens: int
    pooling: str  # "mean" or "cls"
    normalize: bool
    model_type: str
    num_heads: int
    hidden_size: int


def read_layout(model_path: str) -> ModelLayout:
    """Read a local sentence-transformers folder's layout; ConfigurationError if unsupported."""
    path = Path(model_path)
    if not (path / "modules.json").is_file():
        raise ConfigurationError(
            f"embedding.backend onnx needs a local sentence-transformers folder (modules.json): {model_path!r}"
        )
    modules = json.loads((path / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or set(kinds[1:]) - {"Pooling", "Normalize"} or "Pooling" not in kinds:
        raise ConfigurationError(
            f"embedding.backend onnx supports Transformer + Pooling (+ Normalize) models; {path.name} has {kinds}"
        )
    pool_dir = path / next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pool = json.loads((pool_dir / "config.json").read_text())
    modes = [k for k, v in pool.items() if k.startswith("pooling_mode_") and v]
    if modes == ["pooling_mode_mean_tokens"]:
        pooling = "mean"
    elif modes == ["pooling_mode_cls_token"]:
        pooling = "cls"
    else:
        raise ConfigurationError(f"embedding.backend onnx supports mean or CLS pooling; {path.name} uses {modes}")
    if not (path / "tokenizer.json").is_file():
        raise ConfigurationError(f"embedding.backend onnx needs the model's tokenizer.json: {path}")
    config = json.loads((path / "config.json").read_text())
    st_config_file = path / "sentence_bert_config.json"
    st_config = json.loads(st_config_file.read_text()) if st_config_file.is_file() else {}
    max_tokens = int(st_config.get("max_seq_length") or config.get("max_position_embeddings", 512))
    return ModelLayout(
        path=path,
        dimension=int(pool.get("word_embedding_dimension") or config["hidden_size"]),
        max_tokens=max_tokens,
        pooling=pooling,
        normalize="Normalize" in kinds,
        model_type=str(config.get("model_type", "")),
        num_heads=int(config.get("num_attention_heads", 0)),
        hidden_size=int(config.get("hidden_size", 0)),
    )


def cache_key(layout: ModelLayout, quantize: bool) -> str:
    """A name for one export: the model files' names, sizes and times, the options, the tools."""
    import onnxruntime

    h = hashlib.sha256()
    for f in sorted(layout.path.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(layout.path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(f"int8={quantize}|ort={onnxruntime.__version__}|v1".encode())
    return f"{layout.path.name}-{'int8' if quantize else 'fp32'}-{h.hexdigest()[:16]}"


class OnnxEncoder:
    """Embeds texts with an exported model on ONNX Runtime's CPU provider."""

    def __init__(self, layout: ModelLayout, model_file: Path, threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.layout = layout
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per physical core
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.tokenizer = Tokenizer.from_file(str(layout.path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(layout.max_tokens)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """(n, dim) float32, L2-normalised; batches of similar length (as sentence-transformers)."""
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), self.layout.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = [encodings[i] for i in idx]
            width = max(len(e.ids) for e in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)  # (b, t)
            mask = np.zeros((len(batch), width), dtype=np.int64)  # (b, t)
            types = np.zeros((len(batch), width), dtype=np.int64)  # (b, t)
            for row, e in enumerate(batch):
                n = len(e.ids)
                ids[row, :n], mask[row, :n], types[row, :n] = e.ids, 1, e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            hidden = self.session.run(None, {k: feed[k] for k in self.input_names})[0]  # (b, t, d)
            out[idx] = _pool(hidden, mask, self.layout.pooling)
        return _normalise(out)


def _pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "cls":
        return np.asarray(hidden[:, 0], dtype=np.float32)  # (b, d)
    m = mask[..., None].astype(np.float32)  # (b, t, 1)
    return np.asarray((hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9), dtype=np.float32)  # (b, d)


def _normalise(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12), dtype=np.float32)


def load_encoder(model_path: str, cache_dir: Path, quantize: bool, threads: int = 0) -> OnnxEncoder:
    """The cached export of `model_path` (exported now if missing), loaded on ONNX Runtime."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            "embedding.backend onnx needs onnxruntime and onnx: pip install 'quarry[onnx]'"
        ) from exc
    layout = read_layout(model_path)
    target = cache_dir / cache_key(layout, quantize) / "model.onnx"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent.parent / ".export.lock", "a+") as lock:  # one process exports
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not target.is_file():
                    _export(layout, target, quantize)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return OnnxEncoder(layout, target, threads)


def _export(layout: ModelLayout, target: Path, quantize: bool) -> None:
    """Export, fuse, quantise, check against sentence-transformers, then rename into place."""
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent.parent))
    try:
        reference = _torch_export(layout, work / "plain.onnx")
        current = _fuse(layout, work / "plain.onnx", work / "fused.onnx")
        if quantize:
            current = _quantize(current, work / "int8.onnx")
        encoder = OnnxEncoder(layout, current, threads=1)
        cosine = (encoder.encode(_PROBES, batch_size=len(_PROBES)) * reference).sum(axis=1)
        if float(cosine.min()) < _MIN_PROBE_COSINE[quantize]:
            raise ConfigurationError(
                f"the ONNX export of {layout.path.name} disagrees with sentence-transformers "
                f"(probe cosine {float(cosine.min()):.4f}); use embedding.backend = torch"
            )
        tmp = target.with_suffix(".onnx.tmp")
        shutil.copyfile(current, tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _torch_export(layout: ModelLayout, path: Path) -> np.ndarray:
    """Write the transformer to `path`; returns sentence-transformers' own probe embeddings."""
    import warnings

    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(layout.path), device="cpu", model_kwargs={"attn_implementation": "eager"})
    reference = st.encode(list(_PROBES), normalize_embeddings=True, convert_to_numpy=True)
    first: Any = st[0]  # the Transformer module
    transformer = first.auto_model.eval()
    with_types = "token_type_ids" in inspect.signature(transformer.forward).parameters
    names = ["input_ids", "attention_mask", "token_type_ids"][: 3 if with_types else 2]
    sample = torch.ones(2, 8, dtype=torch.long)
    inputs = (sample, torch.ones_like(sample), torch.zeros_like(sample))[: len(names)]
    axes: dict[str, Any] = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _wrapper(transformer, with_types),
            inputs,
            str(path),
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles BERT-style models
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
        )
    return np.asarray(reference, dtype=np.float32)


def _fuse(layout: ModelLayout, source: Path, target: Path) -> Path:
    """ONNX Runtime's transformer fusions (attention, layer norm, GELU) where the model is BERT-like."""
    if layout.model_type not in ("bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra"):
        return source
    from onnxruntime.transformers import optimizer

    model_type = "bert" if layout.model_type in ("bert", "roberta", "xlm-roberta", "mpnet", "electra") else "distilbert"
    fused = optimizer.optimize_model(
        str(source), model_type=model_type, num_heads=layout.num_heads, hidden_size=layout.hidden_size
    )
    fused.save_model_to_file(str(target))
    return target


def _quantize(source: Path, target: Path) -> Path:
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser warns on the root logger about optional pre-processing
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,  # per-tensor int8 costs MiniLM about .07 of cosine; per-channel about .007
            op_types_to_quantize=["MatMul"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # fused ops lack inferred types
        )
    finally:
        root.setLevel(level)
    return target


def _wrapper(model: Any, with_types: bool) -> Any:
    """A module whose forward takes the inputs positionally and returns the last hidden state."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            extra = {"token_type_ids": token_type_ids} if with_types else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    return LastHiddenState()
