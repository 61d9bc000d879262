"""Benchmark: the main job with one worker against two on this machine's cores.

Runs ``robust-data curate`` on one dataset, each arm in a fresh home, one after the other:

- ``--workers 1`` (the baseline: every step in the command's process, all cores);
- ``--workers 2 --shards 2``, each step process given half the cores (``OMP_NUM_THREADS``
  set by the command: pipelines.cli.launch.worker_threads);
- ``--workers 2 --shards 2`` with ``OMP_NUM_THREADS`` set to all the cores, as before the
  command divided them (each worker takes every core);
- the same with ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning,
  so two oversubscribed step processes do not burn each other's cores).

Records wall seconds, user and system CPU seconds (of the command and its children) and the
ratio to the baseline in bench/RESULTS.md.
Run: .venv/bin/python bench/workers.py --dataset mnist-5k --seeds 1
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import cpu_model, record

ARMS = (
    ("--workers 1 (baseline)", ["--workers", "1"], {}),
    ("--workers 2, cores divided", ["--workers", "2", "--shards", "2"], {}),
    (
        "--workers 2, each with every core",
        ["--workers", "2", "--shards", "2"],
        {"OMP_NUM_THREADS": str(os.cpu_count()), "MKL_NUM_THREADS": str(os.cpu_count())},
    ),
    (
        "--workers 2, each with every core, passive OpenMP waits",
        ["--workers", "2", "--shards", "2"],
        {
            "OMP_NUM_THREADS": str(os.cpu_count()),
            "MKL_NUM_THREADS": str(os.cpu_count()),
            "OMP_WAIT_POLICY": "PASSIVE",
        },
    ),
)


def run(
    dataset: str, seeds: int, flags: list[str], env: dict[str, str]
) -> tuple[float, float, float]:
    """Wall, user and system seconds of one ``curate`` in a fresh home."""
    command = str(Path(sys.executable).parent / "robust-data")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as home:
        start = time.perf_counter()
        subprocess.run(
            [
                command,
                "curate",
                "--dataset",
                dataset,
                "--seeds",
                str(seeds),
                "--home",
                home,
                *flags,
            ],
            env={**{k: v for k, v in os.environ.items() if k not in env}, **env},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument(
        "--arms", default="0,1,2", help="which arms, by index (0: the baseline, always run)"
    )
    args = parser.parse_args()
    chosen = sorted({0, *(int(i) for i in args.arms.split(","))})
    rows, walls = [], []
    for name, flags, env in (ARMS[i] for i in chosen):
        wall, user, system = run(args.dataset, args.seeds, flags, env)
        walls.append(wall)
        rows.append(
            [name, f"{wall:.1f}", f"{user:.1f}", f"{system:.1f}", f"{wall / walls[0]:.2f}x"]
        )
        print(rows[-1], flush=True)
    summary = (
        f"`robust-data curate --dataset {args.dataset} --seeds {args.seeds}` in a fresh home per "
        f"arm, one after the other, on {cpu_model()}. Ratio: wall time against the one-worker "
        "run of the same session (below 1.00x is faster)."
    )
    record(
        "curate --workers 1 against 2",
        f"`.venv/bin/python bench/workers.py --dataset {args.dataset} --seeds {args.seeds} "
        f"--arms {','.join(map(str, chosen))}`",
        ["arm", "wall s", "user s", "system s", "wall vs --workers 1"],
        rows,
        summary,
    )


if __name__ == "__main__":
    main()
