"""Benchmark: wall time of ``robust-data report`` and what it imports, per code checkout.

Runs the command (a fresh interpreter each time, so every import counts) on a home where a
curation run stored a report, once per checkout given, and records the median of the runs,
the import time ``python -X importtime`` adds up, and whether torch / torch._inductor loaded.
The first checkout is the baseline (e.g. ``git archive`` of the commit before a change).

Run: .venv/bin/python bench/report_startup.py --home HOME --dataset digits BEFORE_TREE AFTER_TREE
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from results import cpu_model, record

PROBE = (
    "import sys\n"
    "from pipelines.cli import main\n"
    "main(['report', {dataset!r}, '--home', {home!r}])\n"
    "print('loaded', 'torch' in sys.modules, 'torch._inductor' in sys.modules, file=sys.stderr)\n"
)


def measure(tree: str, home: str, dataset: str, runs: int) -> tuple[float, float, str]:
    """Median wall seconds of ``runs`` commands, then one more under ``-X importtime``: its
    summed import seconds, and whether torch and torch._inductor loaded."""
    env = {**os.environ, "PYTHONPATH": tree}
    command = [sys.executable, "-c", PROBE.format(dataset=dataset, home=home)]
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
    timed = [command[0], "-X", "importtime", *command[1:]]
    lines = subprocess.run(timed, env=env, capture_output=True, text=True, check=True)
    stderr = lines.stderr.splitlines()
    imported = sum(
        int(line.split("|")[0].split(":")[1])
        for line in stderr
        if line.startswith("import time:") and "self [us]" not in line
    )
    loaded = next(line for line in stderr if line.startswith("loaded ")).split()[1:]
    return statistics.median(walls), imported / 1e6, ", ".join(loaded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="code checkouts; the first is the baseline")
    parser.add_argument("--home", required=True)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = [measure(tree, args.home, args.dataset, args.runs) for tree in args.trees]
    base = results[0][0]
    rows = [
        [tree, f"{wall:.2f}", f"{imports:.2f}", loaded, f"{base / wall:.1f}x"]
        for tree, (wall, imports, loaded) in zip(args.trees, results, strict=True)
    ]
    record(
        "robust-data report start-up",
        f"`python bench/report_startup.py --home HOME --dataset {args.dataset} TREES`: the "
        f"command on a stored report ({args.dataset}, 2 seeds), median of {args.runs} runs in "
        f"fresh interpreters, page cache warm; {cpu_model()}.",
        ["code", "wall s", "import s", "torch, torch._inductor loaded", "speed-up"],
        rows,
        f"Baseline: {args.trees[0]}.",
    )


if __name__ == "__main__":
    main()
