"""Does curation make a more RPR-robust model on mnist-5k? Several seeds, with baselines.

For each seed: train the reference recipe (the paper's CNN, 4 epochs) on mnist-5k's 4,000
training images; score RPR (pixels, 250 tries) on train and test; keep the paper's points
(correct and robust, balanced to the smallest class: the product's default rules without the
label-quality ones); then train the same recipe on

- curated: the kept points;
- random: a random subset of the same size (seeded per seed);
- curated + variants / random + variants: the same, each with its own points' variants from
  the product's default transforms (pixels, rotate, fog, gaussian_noise, trivial_augment);

and score test accuracy and the test RPR robust fraction of each. Prints every run and the
mean and spread per model, and records them in bench/RESULTS.md.

Run: .venv/bin/python bench/curation_effect.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results import cpu_model, record

from robust_data.curation.policy import CurationPolicy, select_scored
from robust_data.ingest.arrays import SampleArrays, decode_samples
from robust_data.ingest.build import ingest
from robust_data.report.retrain import add_variants, random_subset
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.rpr.engine import RprOptions, score_rpr
from robust_data.scoring.training import train_model
from robust_data.variants.make import DEFAULT_TRANSFORMS, make_variants

POLICY = CurationPolicy(drop_label_issues=False, drop_outliers=False, dedupe=False)


def evaluate(
    recipe: ModelOptions, train: SampleArrays, test: SampleArrays, options: RprOptions
) -> tuple[float, float]:
    """Test accuracy and test robust fraction of the recipe trained on ``train``."""
    model = train_model(
        recipe, train.images, train.labels, 10, test.images, test.labels, progress=False
    )
    scores = score_rpr(
        model.model, test.images, test.labels, test.sample_ids, 10, options, progress=False
    )
    return float(model.metrics["test_accuracy"]), float(scores.robust.mean())


def curate(train: SampleArrays, recipe: ModelOptions, test: SampleArrays, options: RprOptions):
    """The reference model, its test figures, and the kept training points."""
    reference = train_model(
        recipe, train.images, train.labels, 10, test.images, test.labels, progress=False
    )
    on_train = score_rpr(
        reference.model, train.images, train.labels, train.sample_ids, 10, options, progress=False
    )
    on_test = score_rpr(
        reference.model, test.images, test.labels, test.sample_ids, 10, options, progress=False
    )
    chosen = select_scored(train, on_train.clean_correct, on_train.robust, POLICY)
    figures = (float(reference.metrics["test_accuracy"]), float(on_test.robust.mean()))
    return figures, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    started = time.perf_counter()
    raw = ingest("mnist-5k", name="mnist-5k").samples
    data = decode_samples(raw)
    train, test = data.where(data.splits == "train"), data.where(data.splits == "test")
    variants = make_variants(raw, DEFAULT_TRANSFORMS, seed=0, progress=False).table
    options = RprOptions(compile="off")
    results: dict[str, list[tuple[float, float, int]]] = {}
    for seed in args.seeds:
        recipe = ModelOptions(seed=seed)
        figures, chosen = curate(train, recipe, test, options)
        results.setdefault("reference", []).append((*figures, len(train)))
        subset = random_subset(train, len(chosen), seed)
        runs = {
            "curated": chosen,
            "random": subset,
            "curated + variants": add_variants(chosen, variants),
            "random + variants": add_variants(subset, variants),
        }
        for name, points in runs.items():
            results.setdefault(name, []).append(
                (*evaluate(recipe, points, test, options), len(points))
            )
        for name, rows in results.items():
            accuracy, robust, size = rows[-1]
            print(
                f"seed {seed} {name:20s} {size:6,d} images  "
                f"accuracy {accuracy:.4f}  robust {robust:.4f}",
                flush=True,
            )
    rows = []
    for name, runs in results.items():
        accuracy = np.array([r[0] for r in runs])
        robust = np.array([r[1] for r in runs])
        sizes = sorted({r[2] for r in runs})
        rows.append(
            [
                name,
                " / ".join(f"{s:,}" for s in sizes),
                f"{accuracy.mean():.4f} ± {accuracy.std():.4f}",
                f"{robust.mean():.4f} ± {robust.std():.4f}",
                " ".join(f"{r:.3f}" for r in robust),
            ]
        )
    reference = np.array([r[1] for r in results["reference"]])
    curated = np.array([r[1] for r in results["curated + variants"]])
    random = np.array([r[1] for r in results["random + variants"]])
    record(
        "Curation effect on RPR robustness, mnist-5k, several seeds",
        f"bench/curation_effect.py, seeds {args.seeds}, {cpu_model()}: the reference recipe "
        "(4 epochs) per seed; paper rules (correct and robust, quota smallest, no label-quality "
        "rules); test split 1,000 images, pixels, 250 tries; mean ± standard deviation over "
        f"seeds; {time.perf_counter() - started:.0f} s in all.",
        ["model", "training-set size", "test accuracy", "test robust fraction", "per seed"],
        rows,
        f"Curated + variants minus reference, robust fraction per seed: "
        f"{' '.join(f'{d:+.3f}' for d in curated - reference)}; curated + variants minus random "
        f"+ variants: {' '.join(f'{d:+.3f}' for d in curated - random)}.",
    )


if __name__ == "__main__":
    main()
