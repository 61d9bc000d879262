"""Benchmark: the batched RPR engine against the paper's per-image loop, on mnist-5k.

One run, same model (the reference model, ``--arch``, trained on mnist-5k's train split) and
data (its test split), the paper's scheme (28 pixels) and MAX_STEPS 250. ``--colour`` makes
the images 32x32 RGB (issue 32): each digit padded to 32x32 and painted in seeded colours
(a foreground colour and a background half a turn away on each channel), so the shapes are
real digits and every channel carries them.

- the per-image loop (perturb, one forward pass, repeat; fp32), on the first --loop images;
- the engine in fp32 and in bf16 autocast, on --n images; the loop's scores must equal the
  engine's fp32 scores on the images both scored;
- plain batched inference of as many forward passes, same batch size, each precision;
- achieved FLOP/s against a measured matrix-multiply rate in the same precision;
- how often the robust flag agrees between bf16 and fp32 on the same perturbations;
- training: images per second of the reference model's training (bf16 autocast where the
  CPU has it, channels-last) and its achieved FLOP/s (three forward passes per image) against
  the same matmul rate.

Prints and appends to bench/RESULTS.md. Run: .venv/bin/python bench/rpr_engine.py
(colour: --colour --arch resnet, --colour --arch simple_cnn)
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace

import numpy as np
import torch
from results import cpu_model, record
from torch.utils.flop_counter import FlopCounterMode

from robust_data.ingest.arrays import decode_samples
from robust_data.ingest.build import ingest
from robust_data.scoring.device import autocast, resolve_device, tune_allocator
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.rpr.engine import ModelRunner, RprOptions, score_rpr, score_rpr_loop
from robust_data.scoring.training import train_model


def matmul_rate(
    device: torch.device, dtype: torch.dtype, size: int = 2048, seconds: float = 2.0
) -> float:
    """Sustained FLOP/s of a (size x size) @ (size x size) matrix multiply."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * count / (time.perf_counter() - start)


def colour_digits(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 1, 28, 28) digits in [0, 1] as (N, 3, 32, 32) colour images in [0, 1].

    Each image gets a seeded foreground colour and the background half a turn away on every
    channel (contrast 0.5 per channel): the digit's shape is in all three channels.
    """
    rng = np.random.default_rng(seed)
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    foreground = rng.uniform(0, 1, (len(images), 3, 1, 1)).astype(np.float32)
    background = (foreground + 0.5) % 1.0
    return (background * (1 - padded) + foreground * padded).astype(np.float32)


def forward_flops(model: torch.nn.Module, image: torch.Tensor) -> int:
    """FLOPs of one forward pass of one image (multiply-adds count as two)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(image[None])
    return counter.get_total_flops()


def plain_inference(model, images, count, options: RprOptions, device) -> float:
    """Seconds for ``count`` forward passes of the originals in full batches, no perturbation.

    Runs through the engine's own model runner (same layout, precision and compile mode), so
    the ratio isolates what the engine adds: noise, gathers, early-exit bookkeeping.
    """
    from robust_data.scoring.device import resolve_precision

    precision = resolve_precision(options.precision, device)
    model = copy.deepcopy(model).to(device).eval().to(memory_format=torch.channels_last)
    data = images.to(device)
    reps = -(-options.batch_size // len(data))
    batch = data.repeat(reps, 1, 1, 1)[: options.batch_size]
    run = ModelRunner(model, options, options.compile == "on")
    done = 0
    with torch.inference_mode(), autocast(device, precision):
        run(batch).argmax(1)
        start = time.perf_counter()
        while done < count:
            run(batch).argmax(1).cpu()
            done += len(batch)
    run.close()
    return (time.perf_counter() - start) * count / done


def per_image_loop(model, images, labels, ids, device) -> tuple[list[tuple[int, int]], int, float]:
    """The paper's algorithm image by image (fp32): scores, forward passes, seconds."""
    model = model.to(device).eval()
    scores, start = [], time.perf_counter()
    with torch.inference_mode():
        for i in range(len(ids)):
            scores.append(score_rpr_loop(model, images[i].to(device), int(labels[i]), ids[i]))
    seconds = time.perf_counter() - start
    tries = sum(s if s else 250 for s, _ in scores)
    return scores, tries, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=1000, help="images the engine scores (default 1000)"
    )
    parser.add_argument("--loop", type=int, default=100, help="images the per-image loop scores")
    parser.add_argument(
        "--split",
        choices=("test", "all"),
        default="test",
        help="score the test split, or all 5,000 images (more passes: compile time amortized)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--arch", default="simple_cnn", choices=("simple_cnn", "resnet"))
    parser.add_argument("--width", type=int, default=None, help="channels (default: the job's)")
    parser.add_argument("--colour", action="store_true", help="32x32 RGB digits")
    args = parser.parse_args()
    tune_allocator()
    device = resolve_device(args.device)

    data = decode_samples(ingest("mnist-5k", name="mnist-5k").samples)
    train, test = data.where(data.splits == "train"), data.where(data.splits == "test")
    train_images, test_images = train.images, test.images
    if args.colour:
        train_images, test_images = colour_digits(train_images, 0), colour_digits(test_images, 1)
    width = args.width or ModelOptions().width  # the reference model's, either arch
    model_options = ModelOptions(arch=args.arch, width=width)
    trained = train_model(
        model_options,
        train_images,
        train.labels,
        10,
        test_images,
        test.labels,
        device=str(device),
    )
    model = trained.model
    if args.split == "all":  # test first, so the loop's images are test images either way
        test_images = np.concatenate([test_images, train_images])
        test = replace(
            test,
            labels=np.concatenate([test.labels, train.labels]),
            sample_ids=[*test.sample_ids, *train.sample_ids],
        )
    images = torch.from_numpy(test_images[: args.n])
    labels, ids = test.labels[: args.n], list(test.sample_ids[: args.n])

    loop_scores, loop_tries, loop_seconds = per_image_loop(
        model, images, labels, ids[: args.loop], device
    )
    runs = {}
    for label, precision, compiled in (
        ("fp32, eager", "fp32", "off"),
        ("fp32, compiled", "fp32", "on"),
        ("bf16, eager", "bf16", "off"),
        ("bf16, compiled", "bf16", "on"),
    ):
        options = RprOptions(
            device=str(device), precision=precision, batch_size=args.batch_size, compile=compiled
        )
        runs[label] = (options, score_rpr(model, images, labels, ids, 10, options, progress=False))
    fp32, bf16 = runs["fp32, eager"][1], runs["bf16, compiled"][1]
    loop_equal = [s for s, _ in loop_scores] == fp32.steps_to_flip[: args.loop].tolist()
    agree = float((fp32.robust == bf16.robust).mean())
    steps_equal = float((fp32.steps_to_flip == bf16.steps_to_flip).mean())
    flops = forward_flops(model.cpu().eval(), images[0])
    rates = {
        "fp32": matmul_rate(device, torch.float32),
        "bf16": matmul_rate(device, torch.bfloat16),
    }
    loop_rate = loop_tries / loop_seconds
    rows, summary_bits = [], []
    rows.append(
        [
            "per-image loop, fp32 (baseline)",
            f"{args.loop}",
            f"{loop_tries:,}",
            f"{loop_seconds:.1f}",
            f"{loop_rate:,.0f}",
            "1.0x",
            "-",
            f"{loop_rate * flops / 1e9:.1f}",
            "-",
        ]
    )
    for label, (options, run) in runs.items():
        plain = plain_inference(model, images, run.tries, options, device)
        rate = run.tries / run.seconds
        achieved = rate * flops
        peak = rates[options.precision]
        rows.append(
            [
                f"engine, {label}",
                f"{args.n}",
                f"{run.tries:,}",
                f"{run.seconds:.1f}",
                f"{rate:,.0f}",
                f"{rate / loop_rate:.1f}x",
                f"{run.seconds / plain:.2f}x ({plain:.1f} s plain)",
                f"{achieved / 1e9:.1f}",
                f"{achieved / peak:.0%} of {peak / 1e9:.0f}",
            ]
        )
        summary_bits.append(
            f"{label}: {run.computed - run.tries:,} passes beyond the required ones "
            f"({run.computed / run.tries - 1:.2%}: tries after a flip, padding), "
            f"robust fraction {run.robust.mean():.4f}"
        )
    train_rate = len(train_images) * model_options.epochs / trained.train_seconds
    train_flops = 3 * flops * train_rate
    rows.append(
        [
            f"training, {trained.metrics['precision']} ({model_options.epochs} epochs, "
            f"batch {model_options.batch_size})",
            f"{len(train_images):,}",
            f"{len(train_images) * model_options.epochs:,} images",
            f"{trained.train_seconds:.1f}",
            f"{train_rate:,.0f} images",
            "-",
            "-",
            f"{train_flops / 1e9:.1f}",
            f"{train_flops / rates[trained.metrics['precision']]:.0%} of "
            f"{rates[trained.metrics['precision']] / 1e9:.0f}",
        ]
    )
    accel = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    shape = "x".join(str(v) for v in images.shape[1:])
    record(
        f"RPR engine vs per-image loop ({device.type}, {args.arch}, {shape})",
        f"`python bench/rpr_engine.py --arch {args.arch} --split {args.split} --n {args.n}"
        + (" --colour" if args.colour else "")
        + f"`: reference {args.arch} (width {width}, "
        f"{flops / 1e6:.1f} MFLOP per forward) trained on mnist-5k"
        + (" painted as 32x32 RGB (colour_digits)" if args.colour else "")
        + " (test accuracy "
        f"{trained.metrics['test_accuracy']:.3f}); "
        f"{'its test split' if args.split == 'test' else 'test then train split'}"
        f" ({len(images):,} images); scheme `pixels` "
        f"({int(np.sqrt(images.shape[2] * images.shape[3]))} pixels), "
        f"MAX_STEPS 250, seed 0; batch {args.batch_size}; {cpu_model()}. 'vs plain' is the "
        "engine's time over plain batched inference of the same number of forward passes in the "
        "same precision; matmul rate measured in this run (2048x2048). Training row: "
        "images/s, and FLOP/s counting a training image as three forward passes.",
        [
            "method",
            "images",
            "forward passes",
            "seconds",
            "passes/s",
            "vs loop",
            "vs plain",
            "GFLOP/s",
            "of matmul rate",
        ],
        rows,
        f"Loop scores equal the fp32 engine's on the {args.loop} shared images: {loop_equal}. "
        "bf16 (compiled) vs fp32 (eager) on the same perturbations: "
        f"robust flag agrees on {agree:.2%}, "
        f"steps_to_flip identical on {steps_equal:.2%}. " + "; ".join(summary_bits) + ".",
        device=accel,
    )


if __name__ == "__main__":
    main()
