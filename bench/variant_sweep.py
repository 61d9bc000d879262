"""Which variant strengths? A sweep on a validation split of the training data, never on test.

mnist-5k's training split (4,000 images) is cut, stratified with seed 0, into 3,000 to train on
and 1,000 to validate on; the test split is not read. Every arm trains the report's recipe
(the paper's CNN, 4 epochs) at seed s on the 3,000 originals plus two variants per sample,
an equal budget: the baseline ``pixels`` twice (the ``clean`` preset's plan), every other arm
``pixels`` once plus one candidate transform once. Variants are plain keyed draws (no mining),
so the candidate's family and strength are all that differ.

On the validation images every model of a seed sees the same K perturbed copies (common
random numbers). Measured: the flip rate under ``pixels`` (the report's primary metric),
clean accuracy, and the flip rate under ``salt_pepper(p=0.05)`` (the report's held-out
family, here only as a guard). Differences are candidate minus baseline in points, paired by
seed and image, with 95% t-intervals over the seeds.

Run: .venv/bin/python bench/variant_sweep.py [--seeds 8] [--k 16]
Prints and records the table in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results import cpu_model, record

from robust_data.ingest.arrays import SampleArrays, decode_samples
from robust_data.ingest.build import ingest
from robust_data.report.flips import FlipOptions, flip_rates
from robust_data.report.retrain import TrainingSet, train_on, with_variants
from robust_data.report.stats import interval, per_seed_differences
from robust_data.scoring.models import ModelOptions

CLASSES = 10
BASELINE = "pixels x2"
CANDIDATES = (
    "gaussian_noise(severity=1)",
    "gaussian_noise(severity=2)",
    "gaussian_noise(severity=3)",
    "shot_noise(severity=1)",
    "shot_noise(severity=2)",
    "shot_noise(severity=3)",
    "rotate(severity=1)",
    "translate(severity=1)",
    "defocus_blur(severity=1)",
)


def split(train: SampleArrays, validation: int, seed: int = 0) -> tuple[SampleArrays, SampleArrays]:
    """(fit, validation): ``validation`` images drawn stratified by class, the rest to fit."""
    rng = np.random.default_rng(seed)
    share = validation / len(train)
    held = np.zeros(len(train), bool)
    for c in range(CLASSES):
        members = np.flatnonzero(train.labels == c)
        held[rng.choice(members, size=round(share * len(members)), replace=False)] = True
    return train.where(~held), train.where(held)


def arm_set(fit: SampleArrays, arm: str, seed: int) -> TrainingSet:
    """The originals and two variants per sample: pixels twice, or pixels and the candidate."""
    if arm == BASELINE:
        copies, transforms = np.full(len(fit), 2), ("pixels",)
    else:
        copies, transforms = np.ones(len(fit), np.int64), ("pixels", arm)
    images, labels = with_variants(fit, copies, transforms, seed)
    return TrainingSet(arm, images, labels, len(fit), len(labels) - len(fit))


def run_seed(fit: SampleArrays, val: SampleArrays, seed: int, k: int) -> dict:
    """Train every arm at ``seed``; per-image (correct, flips, held-out flips) on validation."""
    models = {}
    for arm in (BASELINE, *CANDIDATES):
        models[arm] = train_on(arm_set(fit, arm, seed), ModelOptions(), CLASSES, seed).model
    args = (val.images, val.labels, val.sample_ids, CLASSES)
    pixels = flip_rates(models, *args, FlipOptions(k=k))
    held = flip_rates(models, *args, FlipOptions(k=k, scheme="salt_pepper(p=0.05)"))
    return {
        arm: (
            pixels[arm].clean_correct.astype(np.float64),
            pixels[arm].flip_rate,
            held[arm].flip_rate,
        )
        for arm in models
    }


def cell(runs: list[dict], arm: str, index: int) -> str:
    """'mean [low, high]' of arm minus baseline, in points, paired by seed and image."""
    d = per_seed_differences([r[arm][index] for r in runs], [r[BASELINE][index] for r in runs])
    iv = interval(d)
    return f"{100 * iv.mean:+.2f} [{100 * iv.low:+.2f}, {100 * iv.high:+.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    data = decode_samples(ingest("mnist-5k", name="mnist-5k").samples)
    fit, val = split(data.where(data.splits == "train"), 1000)
    print(f"fit {len(fit):,}, validation {len(val):,}; CPU {cpu_model()}", flush=True)
    runs = []
    for seed in range(args.seeds):
        t = time.perf_counter()
        runs.append(run_seed(fit, val, seed, args.k))
        print(f"seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    rows = []
    for arm in (BASELINE, *CANDIDATES):
        means = [100 * np.mean([r[arm][i].mean() for r in runs]) for i in range(3)]
        diffs = ["baseline"] * 3 if arm == BASELINE else [cell(runs, arm, i) for i in range(3)]
        rows.append(
            [
                arm if arm == BASELINE else f"pixels + {arm}",
                f"{means[1]:.2f}",
                diffs[1],
                f"{means[0]:.2f}",
                diffs[0],
                f"{means[2]:.2f}",
                diffs[2],
            ]
        )
    header = [
        "variants (2 per sample)",
        "flip rate (pixels) %",
        "vs pixels x2 (pt)",
        "accuracy %",
        "vs pixels x2 (pt)",
        "held-out flip rate %",
        "vs pixels x2 (pt)",
    ]
    minutes = (time.perf_counter() - started) / 60
    summary = (
        f"{args.seeds} seeds, K = {args.k} shared copies per validation image; validation: "
        f"1,000 of mnist-5k's 4,000 training images (stratified, seed 0), fit on the other "
        f"3,000; differences paired by seed and image, 95% t-intervals over seeds; whole run "
        f"{minutes:.1f} min"
    )
    title = f"Variant strength sweep on a validation split (mnist-5k), {args.seeds} seeds"
    what = f"`bench/variant_sweep.py --seeds {args.seeds} --k {args.k}`; CPU {cpu_model()}"
    if args.no_record:
        print(title, what, header, *rows, summary, sep="\n")
    else:
        record(title, what, header, rows, summary)


if __name__ == "__main__":
    main()
