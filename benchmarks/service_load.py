"""The service under load: queries per second and p50/p95 latency of `search` and `ask`
(extractive) over REST at 1, 8 and 32 concurrent clients, and ingestion throughput through
the API with one and two Celery workers, each beside the in-process call as the baseline.

The script starts the embedded stack itself in a temporary data directory, as `quarry serve`
does: a redis-server (`EmbeddedRedis`), the API (`python -m quarry.cli api`, uvicorn) on a free
loopback port, and worker processes (`python -m quarry.cli worker -Q ingest,search,gpu,research`).
The in-process baseline is `Library.search` and `AgentGraph.ask` on a Library opened in this
process on the same data directory and database. Everything it started is stopped on exit,
Ctrl-C or error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import (
    ROOT,
    Passage,
    Stopwatch,
    apply_threads,
    base_parser,
    latency_summary,
    load_squad,
    print_table,
    quiet_environment,
    say,
    temp_data_dir,
    write_json,
)

QUEUES = "ingest,search,gpu,research"
ADMIN_KEY = "qk_admin_bench_" + os.urandom(12).hex()
FINISHED = ("succeeded", "failed", "cancelled")
PROBE_EVERY_S = 0.25
PROBE_SLEEP_S = 0.1


# the stack ---------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """Embedded Redis, the API process and worker processes, all under `data_dir`."""

    data_dir: Path
    worker_concurrency: int
    threads: int
    redis: Any = None
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def start(self) -> None:
        from quarry.workers.redis_server import EmbeddedRedis

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis = EmbeddedRedis(self.data_dir / "redis").start()
        self.port = free_port()
        self.env = {
            **os.environ,
            "QUARRY_STORAGE__DATA_DIR": str(self.data_dir),
            "QUARRY_SERVICE__REDIS_URL": self.redis.url,
            "QUARRY_SERVICE__ADMIN_KEY": ADMIN_KEY,
            "QUARRY_SERVICE__WORKER_CONCURRENCY": str(self.worker_concurrency),
        }
        if self.threads > 0:  # the same torch thread count as this process
            self.env.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        say(f"embedded redis-server on {self.redis.url}; API on {self.url}")
        self.api = self._spawn("api", ["api", "--host", "127.0.0.1", "--port", str(self.port)])

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child process
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "quarry.cli", *argv],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C reaches us, we stop it
            )
        finally:
            log.close()

    def start_worker(self) -> None:
        n = len(self.workers)
        self.workers.append(self._spawn(f"worker-{n}", ["worker", "-Q", QUEUES, "-c", str(self.worker_concurrency)]))

    def wait_healthy(self, workers: int, timeout_s: float = 300) -> None:
        """Until /v1/health answers with `workers` workers replying to Celery's ping."""
        deadline = time.monotonic() + timeout_s
        seen: Any = None
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    seen = client.get("/v1/health").json()
                    if seen.get("workers", 0) >= workers:
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.5)
        raise RuntimeError(f"the service did not report {workers} worker(s) in {timeout_s:.0f}s (last: {seen})")

    def check_alive(self) -> None:
        for name, proc in [("api", self.api)] + [(f"worker-{i}", w) for i, w in enumerate(self.workers)]:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """Workers (warm shutdown, then SIGKILL), the API, then Redis."""
        for proc in self.workers:
            _stop_group(proc, timeout_s=30)
        if self.api is not None:
            _stop_group(self.api, timeout_s=20)
        if self.redis is not None:
            self.redis.stop()


def _stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM to the process group (a worker's pool children too); SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # pool children that outlived their parent
        os.killpg(proc.pid, signal.SIGKILL)


# ingestion ---------------------------------------------------------------------------------
def post_jobs(client: httpx.Client, collection: str, docs: list[dict[str, str]], jobs: int) -> list[str]:
    size = -(-len(docs) // jobs)
    ids = []
    for i in range(0, len(docs), size):
        r = client.post(f"/v1/collections/{collection}/documents/text", json={"documents": docs[i : i + size]})
        r.raise_for_status()
        ids.append(r.json()["id"])
    return ids


def wait_jobs(client: httpx.Client, ids: list[str], stack: Stack, timeout_s: float) -> list[dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(done) < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingestion jobs not finished after {timeout_s:.0f}s")
        stack.check_alive()
        for job_id in ids:
            if job_id not in done:
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in FINISHED:
                    done[job_id] = job
        time.sleep(0.1)
    failed = [j for j in done.values() if j["status"] != "succeeded" or j["result"]["failed"]]
    if failed:
        raise RuntimeError(f"ingestion failed: {failed[0]['error'] or failed[0]['result']['failed'][:2]}")
    return [done[i] for i in ids]


def job_workers(library: Any, ids: list[str]) -> dict[str, str | None]:
    """Which worker process ran each job (read from the jobs table)."""
    from sqlalchemy import select

    from quarry.workers.jobs import JobRow

    with library.store.engine.connect() as conn:
        rows = conn.execute(select(JobRow.id, JobRow.worker).where(JobRow.id.in_(ids))).all()
    return {r[0]: r[1] for r in rows}


def warm_workers(client: httpx.Client, stack: Stack, library: Any, processes: int) -> float:
    """Small ingest jobs until `processes` distinct worker processes have each run one (and
    so loaded the embedding model): model loading stays out of the throughput numbers."""
    warmed: set[str] = set()
    n = 0
    with Stopwatch() as watch:
        for _ in range(4):
            wanted = processes - len(warmed)
            if wanted <= 0:
                break
            ids = []
            for _ in range(wanted):
                n += 1
                doc = {"name": f"warm-up-{n}", "text": f"Warm-up document number {n} for the benchmark workers."}
                ids += post_jobs(client, f"warm-up-{n}", [doc], 1)
            wait_jobs(client, ids, stack, timeout_s=300)
            warmed |= {w for w in job_workers(library, ids).values() if w}
    if len(warmed) < processes:
        say(f"warning: only {len(warmed)} of {processes} worker processes took a warm-up job")
    return watch.seconds


@dataclass
class IngestRun:
    label: str
    workers: int
    jobs: int
    chunks: int
    seconds: float
    busy_seconds: float  # sum over jobs of the library's own ingest time (it holds the collection lock)
    processes_used: int
    most_at_once: int  # most jobs inside the library's ingest at the same moment

    @property
    def rate(self) -> float:
        return self.chunks / self.seconds


def api_ingest(
    client: httpx.Client, stack: Stack, library: Any, collection: str, docs: list[dict[str, str]], jobs: int
) -> IngestRun:
    with Stopwatch() as watch:
        ids = post_jobs(client, collection, docs, jobs)
        done = wait_jobs(client, ids, stack, timeout_s=1800)
    used = {w for w in job_workers(library, ids).values() if w}
    return IngestRun(
        f"API, {len(stack.workers)} worker{'s' if len(stack.workers) > 1 else ''}",
        len(stack.workers),
        len(ids),
        sum(int(j["result"]["chunks"]) for j in done),
        watch.seconds,
        sum(float(j["result"]["seconds"]) for j in done),
        len(used),
        most_at_once(done),
    )


def most_at_once(jobs: list[dict[str, Any]]) -> int:
    """Most jobs whose ingest ran at the same moment: each job's interval is its finish time
    (`updated_at`) minus the library's own ingest seconds (measured once the lock is held)."""
    from datetime import datetime

    edges = []
    for j in jobs:
        end = datetime.fromisoformat(j["updated_at"]).timestamp()
        edges += [(end - float(j["result"]["seconds"]), 1), (end, -1)]
    running = best = 0
    for _, step in sorted(edges):
        running += step
        best = max(best, running)
    return best


def inprocess_ingest(library: Any, collection: str, passages: list[Passage]) -> IngestRun:
    from quarry.retrieval import text_document

    warm = text_document("Warm-up document for the in-process library.", name="warm-up")
    library.ingest_documents("warm-up-in-process", [warm])  # chunker, analyzer, first index: built now
    docs = [text_document(p.text, name=p.id, title=p.title) for p in passages]
    with Stopwatch() as watch:
        report = library.ingest_documents(collection, docs)
    if report.failed:
        raise RuntimeError(f"in-process ingestion failed: {report.failed[:2]}")
    return IngestRun("in-process Library.ingest_documents", 0, 1, report.chunks, watch.seconds, report.seconds, 1, 1)


# load generation ---------------------------------------------------------------------------
Call = Callable[[int, int], Awaitable[None]]  # (request number, client number)


@dataclass
class Level:
    concurrency: int
    requests: int
    seconds: float
    latencies: list[float]
    errors: int
    first_error: str | None
    probes: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "ok": len(self.latencies),
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": self.seconds,
            "qps": len(self.latencies) / self.seconds if self.seconds else float("nan"),
            **latency_summary(self.latencies),
            "probe": latency_summary(self.probes),
        }


async def run_level(call: Call, concurrency: int, requests: int, max_seconds: float) -> Level:
    """`concurrency` clients, each sending its next request when its last one is answered,
    until `requests` were sent or `max_seconds` passed (every client sends at least one)."""
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    started = time.perf_counter()

    async def client(c: int) -> None:
        nonlocal sent
        first = True
        while sent < requests and (first or time.perf_counter() - started < max_seconds):
            first = False
            n = sent
            sent += 1
            t = time.perf_counter()
            try:
                await call(n, c)
            except Exception as exc:  # counted and reported, the level goes on
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(client(c) for c in range(concurrency)))
    seconds = time.perf_counter() - started
    return Level(concurrency, sent, seconds, latencies, len(errors), errors[0] if errors else None)


class ApiCalls:
    """search / ask over HTTP; one httpx.AsyncClient (own connection) per simulated client.
    `probe`: one GET of /docs (an async handler: no thread pool, no database), the time the
    API's event loop takes to serve a trivial request while the level runs."""

    def __init__(self, url: str, collection: str, questions: list[str], timeout_s: float) -> None:
        self.url = url
        self.collection = collection
        self.questions = questions
        self.timeout_s = timeout_s
        self.clients: list[httpx.AsyncClient] = []

    async def open(self, n: int) -> None:
        await self.close()
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.clients = [
            httpx.AsyncClient(base_url=self.url, headers=headers, timeout=self.timeout_s) for _ in range(n + 1)
        ]  # the last one is the probe's

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()
        self.clients = []

    async def probe(self) -> float:
        t = time.perf_counter()
        (await self.clients[-1].get("/docs")).raise_for_status()
        return time.perf_counter() - t

    async def search(self, n: int, c: int) -> None:
        q = self.questions[n % len(self.questions)]
        r = await self.clients[c].post(f"/v1/collections/{self.collection}/search", json={"query": q, "k": 10})
        r.raise_for_status()
        if not r.json()["hits"]:
            raise RuntimeError("no hits")

    async def ask(self, n: int, c: int) -> None:
        q = self.questions[n % len(self.questions)]
        r = await self.clients[c].post(f"/v1/collections/{self.collection}/ask", json={"question": q})
        r.raise_for_status()
        if not r.json()["answer"]:
            raise RuntimeError("empty answer")


class InProcessCalls:
    """The same calls on a Library in this process: search on a pool of `concurrency`
    threads (the callers), ask as concurrent coroutines of one AgentGraph on this loop.
    `probe`: how late this event loop wakes a coroutine from a short sleep (its lag)."""

    def __init__(self, library: Any, collection: str, questions: list[str]) -> None:
        from quarry.agents.graph import AgentGraph
        from quarry.agents.llm.factory import make_chat_model

        self.library = library
        self.collection = collection
        self.questions = questions
        self.graph = AgentGraph(library, model=make_chat_model(library.settings.llm))
        self.pool: ThreadPoolExecutor | None = None

    async def open(self, n: int) -> None:
        await self.close()
        self.pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="bench-search")

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    async def probe(self) -> float:
        t = time.perf_counter()
        await asyncio.sleep(PROBE_SLEEP_S)
        return max(0.0, time.perf_counter() - t - PROBE_SLEEP_S)

    async def search(self, n: int, c: int) -> None:
        q = self.questions[n % len(self.questions)]
        loop = asyncio.get_running_loop()
        hits = await loop.run_in_executor(self.pool, self.library.search, self.collection, q, 10)
        if not hits:
            raise RuntimeError("no hits")

    async def ask(self, n: int, c: int) -> None:
        answer = await self.graph.ask(self.collection, self.questions[n % len(self.questions)])
        if not answer.answer:
            raise RuntimeError("empty answer")


async def measure(
    kind: str, systems: dict[str, Any], levels: list[int], requests: int, max_seconds: float, warmup: int
) -> dict[int, dict[str, Level]]:
    """Every level for every system, the systems' order alternating from level to level."""
    out: dict[int, dict[str, Level]] = {}
    for name, system in systems.items():  # warm-up: index loaded, graph compiled, caches filled
        await system.open(1)
        for i in range(warmup):
            await getattr(system, kind)(10_000 + i, 0)
        await system.close()
        say(f"{kind}: {name} warmed up ({warmup} requests)")
    for i, level in enumerate(levels):
        out[level] = {}
        for name in list(systems)[:: 1 if i % 2 == 0 else -1]:
            system = systems[name]
            await system.open(level)
            stop = asyncio.Event()
            probes: list[float] = []

            async def prober(system: Any = system, stop: asyncio.Event = stop, probes: list[float] = probes) -> None:
                while not stop.is_set():
                    probes.append(await system.probe())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), PROBE_EVERY_S)

            side = asyncio.create_task(prober())
            try:
                result = await run_level(getattr(system, kind), level, max(requests, level), max_seconds)
            finally:
                stop.set()
                await side
                await system.close()
            result.probes = probes
            out[level][name] = result
            s = result.summary()
            say(
                f"{kind} {name:10s} c={level:<3d} {s['ok']} ok / {s['errors']} errors in {s['seconds']:.1f}s: "
                f"{s['qps']:.2f} req/s, p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms"
            )
    return out


def latency_table(kind: str, corpus: str, results: dict[int, dict[str, Level]]) -> list[list[Any]]:
    rows = []
    for level, by_system in results.items():
        api, base = by_system["api"].summary(), by_system["in-process"].summary()
        rows.append(
            [
                level,
                f"{api['ok']}/{api['requests']}",
                f"{api['qps']:.2f}",
                f"{api['p50_ms']:.0f}",
                f"{api['p95_ms']:.0f}",
                f"{base['qps']:.2f}",
                f"{base['p50_ms']:.0f}",
                f"{base['p95_ms']:.0f}",
                f"{api['qps'] / base['qps']:.2f}" if base["qps"] else "-",
                f"{api['probe']['p95_ms']:.0f}",
                f"{base['probe']['p95_ms']:.0f}",
            ]
        )
    print_table(
        f"{kind} over REST vs in-process ({corpus})",
        [
            "clients",
            "API ok/sent",
            "API req/s",
            "API p50 ms",
            "API p95 ms",
            "in-proc req/s",
            "in-proc p50 ms",
            "in-proc p95 ms",
            "API/in-proc req/s",
            "API probe p95 ms",
            "loop lag p95 ms",
        ],
        rows,
    )
    return rows


# main --------------------------------------------------------------------------------------
def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=150, help="SQuAD passages ingested (the search corpus).")
    parser.add_argument("--levels", default="1,8,32", help="Concurrent clients, comma-separated.")
    parser.add_argument(
        "--search-requests", type=int, default=64, help="Search requests per level (at least one per client)."
    )
    parser.add_argument("--ask-requests", type=int, default=8, help="Ask requests per level (at least one per client).")
    parser.add_argument(
        "--max-level-seconds",
        type=float,
        default=6.0,
        help="Stop sending new requests at a level after this long (each client sends one).",
    )
    parser.add_argument("--warmup", type=int, default=2, help="Sequential warm-up requests per system and kind.")
    parser.add_argument("--ingest-jobs", type=int, default=4, help="Ingestion jobs the corpus is split into (API).")
    parser.add_argument("--worker-concurrency", type=int, default=1, help="Pool processes per worker (`-c`).")
    parser.add_argument("--request-timeout", type=float, default=300.0, help="HTTP timeout per request, seconds.")
    parser.add_argument("--skip", default="", help="Comma-separated parts to skip: search, ask, ingest2.")
    args = parser.parse_args()
    quiet_environment()
    apply_threads(args.threads)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}

    passages_all, questions_all = load_squad(args.eval_dir, None, args.seed)
    rng = random.Random(args.seed)
    passages = rng.sample(passages_all, min(args.passages, len(passages_all)))
    ids = {p.id for p in passages}
    questions = [q.text for q in questions_all if q.gold & ids]
    rng.shuffle(questions)
    docs = [{"name": p.id, "text": p.text, "title": p.title} for p in passages]
    say(f"{len(passages)} SQuAD passages, {len(questions)} questions about them")

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started from a shell that ignores SIGINT
    results: dict[str, Any] = {"passages": len(passages), "levels": levels}
    tables: list[Callable[[], Any]] = []
    with temp_data_dir("service") as data_dir:
        stack = Stack(data_dir, args.worker_concurrency, args.threads)
        library = None
        started = time.perf_counter()
        try:
            stack.start()
            stack.start_worker()
            from quarry.core.settings import Settings
            from quarry.retrieval import Library
            from quarry.retrieval.embedder import SentenceEmbedder

            settings = Settings(storage={"data_dir": data_dir})
            embedder = SentenceEmbedder(settings.embedding)  # loads while the service starts
            embedder.encode(["warm-up"])
            stack.wait_healthy(1)
            library = Library(settings, embedder=embedder)  # after the API made the database
            say(f"service up with 1 worker after {time.perf_counter() - started:.1f}s")
            admin = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)

            # ingestion: one worker, in-process --------------------------------------------
            warm = warm_workers(admin, stack, library, args.worker_concurrency)
            say(f"worker warmed up in {warm:.1f}s")
            runs = [api_ingest(admin, stack, library, "svc-1w", docs, args.ingest_jobs)]
            say(f"API ingest, 1 worker: {runs[-1].chunks} chunks in {runs[-1].seconds:.1f}s")
            runs.append(inprocess_ingest(library, "in-process", passages))
            say(f"in-process ingest: {runs[-1].chunks} chunks in {runs[-1].seconds:.1f}s")

            # search and ask on the collection the API ingested ------------------------------
            for kind in ("search", "ask"):
                if kind in skip:
                    continue
                api_calls = ApiCalls(stack.url, "svc-1w", questions, args.request_timeout)
                local = InProcessCalls(library, "svc-1w", questions)
                n = args.search_requests if kind == "search" else args.ask_requests
                out = asyncio.run(
                    measure(
                        kind, {"api": api_calls, "in-process": local}, levels, n, args.max_level_seconds, args.warmup
                    )
                )
                stack.check_alive()
                results[kind] = {str(lv): {s: r.summary() for s, r in by.items()} for lv, by in out.items()}
                tables.append(lambda kind=kind, out=out: latency_table(kind, f"{len(passages)} SQuAD passages", out))

            # ingestion: two workers --------------------------------------------------------
            if "ingest2" not in skip:
                stack.start_worker()
                stack.wait_healthy(2)
                warm = warm_workers(admin, stack, library, 2 * args.worker_concurrency)
                say(f"second worker up and warmed up in {warm:.1f}s")
                runs.append(api_ingest(admin, stack, library, "svc-2w", docs, args.ingest_jobs))
                say(f"API ingest, 2 workers: {runs[-1].chunks} chunks in {runs[-1].seconds:.1f}s")
            admin.close()
        finally:
            say("stopping the stack")
            stack.stop()
            if library is not None:
                library.close()

    base = next(r for r in runs if r.workers == 0)
    results["ingest"] = [
        {
            "system": r.label,
            "workers": r.workers,
            "jobs": r.jobs,
            "chunks": r.chunks,
            "seconds": r.seconds,
            "chunks_per_s": r.rate,
            "vs_in_process": r.rate / base.rate,
            "busy_seconds": r.busy_seconds,
            "worker_processes_used": r.processes_used,
            "most_jobs_at_once": r.most_at_once,
        }
        for r in runs
    ]
    results["total_seconds"] = time.perf_counter() - started
    for table in tables:
        table()
    print_table(
        f"Ingestion through the API vs in-process ({len(passages)} SQuAD passages, {args.ingest_jobs} jobs, "
        f"worker -c {args.worker_concurrency})",
        [
            "system",
            "jobs",
            "processes used",
            "chunks",
            "seconds",
            "chunks/s",
            "vs in-process",
            "busy s",
            "jobs at once",
        ],
        [
            [
                r.label,
                r.jobs,
                r.processes_used,
                r.chunks,
                f"{r.seconds:.1f}",
                f"{r.rate:.1f}",
                f"{r.rate / base.rate:.2f}",
                f"{r.busy_seconds:.1f}",
                r.most_at_once,
            ]
            for r in runs
        ],
    )
    print("  busy s: sum over jobs of the library's own ingest time (timed inside the collection's write lock);")
    print("  jobs at once: most jobs inside that ingest at one moment (1 with two workers: they took turns).")
    say(f"total {results['total_seconds']:.0f}s")
    write_json("service_load", args, results)


if __name__ == "__main__":
    main()
