"""The `quarry` command line."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from quarry.core.errors import QuarryError

app = typer.Typer(
    name="quarry",
    help="Quarry: cited answers over large document collections.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _library() -> Any:
    from pydantic import ValidationError

    from quarry.core.settings import get_settings

    try:
        get_settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid settings: {problems}", 2) from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # no progress bars or info logs from transformers, set for when (if) it is imported: importing
    # it here would cost a second of every command that needs no model
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from quarry.retrieval import Library

    return Library()


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(Text("error: ", style="bold red") + Text(message), highlight=False)
    return typer.Exit(code)


class _RateColumn(ProgressColumn):
    """Items per second of a task field (or of the task's own progress)."""

    def __init__(self, field: str | None, unit: str) -> None:
        super().__init__()
        self.field, self.unit = field, unit

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        done = task.fields.get(self.field, 0) if self.field else task.completed
        rate = done / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.1f} {self.unit}/s", style="cyan")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursive).")],
    collection: CollectionOpt,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            help="Only files matching this glob (repeatable). Without '/' it matches file names ('*.md'), "
            "with '/' paths inside the folder given ('guide/*.md', 'img/').",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Leave out files matching this glob (repeatable).")
    ] = None,
    skip_unsupported: Annotated[
        bool,
        typer.Option(
            "--skip-unsupported", help="Skip files of unsupported types (images, CSS, ...) instead of failing them."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Ingest files and folders into a collection (created if missing)."""
    from quarry.retrieval.loaders import iter_files

    try:
        found = list(iter_files(list(paths), include or (), exclude or ()))
    except FileNotFoundError as exc:
        raise _fail(str(exc), 2) from None
    total = len(found)
    given = {source: str(path) for path, source in found}  # paths as the user gave them
    library = _library()
    progress = Progress(
        TextColumn("[bold]ingest[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} files"),
        TextColumn("{task.fields[chunks]} chunks"),
        _RateColumn(None, "docs"),
        _RateColumn("chunks", "chunks"),
        TimeElapsedColumn(),
        console=err,
        transient=as_json,
        disable=as_json or not err.is_terminal and os.environ.get("QUARRY_PROGRESS") != "1",
    )
    try:
        with progress:
            task = progress.add_task("ingest", total=total, chunks=0)
            report = library.ingest_paths(
                collection,
                list(paths),
                on_progress=lambda p: progress.update(task, completed=p.items_done, chunks=p.chunks_done),
                include=include or (),
                exclude=exclude or (),
                skip_unsupported=skip_unsupported,
            )
    except QuarryError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        out.print_json(report.model_dump_json())
    else:
        rate = report.chunks / report.seconds if report.seconds else 0.0
        out.print(
            f"[green]{len(report.added)} added[/], {len(report.replaced)} replaced, "
            f"{len(report.unchanged)} unchanged, {len(report.skipped)} skipped, [red]{len(report.failed)} failed[/]; "
            f"{report.chunks} chunks in {report.seconds:.1f}s ({rate:,.0f} chunks/s) "
            f"into collection [bold]{collection}[/]",
            highlight=False,
        )
        if report.skipped:
            kinds = Counter(Path(s.source).suffix.lower() or "(no extension)" for s in report.skipped)
            listed = ", ".join(f"{k} ({n})" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
            err.print(f"skipped {len(report.skipped)} files of unsupported types: {listed}", highlight=False)
        for failure in report.failed:
            err.print(
                Text("failed: ", style="red") + Text(_as_given(failure.source, failure.error, given)), highlight=False
            )
        if any("unsupported file type" in f.error for f in report.failed):
            err.print("hint: --skip-unsupported skips such files; --include/--exclude select files by glob")
    if report.failed:
        raise typer.Exit(1)


def _as_given(source: str, error: str, given: dict[str, str]) -> str:
    """An error about `source` naming the file as the user gave its path (`docs/img/a.png`
    for `quarry ingest docs`, `../x/a.png` for `quarry ingest ../x/a.png`)."""
    base, record = (source.split("#", 1) + [""])[:2]
    path = given.get(base)
    if path is None or not error.startswith(source):
        return error
    return path + (f"#{record}" if record else "") + error[len(source) :]


@app.command()
def collections(as_json: JsonOpt = False) -> None:
    """List collections."""
    infos = _library().collections()
    if as_json:
        out.print_json(json.dumps([i.model_dump(mode="json") for i in infos]))
        return
    table = Table("name", "documents", "chunks", "index", "created")
    for i in infos:
        table.add_row(i.name, str(i.document_count), str(i.chunk_count), i.index_kind, f"{i.created_at:%Y-%m-%d %H:%M}")
    out.print(table)


@app.command()
def documents(collection: CollectionOpt, as_json: JsonOpt = False) -> None:
    """List a collection's documents with their status."""
    try:
        docs = _library().documents(collection)
    except QuarryError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps([d.model_dump(mode="json") for d in docs]))
        return
    table = Table("id", "source", "title", "status", "chunks", "error")
    for d in docs:
        status = f"[green]{d.status}[/]" if d.status == "indexed" else f"[red]{d.status}[/]"
        table.add_row(str(d.id), Text(d.source), Text(d.title[:40]), status, str(d.chunk_count), Text(d.error or ""))
    out.print(table)


def _hit_json(hit: Any) -> dict[str, Any]:
    return dict(hit.model_dump(mode="json"))


@app.command()
def search(
    collection: CollectionOpt,
    query: Annotated[str | None, typer.Argument(help="The query (or use --queries).")] = None,
    k: Annotated[int | None, typer.Option("-k", min=1, max=1000, help="Number of hits (search.default_k).")] = None,
    queries: Annotated[
        Path | None, typer.Option("--queries", help="File with one query per line ('-' for stdin); JSON lines out.")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="hybrid, dense, sparse or graph (default: search.mode, hybrid).")
    ] = None,
    document: Annotated[list[int] | None, typer.Option("--document", help="Only these document ids.")] = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="Only sources matching (* wildcard).")] = None,
    no_rerank: Annotated[bool, typer.Option("--no-rerank", help="Skip the configured reranker.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Search a collection with hybrid retrieval."""
    if (query is None) == (queries is None):
        raise _fail("give either a query or --queries FILE", 2)
    if mode not in (None, "hybrid", "dense", "sparse", "graph"):
        raise _fail(f"unknown mode {mode!r}: use hybrid, dense, sparse or graph", 2)
    library = _library()
    try:
        if queries is not None:
            lines = sys.stdin.read().splitlines() if str(queries) == "-" else queries.read_text().splitlines()
            for line in lines:
                if not line.strip():
                    continue
                started = time.perf_counter()
                hits = library.search(collection, line, k, document, source, mode, rerank=not no_rerank)
                record = {
                    "query": line,
                    "hits": [_hit_json(h) for h in hits],
                    "ms": round(1000 * (time.perf_counter() - started), 2),
                }
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        assert query is not None
        hits = library.search(collection, query, k, document, source, mode, rerank=not no_rerank)
    except OSError as exc:
        raise _fail(f"cannot read {queries}: {exc.strerror}", 2) from None
    except QuarryError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps({"query": query, "hits": [_hit_json(h) for h in hits]}, ensure_ascii=False) + "\n")
        return
    if not hits:
        out.print("no hits")
    for h in hits:
        where = f"{h.document} [{h.start_char}:{h.end_char}]"
        out.print(f"[bold]{h.rank}.[/] [cyan]{where}[/]  score {h.score:.4f} ({h.score_kind})", highlight=False)
        if h.heading:
            out.print(f"   [dim]{h.heading}[/]", highlight=False, markup=True)
        snippet = " ".join(h.text.split())
        out.print(Text("   " + (snippet[:400] + ("…" if len(snippet) > 400 else ""))))


@app.command()
def delete(
    collection: CollectionOpt,
    document: Annotated[str | None, typer.Option("--document", "-d", help="Document id or source name.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm deleting a whole collection.")] = False,
) -> None:
    """Delete a document (with --document) or a whole collection (with --yes)."""
    library = _library()
    try:
        if document is not None:
            info = library.delete_document(collection, document)
            out.print(f"deleted document {info.id} ({info.source}) from {collection}", highlight=False)
            return
        if not yes:
            raise _fail(f"deleting collection {collection!r} removes all its documents: add --yes", 2)
        library.delete_collection(collection)
        out.print(f"deleted collection {collection}", highlight=False)
    except QuarryError as exc:
        raise _fail(str(exc)) from None


def main() -> None:
    import quarry.cli.ask  # noqa: F401  (registers `ask` and `research`)
    import quarry.cli.db  # noqa: F401  (registers `db upgrade` and `db current`)
    import quarry.cli.eval  # noqa: F401  (registers `eval`)
    import quarry.cli.serve  # noqa: F401  (registers `serve`, `api` and `worker`)

    app()
