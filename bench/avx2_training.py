"""Benchmark: training on oneDNN's AVX2 kernels (a CPU without AVX-512), issue 28.

On a CPU whose best instruction set is AVX2, oneDNN's weight gradient of a 1x1 convolution
(``jit_avx2_1x1_convolution_bwd_weights_t``, torch 2.14.1) hangs or corrupts the heap; on an
AVX-512 machine ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` (set before torch loads)
takes the same path. Every run below is a fresh process with a timeout.

- ``crash``: the ResNet (width 4, 24 and 256 images of 3x32x32, batch 8, one epoch, fp32: the
  shape of tests/scoring/test_models.py::test_resnet_and_simple_cnn_fit_any_shape) and the
  simple CNN
  on the emulated AVX2 path, idle (default threads), with ``OMP_NUM_THREADS=1`` and with every
  core busy (a niced spinner per core): runs finished of runs tried, seconds per finished run,
  how the others ended (timeout, signal), and whether the loss went down.
- ``cost``: training seconds of the ResNet and the simple CNN on the native ISA and on the
  emulated AVX2 one, for each way round the kernel: oneDNN as the product leaves it, oneDNN
  forced on (the original code), oneDNN off for the whole training, ``ONEDNN_MAX_CPU_ISA=AVX``
  set before torch loads. Median of --repeat runs, interleaved; ratios against oneDNN on.
- ``agree``: one ResNet (trained natively, saved) scored with RPR and predicted in a process
  on the native path and in one on the emulated AVX2 path: logits and scores compared.

Prints and appends to bench/RESULTS.md (``--no-record`` only prints). Run:
.venv/bin/python bench/avx2_training.py [--parts crash,cost,agree] [--tries 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from results import cpu_model, record

#: Environment that makes oneDNN (and ATen) use their AVX2 kernels on an AVX-512 machine.
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
LOADS = {"idle": {}, "one thread": {"OMP_NUM_THREADS": "1"}, "every core busy": {}}


def learnable(n: int, shape: tuple[int, int, int], classes: int = 4):
    """``n`` seeded images whose class is a bright quadrant (so the loss can go down)."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.random((n, *shape), dtype=np.float32) * 0.5
    labels = np.arange(n) % classes
    half_h, half_w = shape[1] // 2, shape[2] // 2
    for k in range(classes):
        row, col = divmod(k, 2)
        images[
            labels == k, :, row * half_h : (row + 1) * half_h, col * half_w : (col + 1) * half_w
        ] += 0.5
    return images, labels


def mean_loss(model, images, labels) -> float:
    """Cross-entropy over the whole set, batch statistics (train mode), no gradient."""
    import torch

    model.train()
    with torch.no_grad():
        logits = model(torch.from_numpy(images))
        return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)))


def child(args: argparse.Namespace) -> None:
    """Train one model as asked and print one JSON line (run in a fresh process)."""
    import torch

    from robust_data.scoring import models, training

    if args.onednn == "on" and hasattr(training, "onednn_training_guard"):
        training.onednn_training_guard = lambda model, device: contextlib.nullcontext(False)
    shape = tuple(int(v) for v in args.shape.split(","))
    images, labels = learnable(args.images, shape)
    config = models.ModelOptions(
        arch=args.arch,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch,
        precision="fp32",
    )
    before = mean_loss(models.build_model(config, shape, 4), images, labels)
    torch.backends.mkldnn.enabled = args.onednn != "off"
    trained = training.train_model(
        config, images, labels, 4, device="cpu", progress=False, evaluate=False
    )
    torch.backends.mkldnn.enabled = True
    finite = all(bool(torch.isfinite(p).all()) for p in trained.model.parameters())
    after = mean_loss(trained.model, images, labels)
    print(
        json.dumps(
            {"seconds": trained.train_seconds, "before": before, "after": after, "finite": finite}
        )
    )


def run_child(argv: list[str], env: dict[str, str], timeout: float) -> dict:
    """One fresh process: its JSON line, or how it ended (``timeout`` or the signal's name)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *argv],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"end": "timeout", "wall": time.perf_counter() - started}
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        end = (
            signal.Signals(-proc.returncode).name
            if proc.returncode < 0
            else f"exit {proc.returncode}"
        )
        tail = (err.strip().splitlines() or [""])[-1][:120]
        return {"end": end, "wall": wall, "stderr": tail}
    return {"end": "ok", "wall": wall, **json.loads(out.strip().splitlines()[-1])}


@contextlib.contextmanager
def spinners(count: int) -> Iterator[None]:
    """``count`` busy-looping processes at nice 19 for the duration (or until this one ends)."""
    spin = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    sum(range(10**5))"
    procs = [
        subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", spin]) for _ in range(count)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def crash(tries: int, timeout: float, rows: list[list[str]]) -> None:
    """Fill ``rows`` with finished/tried per architecture, size and load, emulated AVX2."""
    for arch, images in (("resnet", 24), ("resnet", 256), ("simple_cnn", 24), ("simple_cnn", 256)):
        argv = [
            "--arch",
            arch,
            "--images",
            str(images),
            "--width",
            "4",
            "--batch",
            "8",
            "--epochs",
            "1",
        ]
        for load, env in LOADS.items():
            busy = (
                spinners(os.cpu_count() or 1)
                if load == "every core busy"
                else contextlib.nullcontext()
            )
            with busy:
                results = [run_child(argv, {**AVX2, **env}, timeout) for _ in range(tries)]
            done = [r for r in results if r["end"] == "ok"]
            ends = [r["end"] for r in results if r["end"] != "ok"]
            lower = sum(r["after"] < r["before"] and r["finite"] for r in done)
            seconds = ", ".join(f"{r['wall']:.1f}" for r in done) or "-"
            rows.append(
                [
                    arch,
                    str(images),
                    load,
                    f"{len(done)}/{tries}",
                    seconds,
                    ", ".join(ends) or "-",
                    f"{lower}/{len(done)}",
                ]
            )
            print(rows[-1], flush=True)


#: Ways round the kernel: (label, --onednn, extra environment).
VARIANTS = (
    ("oneDNN on (original)", "on", {}),
    ("product default", "product", {}),
    ("oneDNN off in training", "off", {}),
    ("ONEDNN_MAX_CPU_ISA=AVX", "product", {"ONEDNN_MAX_CPU_ISA": "AVX"}),
)
#: Workloads: (arch, argv) - the ResNet on 32x32 RGB, the paper's CNN on 28x28 grey.
WORKLOADS = (
    (
        "resnet",
        [
            "--arch",
            "resnet",
            "--images",
            "1024",
            "--width",
            "16",
            "--batch",
            "64",
            "--epochs",
            "2",
            "--shape",
            "3,32,32",
        ],
    ),
    (
        "simple_cnn",
        [
            "--arch",
            "simple_cnn",
            "--images",
            "2048",
            "--width",
            "32",
            "--batch",
            "64",
            "--epochs",
            "2",
            "--shape",
            "1,28,28",
        ],
    ),
)


def cost(repeat: int, timeout: float, rows: list[list[str]]) -> None:
    """Fill ``rows`` with median training seconds per ISA, workload and variant."""
    for isa, isa_env in (("native", {}), ("emulated AVX2", AVX2)):
        for arch, argv in WORKLOADS:
            runs: dict[str, list[dict]] = {label: [] for label, _, _ in VARIANTS}
            for _ in range(repeat):  # interleaved, so drifting load hits every variant alike
                for label, onednn, env in VARIANTS:
                    if label == "oneDNN on (original)" and isa != "native" and arch == "resnet":
                        continue  # hangs or crashes: see the crash table
                    runs[label].append(
                        run_child([*argv, "--onednn", onednn], {**isa_env, **env}, timeout)
                    )
            base = [r["seconds"] for r in runs["oneDNN on (original)"] if r["end"] == "ok"]
            for label, results in runs.items():
                done = [r["seconds"] for r in results if r["end"] == "ok"]
                if not results:
                    rows.append([isa, arch, label, "not run (hangs)", "", ""])
                    continue
                median = statistics.median(done) if done else float("nan")
                ratio = f"{median / statistics.median(base):.2f}" if base and done else "-"
                fails = ", ".join(r["end"] for r in results if r["end"] != "ok") or "-"
                rows.append(
                    [
                        isa,
                        arch,
                        label,
                        f"{median:.2f}",
                        ratio,
                        f"{len(done)}/{len(results)} ({fails})",
                    ]
                )
                print(rows[-1], flush=True)


AGREE_CHILD = """
import json, sys
import numpy as np
from robust_data.scoring.weights import load_model
from robust_data.scoring.models import predict_logits
from robust_data.scoring.rpr.engine import RprOptions, score_rpr
trained, _ = load_model(sys.argv[1])
data = np.load(sys.argv[2])
logits = predict_logits(trained.model, data["images"], device="cpu", precision="fp32")
ids = [str(i) for i in range(len(data["labels"]))]
out = {"logits": logits}
for compiled in ("off", "on"):
    options = RprOptions(device="cpu", precision="fp32", max_steps=100, compile=compiled)
    result = score_rpr(
        trained.model, data["images"], data["labels"], ids, 4, options, progress=False
    )
    out[f"steps_{compiled}"] = np.nan_to_num(result.steps_to_flip.astype(float), nan=-1)
    out[f"clean_{compiled}"] = result.clean_pred
np.savez(sys.argv[3], **out)
"""


def agree(timeout: float, rows: list[list[str]]) -> None:
    """Fill ``rows`` with native vs emulated-AVX2 agreement of one ResNet's logits and scores."""
    import numpy as np

    from robust_data.scoring.models import ModelOptions
    from robust_data.scoring.training import train_model
    from robust_data.scoring.weights import save_model

    images, labels = learnable(512, (3, 32, 32))
    config = ModelOptions(arch="resnet", width=16, epochs=3, batch_size=64, precision="fp32")
    trained = train_model(config, images, labels, 4, device="cpu", progress=False, evaluate=False)
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_model(trained, Path(tmp, "resnet.pt")).path
        test, test_labels = learnable(200, (3, 32, 32))
        test = np.clip(
            test + np.random.default_rng(1).normal(0, 0.2, test.shape).astype(np.float32), 0, 1
        )
        np.savez(Path(tmp, "data.npz"), images=test, labels=test_labels)
        got = {}
        for isa, env in (("native", {}), ("emulated AVX2", AVX2)):
            out = Path(tmp, f"{isa}.npz")
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", AGREE_CHILD, weights, str(Path(tmp, "data.npz")), str(out)],
                env={**os.environ, **env},
                timeout=timeout,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise SystemExit(f"{isa} scoring failed ({proc.returncode}): {proc.stderr[-500:]}")
            got[isa] = dict(np.load(out))
            print(f"{isa}: {time.perf_counter() - started:.1f} s", flush=True)
    a, b = got["native"], got["emulated AVX2"]
    rows.append(["logits, max abs difference", f"{np.abs(a['logits'] - b['logits']).max():.2e}"])
    rows.append(
        [
            "argmax predictions equal",
            f"{(a['logits'].argmax(1) == b['logits'].argmax(1)).mean():.4f}",
        ]
    )
    for compiled in ("off", "on"):
        name = "eager" if compiled == "off" else "compiled"
        steps_a, steps_b = a[f"steps_{compiled}"], b[f"steps_{compiled}"]
        rows.append(
            [
                f"RPR {name}: clean predictions equal",
                f"{(a[f'clean_{compiled}'] == b[f'clean_{compiled}']).mean():.4f}",
            ]
        )
        rows.append([f"RPR {name}: steps_to_flip equal", f"{(steps_a == steps_b).mean():.4f}"])
        rows.append(
            [f"RPR {name}: robust flag equal", f"{((steps_a < 0) == (steps_b < 0)).mean():.4f}"]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="crash,cost,agree")
    parser.add_argument("--tries", type=int, default=3, help="runs per cell of the crash table")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell of the cost table")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds before a run is killed"
    )
    parser.add_argument("--label", default="", help="added to the section titles (e.g. the commit)")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arch", default="resnet")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--shape", default="3,32,32")
    parser.add_argument("--onednn", choices=("product", "on", "off"), default="product")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    import torch

    parts = args.parts.split(",")
    label = f", {args.label}" if args.label else ""
    flags = sorted(
        {f for f in ("amx_bf16", "avx512_bf16") if f in Path("/proc/cpuinfo").read_text()}
    )
    machine = (
        f"{cpu_model()}; cpuinfo flags: {' '.join(flags) or 'none'}; torch {torch.__version__}"
    )
    show = (
        record
        if not args.no_record
        else lambda title, what, header, rows, summary: print(title, rows)
    )
    if "crash" in parts:
        rows: list[list[str]] = []
        crash(args.tries, args.timeout, rows)
        show(
            f"Training on oneDNN's AVX2 path: runs that finish{label}",
            f"{machine}. Emulated with `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`, fp32, "
            f"width 4, batch 8, one epoch, fresh process per run, killed after "
            f"{args.timeout:.0f} s (`bench/avx2_training.py --parts crash`).",
            [
                "arch",
                "images",
                "load",
                "finished/tried",
                "s per finished run",
                "others ended",
                "loss down",
            ],
            rows,
            "SIGSEGV / SIGABRT: the process crashed (glibc: heap corruption); timeout: hung.",
        )
    if "cost" in parts:
        rows = []
        cost(args.repeat, args.timeout * 4, rows)
        show(
            f"Training on oneDNN's AVX2 path: what each way round the kernel costs{label}",
            f"{machine}. Training seconds (median of {args.repeat} fresh processes, interleaved), "
            "ResNet width 16 on 1,024 RGB 32x32 images, simple CNN width 32 on 2,048 grey 28x28, "
            "batch 64, 2 epochs, fp32; ratio against oneDNN on in the same run "
            "(`bench/avx2_training.py --parts cost`).",
            ["ISA", "arch", "variant", "train s", "ratio", "finished (others)"],
            rows,
            "Ratio: against oneDNN on for the same ISA and model; - where that hangs.",
        )
    if "agree" in parts:
        rows = []
        agree(args.timeout * 10, rows)
        show(
            f"ResNet inference and RPR on the emulated AVX2 path vs native{label}",
            f"{machine}. One ResNet (width 16, trained natively, fp32), 200 noisy test images, "
            "predicted and scored (pixels, max_steps 100, fp32, eager and compiled) in a "
            "native process and in an emulated-AVX2 one (`bench/avx2_training.py --parts agree`).",
            ["quantity", "value"],
            rows,
            "1.0000 means identical on every image.",
        )


if __name__ == "__main__":
    main()
