"""Flip rate (K shared copies) vs the 250-try robust fraction: figures, paired gaps and time.

For every model (one home's retrained models, or models trained here on digits) on the test
split: the mean per-image flip rate over K copies under common random numbers (the scoring
scheme ``pixels`` and the held-out ``salt_pepper(p=0.05)``), the RPR robust fraction with
250 tries under the same two schemes (as the report measures it), and the seconds each took.
Then, for each model against the first one (the curated model of a home; ``all`` on
digits), the paired gap of each metric and its 95%
interval across seeds: the flip rate's per-image paired t-interval
(``report.stats.paired_images_interval``) next to the robust fraction's per-seed one.
Prints only; writes nothing (no RESULTS.md entry).

Run: .venv/bin/python bench/flip_rate.py [--home HOME --dataset mnist-5k] [--k 64] [--seeds 0 1 2]
Without --home it ingests digits and trains the paper's CNN (8 epochs) on all of the training
split (``all``) and on a random half (``half``), per seed.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from results import cpu_model
from torch import nn

from robust_data.ingest.arrays import SampleArrays, decode_samples, num_classes
from robust_data.ingest.build import ingest
from robust_data.report.flips import FlipOptions, flip_rates
from robust_data.report.retrain import random_subset
from robust_data.report.stats import interval, paired_difference, paired_images_interval
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.rpr.engine import RprOptions, score_rpr
from robust_data.scoring.training import train_model
from robust_data.scoring.weights import load_model
from robust_data.store.store import Store

HELD_OUT = "salt_pepper(p=0.05)"


@dataclass
class Row:
    """One model's figures: per-image flip rates, robust flags and seconds."""

    model: str
    seed: int
    flips: np.ndarray  # (N,) flip rate under pixels, higher is worse
    flips_held: np.ndarray  # (N,) flip rate under the held-out family
    robust: np.ndarray  # (N,) bool, survived 250 pixels tries
    robust_held: np.ndarray  # (N,) bool, survived 250 tries of the held-out family
    flip_seconds: float  # both schemes
    rpr_seconds: float  # both schemes


def stored_models(home: str, dataset: str) -> tuple[dict[tuple[str, int], nn.Module], SampleArrays]:
    """The retrained models of a home ((model, seed) -> module) and its test split."""
    store = Store.open(home)
    rows = store.read("retrained_model", dataset).to_pylist()
    test = decode_samples(store.read("raw_samples", dataset), splits=("test",))
    models = {(r["model"], r["seed"]): load_model(r["path"], r["sha256"])[0].model for r in rows}
    return models, test


def digits_models(seeds: list[int]) -> tuple[dict[tuple[str, int], nn.Module], SampleArrays]:
    """The paper's CNN trained on digits' whole training split and on a random half."""
    raw = ingest("digits", name="digits").samples
    data = decode_samples(raw)
    train, test = data.where(data.splits == "train"), data.where(data.splits == "test")
    classes = num_classes(raw)
    models: dict[tuple[str, int], nn.Module] = {}
    for seed in seeds:
        recipe = ModelOptions(epochs=8, seed=seed)
        for name, part in (("all", train), ("half", random_subset(train, len(train) // 2, seed))):
            trained = train_model(recipe, part.images, part.labels, classes, progress=False)
            models[(name, seed)] = trained.model
    return models, test


def measure(
    models: dict[tuple[str, int], nn.Module], test: SampleArrays, classes: int, k: int
) -> list[Row]:
    """Every model's flip rates (both schemes) and 250-try robust flags, timed."""
    out = []
    for (name, seed), model in models.items():
        started = time.perf_counter()
        args = (test.images, test.labels, test.sample_ids, classes)
        pixels = flip_rates({name: model}, *args, FlipOptions(k=k))[name]
        held = flip_rates({name: model}, *args, FlipOptions(k=k, scheme=HELD_OUT))[name]
        middle = time.perf_counter()
        rpr = score_rpr(model, *args, RprOptions(compile="off"), progress=False)
        rpr_held = score_rpr(
            model, *args, RprOptions(scheme=HELD_OUT, compile="off"), progress=False
        )
        ended = time.perf_counter()
        out.append(
            Row(
                name,
                seed,
                pixels.flip_rate,
                held.flip_rate,
                rpr.robust,
                rpr_held.robust,
                middle - started,
                ended - middle,
            )
        )
        print(
            f"{name:>18} seed {seed}: flip rate {pixels.mean_flip_rate:.4f} (held-out "
            f"{held.mean_flip_rate:.4f}) in {middle - started:.1f} s; robust fraction "
            f"{rpr.robust.mean():.4f} (held-out {rpr_held.robust.mean():.4f}) in "
            f"{ended - middle:.1f} s",
            flush=True,
        )
    return out


def gaps(rows: list[Row]) -> None:
    """Each model minus the first, paired by seed: flip rates per image, robust per seed."""
    subject = rows[0].model
    by = {(r.model, r.seed): r for r in rows}
    seeds = sorted({r.seed for r in rows if r.model == subject})
    print(f"\npaired gaps, {subject} minus each model, 95% intervals over {len(seeds)} seeds:")
    for other in dict.fromkeys(r.model for r in rows if r.model != subject):
        pairs = [(by[(subject, s)], by[(other, s)]) for s in seeds if (other, s) in by]
        flips = paired_images_interval([a.flips for a, _ in pairs], [b.flips for _, b in pairs])
        held = paired_images_interval(
            [a.flips_held for a, _ in pairs], [b.flips_held for _, b in pairs]
        )
        robust = paired_difference(
            [float(a.robust.mean()) for a, _ in pairs], [float(b.robust.mean()) for _, b in pairs]
        )
        robust_held = paired_difference(
            [float(a.robust_held.mean()) for a, _ in pairs],
            [float(b.robust_held.mean()) for _, b in pairs],
        )
        for label, iv in (
            ("flip rate", flips),
            ("held-out flip rate", held),
            ("robust fraction", robust),
            ("held-out robust", robust_held),
        ):
            width = iv.high - iv.low
            print(
                f"  vs {other:>18} {label:>18}: {100 * iv.mean:+.2f} pt "
                f"[{100 * iv.low:+.2f}, {100 * iv.high:+.2f}] (width {100 * width:.2f} pt)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="a home where `robust-data curate` ran")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}; K = {args.k}, RPR max_steps 250", flush=True)
    if args.home:
        models, test = stored_models(args.home, args.dataset)
        order = sorted(models, key=lambda key: (key[0] != "curated", key[0], key[1]))
        models = {key: models[key] for key in order}
    else:
        models, test = digits_models(args.seeds)
    classes = int(max(test.labels.max() + 1, 10))
    rows = measure(models, test, classes, args.k)
    flip_s = interval([r.flip_seconds for r in rows])
    rpr_s = interval([r.rpr_seconds for r in rows])
    print(
        f"\n{len(test):,} test images, {len(rows)} models: flip rates (2 schemes x K = {args.k})"
        f" {flip_s.mean:.2f} s per model, 250-try robust fractions (2 schemes) "
        f"{rpr_s.mean:.2f} s per model"
    )
    gaps(rows)


if __name__ == "__main__":
    main()
