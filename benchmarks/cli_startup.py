"""How long quick CLI commands take from a cold process: `quarry --help`, `collections`,
`search` and `ask` as subprocesses, on a small collection in a temporary data directory.

Every command is a fresh `python -m quarry.cli ...` process, so the time includes Python's
start, imports, settings, opening the collection and (for search and ask) embedding the query:
what a user waits for at the prompt. Wall time (the median) is what the user waits; CPU time
(user + system of the process) is near what it would be on an idle machine.

`--env KEY=VALUE` (repeatable) sets settings for every command (e.g. `--env
QUARRY_EMBEDDING__BACKEND=onnx`, or `--env PYTHONPATH=...` to time an older checkout);
`--label` names the run, and `--compare results/cli_startup-<label>.json` prints an earlier
run's medians beside this one's.
"""

from __future__ import annotations

import json
import os
import resource
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


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one `python -m quarry.cli` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "quarry.cli", *argv], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"quarry {' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
        cpu: dict[str, list[float]] = {name: [] for name in commands("")}
        for i in range(args.repeats):
            for name, argv in commands(questions[i % len(questions)].text).items():
                wall, used = run(argv, env)
                times[name].append(wall)
                cpu[name].append(used)
    medians = {name: statistics.median(t) for name, t in times.items()}
    cpu_medians = {name: statistics.median(t) for name, t in cpu.items()}
    earlier: dict[str, Any] = {}
    if args.compare is not None:
        earlier = json.loads(args.compare.read_text())["results"]
    columns = ["command", f"{args.label} wall s", f"{args.label} CPU s", "min wall s"]
    if earlier:
        old = args.compare.stem.removeprefix("cli_startup-")
        columns[1:1] = [f"{old} wall s", f"{old} CPU s"]
    rows = []
    for name, t in times.items():
        row: list[Any] = [f"quarry {name}", medians[name], cpu_medians[name], min(t)]
        if earlier:
            row[1:1] = [earlier["median_s"].get(name, float("nan")), earlier["cpu_median_s"].get(name, float("nan"))]
        rows.append(row)
    print_table(
        f"CLI start-up, {args.repeats} runs each (target: search and ask under {TARGET_S:.0f} s)", columns, rows
    )
    write_json(
        f"cli_startup-{args.label}",
        args,
        {
            "median_s": medians,
            "cpu_median_s": cpu_medians,
            "runs_s": times,
            "cpu_s": cpu,
            "env": args.env,
            "target_s": TARGET_S,
        },
    )


if __name__ == "__main__":
    main()
