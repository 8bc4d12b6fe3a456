"""How long quick CLI commands take from a cold process: `quarry --help`, `collections`,
`search` and `ask` as subprocesses, on a small collection in a temporary data directory.

Every command is a fresh `python -m quarry.cli ...` process, so the time includes Python's
start, imports, settings, opening the collection and (for search and ask) embedding the query:
what a user waits for at the prompt. `--env KEY=VALUE` (repeatable) sets settings for every
timed command (e.g. `--env QUARRY_EMBEDDING__BACKEND=onnx`); `--label` names the run, and
`--compare results/cli_startup-<label>.json` prints an earlier run's medians beside this one's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, base_parser, load_squad, print_table, say, temp_data_dir, write_json

TARGET_S = 2.0


def commands(question: str) -> dict[str, list[str]]:
    return {
        "--help": ["--help"],
        "collections": ["collections"],
        "search": ["search", question, "-c", "bench", "-k", "5"],
        "ask": ["ask", question, "-c", "bench"],
    }


def run(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "quarry.cli", *argv], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"quarry {' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=40, help="SQuAD passages in the collection.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs of each command (median kept).")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for every timed command.")
    parser.add_argument("--label", default="current", help="Name of this run (in the JSON file name).")
    parser.add_argument("--compare", type=Path, default=None, help="An earlier run's JSON to print beside.")
    args = parser.parse_args()
    if args.output is None:
        args.output = RESULTS_DIR / f"cli_startup-{args.label}.json"

    passages, questions = load_squad(args.eval_dir, 5, args.seed)
    with temp_data_dir("cli") as data_dir:
        env = dict(os.environ, QUARRY_STORAGE__DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1")
        docs = data_dir / "docs"
        docs.mkdir()
        for p in passages[: args.passages]:
            (docs / f"{p.id}.txt").write_text(f"{p.title}\n\n{p.text}")
        for item in args.env:
            key, _, value = item.partition("=")
            env[key] = value
        say(f"ingesting {args.passages} passages")
        run(["ingest", str(docs), "-c", "bench"], env)
        run(["search", "warm the page cache", "-c", "bench"], env)
        times: dict[str, list[float]] = {name: [] for name in commands("")}
        for i in range(args.repeats):
            for name, argv in commands(questions[i % len(questions)].text).items():
                times[name].append(run(argv, env))
    medians = {name: statistics.median(t) for name, t in times.items()}
    earlier: dict[str, Any] = {}
    if args.compare is not None:
        earlier = json.loads(args.compare.read_text())["results"]["median_s"]
    columns = ["command", f"{args.label} s (median)", "min s"]
    if earlier:
        columns.insert(1, f"{args.compare.stem.removeprefix('cli_startup-')} s (median)")
    rows = []
    for name, t in times.items():
        row: list[Any] = [f"quarry {name}", medians[name], min(t)]
        if earlier:
            row.insert(1, earlier.get(name, float("nan")))
        rows.append(row)
    print_table(
        f"CLI start-up, {args.repeats} runs each (target: search and ask under {TARGET_S:.0f} s)", columns, rows
    )
    write_json(
        f"cli_startup-{args.label}",
        args,
        {"median_s": medians, "runs_s": times, "env": args.env, "target_s": TARGET_S},
    )


if __name__ == "__main__":
    main()
