"""The paper's experiment on a full MNIST root, printed beside the paper's numbers.

1. Train the paper's CNN (the reference recipe) on all of MNIST train; score RPR (28 pixels,
   MAX_STEPS 250) on train and test.
2. Keep the robust training points, 1,500 per class at random (seeded); retrain the same CNN
   on them (M_R); score RPR on test.
3. Print model, training-set size, test accuracy and test robust fraction for M and M_R, with
   the paper's 98.85% / 0.2957 and 96.92% / 0.5101.

Data: the MNIST IDX files (``--root`` as for ``robust-data ingest mnist --root``), or a bundled
dataset (``--dataset mnist-5k``); nothing is downloaded. On the 2-core CPU scoring 60,000
training images can take over ten minutes. ``--limit N`` uses only the first N images of each
split (to check the script runs).

``--regime paper`` reproduces the paper's regime rather than its recipe: the paper's reference
was far less robust than ours (test robust fraction 0.2957 against ~0.89 for our 4-epoch
recipe on mnist-5k); its Keras model was trained with ADAM at default settings, for an
unstated number of epochs. The regime trains the reference recipe for ``--epochs`` (default
40) instead of 4, which makes the model more confident and less robust, then asks whether
training only on robust points raises test robustness as the paper reports. ``--seeds`` runs
the whole experiment per seed and reports the mean and 95% interval of M_R minus M.

Run: .venv/bin/python bench/paper_reproduction.py --root ~/data
     .venv/bin/python bench/paper_reproduction.py --dataset mnist-5k --regime paper --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import numpy as np
from results import cpu_model, record

from robust_data.curation.policy import CurationPolicy, select_scored
from robust_data.ingest.arrays import decode_samples
from robust_data.ingest.build import ingest
from robust_data.report.render import PAPER_TABLE
from robust_data.report.stats import Metric, interval, paired_difference, paired_verdict
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.rpr.engine import RprOptions, score_rpr
from robust_data.scoring.training import train_model


@dataclass
class Outcome:
    """One seed's experiment: sizes, test accuracies and test robust fractions of M and M_R."""

    train_size: int
    robust_size: int
    train_robust: float
    accuracy: tuple[float, float]
    robust: tuple[float, float]


def run_seed(train, test, recipe: ModelOptions, per_class: int, seed: int) -> Outcome:
    """Train M on all of ``train``, keep ``per_class`` robust points per class, train M_R."""
    options = RprOptions(seed=seed)
    classes = int(max(train.labels.max(), test.labels.max())) + 1
    full = train_model(recipe, train.images, train.labels, classes, test.images, test.labels)
    train_scores = score_rpr(
        full.model, train.images, train.labels, train.sample_ids, classes, options
    )
    test_full = score_rpr(full.model, test.images, test.labels, test.sample_ids, classes, options)
    policy = CurationPolicy(
        require_correct=False,
        drop_label_issues=False,
        drop_outliers=False,
        dedupe=False,
        quota_mode="fixed",
        per_class=per_class,
        seed=seed,
    )
    robust = select_scored(train, train_scores.clean_correct, train_scores.robust, policy)
    curated = train_model(recipe, robust.images, robust.labels, classes, test.images, test.labels)
    test_curated = score_rpr(
        curated.model, test.images, test.labels, test.sample_ids, classes, options
    )
    return Outcome(
        len(train),
        len(robust),
        float(train_scores.robust.mean()),
        (full.metrics["test_accuracy"], curated.metrics["test_accuracy"]),
        (float(test_full.robust.mean()), float(test_curated.robust.mean())),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", help="folder with MNIST's IDX files")
    source.add_argument("--dataset", help="a bundled dataset instead, e.g. mnist-5k")
    parser.add_argument("--per-class", type=int, default=1500)
    parser.add_argument("--limit", type=int, help="first N images of each split only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--regime", choices=["recipe", "paper"], default="recipe")
    parser.add_argument("--epochs", type=int, default=40, help="with --regime paper")
    args = parser.parse_args()
    started = time.perf_counter()
    raw = ingest("mnist", root=args.root, name="mnist") if args.root else ingest(args.dataset)
    data = decode_samples(raw.samples)
    train, test = data.where(data.splits == "train"), data.where(data.splits == "test")
    if args.limit:
        train = train.where(np.arange(len(train)) < args.limit)
        test = test.where(np.arange(len(test)) < args.limit)
    outcomes = []
    for seed in args.seeds:
        recipe = ModelOptions(seed=seed)
        if args.regime == "paper":
            recipe = replace(recipe, epochs=args.epochs)  # the recipe is already ADAM, lr 1e-3
        outcomes.append(run_seed(train, test, recipe, args.per_class, seed))
        o = outcomes[-1]
        print(f"seed {seed}: accuracy {o.accuracy}, robust {o.robust}, kept {o.robust_size}")
    name = args.dataset or "MNIST"
    rows = [
        [
            f"ours ({name}): M (all of train)",
            f"{outcomes[0].train_size:,}",
            _mean_interval([o.accuracy[0] for o in outcomes]),
            _mean_interval([o.robust[0] for o in outcomes]),
        ],
        [
            f"ours ({name}): M_R (<= {args.per_class:,} robust per class)",
            " / ".join(sorted({f"{o.robust_size:,}" for o in outcomes})),
            _mean_interval([o.accuracy[1] for o in outcomes]),
            _mean_interval([o.robust[1] for o in outcomes]),
        ],
        *[
            [
                r["model"],
                f"{r['train_size']:,}",
                f"{r['test_accuracy']:.4f}",
                f"{r['robust_fraction']:.4f}",
            ]
            for r in PAPER_TABLE
        ],
    ]
    gain = paired_difference([o.robust[1] for o in outcomes], [o.robust[0] for o in outcomes])
    robust_metric = Metric("robust_fraction", "more RPR-robust")
    regime = (
        f"paper regime ({args.epochs} epochs)" if args.regime == "paper" else "reference recipe"
    )
    record(
        f"Paper reproduction ({name}, {regime})"
        + (f", first {args.limit} images per split" if args.limit else ""),
        "`python bench/paper_reproduction.py "
        f"{'--root ROOT' if args.root else '--dataset ' + name} "
        f"--regime {args.regime} --seeds {' '.join(map(str, args.seeds))}`: pixels (28), 250 "
        f"tries; {cpu_model()}. Ours: mean [95% t-interval] over {len(outcomes)} seed(s).",
        ["model", "training-set size", "test accuracy", "test robust fraction"],
        rows,
        "Robust fraction of the training set under M: "
        + _mean_interval([o.train_robust for o in outcomes])
        + " (the paper: 0.7128). "
        + paired_verdict(robust_metric, gain, "M (all of train)", "M_R")
        + f" (the paper: +21.4 pt). Total time {time.perf_counter() - started:.0f} s.",
    )


def _mean_interval(values: list[float]) -> str:
    i = interval(values)
    return f"{i.mean:.4f}" if i.n < 2 else f"{i.mean:.4f} [{i.low:.4f}, {i.high:.4f}]"


if __name__ == "__main__":
    main()
