"""`quarry eval`: QA sets against Quarry and its baselines, side by side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from quarry.cli import JsonOpt, _fail, _library, app, err, out
from quarry.core.errors import QuarryError

_DATASETS = "hotpotqa, squad, musique, leval, needle or jsonl"


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise _fail(f"{what} must be comma-separated integers, got {text!r}", 2) from None
    if not values:
        raise _fail(f"{what} is empty", 2)
    return values


class _Bar:
    """A rich progress bar fed by the runner's progress callback, one task per stage."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description:<7}[/]"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("[dim]{task.fields[detail]}[/]"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not enabled,
        )
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, event: Any) -> None:
        if event.stage in ("load", "report"):
            return
        if event.stage not in self.tasks:
            self.tasks[event.stage] = self.progress.add_task(event.stage, total=event.total, detail="")
        self.progress.update(self.tasks[event.stage], completed=event.done, total=event.total, detail=event.detail)


@app.command("eval")
def eval_command(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help=f"QA set format: {_DATASETS}.")] = None,
    path: Annotated[Path | None, typer.Option("--path", "-p", help="The QA file or folder.")] = None,
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="Corpus (jsonl, hotpotqa): a passages JSONL file or a folder.")
    ] = None,
    collection: Annotated[
        str | None,
        typer.Option("--collection", "-c", help="Ask over this existing collection (default: ingest the corpus)."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Evaluate N questions.")] = None,
    first: Annotated[bool, typer.Option("--first", help="Take the first N questions, not a seeded sample.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample.")] = 0,
    systems: Annotated[
        str | None,
        typer.Option(
            "--systems",
            help="Comma-separated: dense, bm25, hybrid, llamaindex, agent (default: all); a -no-rerank or "
            "-no-reorder suffix adds an ablation (hybrid-no-reorder).",
        ),
    ] = None,
    k: Annotated[str, typer.Option("--k", help="Cut-offs of recall@k, comma-separated.")] = "1,2,5,10",
    reader: Annotated[
        str, typer.Option("--reader", help="extractive (no generative model), or llm (the configured llm.backend).")
    ] = "extractive",
    no_rerank: Annotated[bool, typer.Option("--no-rerank", help="Switch reranking off for every system.")] = False,
    no_reorder: Annotated[bool, typer.Option("--no-reorder", help="Switch reordering off for every system.")] = False,
    fetch: Annotated[int, typer.Option("--fetch", min=1, max=1000, help="Chunk hits fetched per query.")] = 30,
    needle_lengths: Annotated[
        str | None, typer.Option("--needle-lengths", help="Haystack lengths in words (needle).")
    ] = None,
    needle_depths: Annotated[
        str | None, typer.Option("--needle-depths", help="Needle depths in percent (needle).")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Parent folder of run directories (default: <data_dir>/evals).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue the run in this run directory, with its configuration.")
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard the run's earlier results and start over.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate retrieval and answers on a QA set, with baselines side by side.

    Results go to a run directory named by the configuration: running the same eval again
    continues an interrupted run (or re-reports a finished one)."""
    from quarry.evals import EvalConfig, EvalReport, load_config, run_eval
    from quarry.evals.report import rich_tables

    config: Any
    if resume is not None:
        if not (resume / "config.json").is_file():
            raise _fail(f"{resume} is not a run directory (no config.json)", 2)
        try:
            config = load_config(resume)
        except QuarryError as exc:
            raise _fail(str(exc), 2) from None
    else:
        if dataset is None or path is None:
            raise _fail(f"give --dataset ({_DATASETS}) and --path, or --resume RUN_DIR", 2)
        options: dict[str, Any] = {}
        if systems is not None:
            options["systems"] = [s for s in systems.split(",") if s.strip()]
        try:
            config = EvalConfig(
                **options,
                dataset=dataset,
                path=path.resolve(),
                corpus=corpus.resolve() if corpus else None,
                collection=collection,
                limit=limit,
                first=first,
                seed=seed,
                ks=_ints(k, "--k") or [],
                reader=reader,
                rerank=not no_rerank,
                reorder=not no_reorder,
                fetch=fetch,
                needle_lengths=_ints(needle_lengths, "--needle-lengths"),
                needle_depths=_ints(needle_depths, "--needle-depths"),
            )
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
            raise _fail(f"invalid eval options: {problems}", 2) from None
    library = _library()
    bar = _Bar(not as_json and (err.is_terminal or os.environ.get("QUARRY_PROGRESS") == "1"))
    try:
        with bar.progress:
            report: EvalReport = run_eval(
                config, library=library, out=out_dir, run_dir=resume, fresh=fresh, on_progress=bar
            )
    except QuarryError as exc:
        raise _fail(str(exc)) from None
    finally:
        library.close()
    if as_json:
        out.print_json(report.model_dump_json())
        return
    for table in rich_tables(report):
        out.print(table)
    for note in report.notes:
        err.print(f"[dim]note: {note}[/]", highlight=False)
    for error in report.errors[:5]:
        err.print(f"[red]error[/] {error['system']} / {error['item']}: {error['error']}", highlight=False)
    out.print(f"report: {Path(report.run_dir) / 'report.md'} (and report.json, items.jsonl)", highlight=False)
