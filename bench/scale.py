"""Benchmark: the main job (`robust-data curate`) at growing dataset sizes, real images.

``--source fashion-mnist`` (issue 32): real Fashion-MNIST from its IDX files (Debian's
``dataset-fashion-mnist``, /usr/share/datasets/fashion-mnist, or ``--fashion-root``), read
by the project's ``fashion-mnist`` source, its own train/test split kept: at 70,000 every
image (60,000 train / 10,000 test), below a seeded subset with the same 6:1 share of each
split. Nothing is copied or shifted.

``--source digits`` (the default, issue 14): for each size the bundled MNIST subset
(mnist-5k, 5,000 real digits) gives the images: a seeded subset below 5,000; above, all
5,000 plus copies of seeded random originals, each shifted by a seeded 1-2 pixel translation
(so copies are not exact duplicates). Splits are seeded too (test: 400 / 1,000 / 5,000 /
10,000 for 2k / 5k / 15k / 60k, else a fifth).

Either way the images go to a Parquet file and through the whole job in a fresh home, one
process; the run records wall time per stage (from the Dagster instance), seconds per 1,000
images, user and system CPU time and peak RSS of the job's process.

Copies share their original's digit, so above 5k a test image can be a shifted copy of a
training image: accuracies there are optimistic; the timings are what this measures.

Prints and appends to bench/RESULTS.md. Run: .venv/bin/python bench/scale.py
(issue 32: --source fashion-mnist --sizes 5000,15000,70000 --seeds 1)
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from results import cpu_model, record

from robust_data.ingest.arrays import decode_samples
from robust_data.ingest.build import ingest

TEST_SIZES = {2000: 400, 5000: 1000, 15000: 5000, 60000: 10000}
PROJECT = Path(__file__).resolve().parents[1]


def fashion(
    size: int, seed: int, root: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(size, 28, 28) uint8 images, labels and splits of real Fashion-MNIST, its own splits.

    Read by the ``fashion-mnist`` source (``root`` None: its default, Debian's package folder).
    All 70,000 at ``size`` 70,000; below, a seeded subset of each split in the 6:1 share of
    the full dataset (5,000: 4,286 train / 714 test).
    """
    data = decode_samples(
        ingest("fashion-mnist", root=None if root is None else str(root), name="fashion").samples
    )
    pixels = np.round(data.images[:, 0] * 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    parts = []
    for split in ("train", "test"):
        rows = np.flatnonzero(data.splits == split)
        share = round(size * len(rows) / 70000)
        index = rows[np.sort(rng.permutation(len(rows))[:share])]
        parts.append((pixels[index], data.labels[index], np.full(len(index), split, dtype=object)))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]


def digits(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(size, 28, 28) uint8 images, (size,) labels and (size,) splits from real MNIST digits."""
    data = decode_samples(ingest("mnist-5k", name="mnist-5k").samples)
    pixels = np.round(data.images[:, 0] * 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    if size <= len(pixels):
        index = rng.permutation(len(pixels))[:size]
        images, labels = pixels[index], data.labels[index]
    else:
        extra = rng.integers(0, len(pixels), size - len(pixels))
        shifts = rng.choice([-2, -1, 1, 2], size=(len(extra), 2))
        copies = np.stack(
            [np.roll(pixels[i], tuple(s), axis=(0, 1)) for i, s in zip(extra, shifts, strict=True)]
        )
        images = np.concatenate([pixels, copies])
        labels = np.concatenate([data.labels, data.labels[extra]])
    splits = np.full(size, "train", dtype=object)
    splits[rng.permutation(size)[: TEST_SIZES.get(size, size // 5)]] = "test"
    return images, labels, splits


def write_dataset(
    path: Path, size: int, seed: int, source: str = "digits", root: Path | None = None
) -> dict[str, int]:
    """The dataset as a Parquet file of PNG images; returns its split counts."""
    if source == "fashion-mnist":
        images, labels, splits = fashion(size, seed, root)
    else:
        images, labels, splits = digits(size, seed)
    pngs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    table = pa.table({"image": pngs, "label": labels.astype(np.int64), "split": splits.astype(str)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return {s: int((splits == s).sum()) for s in ("train", "test")}


def stage_windows(dagster_home: Path) -> dict[str, tuple[float, float]]:
    """(start, end) Unix times of each step of the newest run in the instance."""
    from dagster import DagsterEventType, DagsterInstance

    instance = DagsterInstance.from_config(str(dagster_home))
    run = instance.get_runs(limit=1)[0]
    starts, seconds = {}, {}
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            seconds[event.step_key] = (starts[event.step_key], entry.timestamp)
    instance.dispose()
    return seconds


class RssSampler:
    """Samples a process's resident set size (VmRSS, GB) every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self._stop.wait(self.interval):
            try:
                line = next(x for x in status.read_text().splitlines() if x.startswith("VmRSS"))
            except (OSError, StopIteration):
                return
            self.samples.append((time.time(), int(line.split()[1]) / 2**20))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> float:
        """Largest sampled RSS (GB) between two Unix times; 0 when none was sampled."""
        return max((rss for t, rss in self.samples if start <= t <= end), default=0.0)


def run_job(
    root: Path, size: int, seed: int, seeds: int | None, kind: str, fashion_root: Path | None
) -> dict[str, object]:
    """Build the dataset, run the main job in a fresh home, measure it."""
    name = f"{'fashion' if kind == 'fashion-mnist' else 'mnist'}-scale-{size}"
    source = root / "data" / f"{name}.parquet"
    counts = write_dataset(source, size, seed, kind, fashion_root)
    home = root / f"home-{size}"
    shutil.rmtree(home, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [
        str(Path(sys.executable).parent / "robust-data"),
        "curate",
        "--home",
        str(home),
        "--dataset",
        f"parquet:{source}",
        "--name",
        name,
        *(["--seeds", str(seeds)] if seeds else []),
    ]
    log = root / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT)
        sampler = RssSampler(process.pid)
        code = process.wait()
        sampler.stop()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code:
        raise SystemExit(f"curate failed for {size} images (exit {code}); see {log}")
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    windows = stage_windows(home / "dagster")
    return {
        "size": size,
        **counts,
        "wall": wall,
        "user": user,
        "sys": system,
        "rss_gb": after.ru_maxrss / 2**20,  # KiB; the largest child so far (sizes ascend)
        "stages": {step: end - start for step, (start, end) in windows.items()},
        "stage_rss": {step: sampler.peak(*window) for step, window in windows.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("digits", "fashion-mnist"), default="digits")
    parser.add_argument(
        "--fashion-root", type=Path, default=None, help="IDX files (default: the source's)"
    )
    parser.add_argument("--sizes", default="2000,5000,15000,60000", help="comma-separated")
    parser.add_argument("--root", default="/tmp/robust-data-scale", help="data and homes")
    parser.add_argument("--seed", type=int, default=0, help="seed of subsets, copies, splits")
    parser.add_argument(
        "--seeds", type=int, default=None, help="training seeds per model (default: curate's)"
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    root = Path(args.root)
    results = []
    for size in sizes:
        result = run_job(root, size, args.seed, args.seeds, args.source, args.fashion_root)
        results.append(result)
        print(
            f"{size:,} images: {result['wall']:.0f} s, user {result['user']:.0f} s, sys "
            f"{result['sys']:.0f} s, peak RSS {result['rss_gb']:.2f} GB; "
            + ", ".join(
                f"{k} {v:.0f} s / {result['stage_rss'][k]:.2f} GB"
                for k, v in result["stages"].items()
            ),
            flush=True,
        )
    stages = list(dict.fromkeys(k for r in results for k in r["stages"]))
    base = next((r for r in results if r["size"] == 5000), results[0])
    base_rate = base["wall"] / base["size"] * 1000
    rows = [
        [
            f"{r['size']:,}",
            f"{r['train']:,} / {r['test']:,}",
            f"{r['wall']:.0f}",
            f"{r['wall'] / r['size'] * 1000:.1f} ({r['wall'] / r['size'] * 1000 / base_rate:.2f}x)",
            f"{r['user']:.0f} / {r['sys']:.0f} ({r['sys'] / r['user']:.1%})",
            f"{r['rss_gb']:.2f}",
            *(
                f"{r['stages'].get(s, float('nan')):.0f} / {r['stage_rss'].get(s, 0.0):.2f}"
                for s in stages
            ),
        ]
        for r in results
    ]
    record(
        "Main job at growing dataset sizes",
        f"`python bench/scale.py --source {args.source} --sizes {args.sizes}"
        + (f" --seeds {args.seeds}" if args.seeds else "")
        + "`: `robust-data curate` (the whole graph, "
        + (
            "defaults"
            if not args.seeds
            else f"defaults but {args.seeds} training seed(s) per model"
        )
        + ", one process) in a fresh home per size; "
        + (
            f"real Fashion-MNIST, its own splits, seeded subsets below 70,000 (seed {args.seed})"
            if args.source == "fashion-mnist"
            else f"real MNIST digits of mnist-5k, above 5,000 with seeded 1-2 pixel shifted "
            f"copies (seed {args.seed})"
        )
        + f"; {os.cpu_count()} cores, "
        f"{cpu_model()}. s/1k: wall seconds per 1,000 images (ratio to the 5k run). Peak RSS: "
        "the job process. Stage columns: wall seconds / peak sampled RSS "
        "(GB, every 0.5 s) per step.",
        [
            "images",
            "train / test",
            "wall s",
            "s/1k images",
            "user / sys s",
            "peak RSS GB",
            *stages,
        ],
        rows,
        _summary(results, base_rate),
    )


def _summary(results: list[dict], base_rate: float) -> str:
    """Growth of seconds per 1,000 images against the 5k run, and CPU time in the kernel."""
    largest = results[-1]
    growth = largest["wall"] / largest["size"] * 1000 / base_rate
    user = sum(r["user"] for r in results)
    system = sum(r["sys"] for r in results)
    return (
        f"Seconds per 1,000 images at {largest['size']:,}: {growth:.2f}x the 5k run (target "
        f"<= 1.2x); peak RSS there {largest['rss_gb']:.2f} GB (target <= 4 GB); system "
        f"time {system / user:.1%} of user time over all runs (target <= 10%)."
    )


if __name__ == "__main__":
    main()
