"""The paper's experiment on a full MNIST root, printed beside the paper's numbers.

1. Train the paper's CNN (the reference recipe) on all of MNIST train; score RPR (28 pixels,
   MAX_STEPS 250) on train and test.
2. Keep the robust training points, 1,500 per class at random (seeded); retrain the same CNN
   on them (M_R); score RPR on test.
3. Print model, training-set size, test accuracy and test robust fraction for M and M_R, with
   the paper's 98.85% / 0.2957 and 96.92% / 0.5101.

Needs the MNIST IDX files (``--root`` as for ``robust-data ingest mnist --root``); nothing is
downloaded. On the 2-core CPU scoring 60,000 training images can take over ten minutes.
``--limit N`` uses only the first N images of each split (to check the script runs).

Run: .venv/bin/python bench/paper_reproduction.py --root ~/data
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results import cpu_model, record

from robust_data.arrays import decode_samples
from robust_data.curation import CurationPolicy, select_scored
from robust_data.ingest import ingest
from robust_data.models import ModelConfig, train_model
from robust_data.report import PAPER_TABLE
from robust_data.rpr.engine import RprOptions, score_rpr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder with MNIST's IDX files")
    parser.add_argument("--per-class", type=int, default=1500)
    parser.add_argument("--limit", type=int, help="first N images of each split only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    data = decode_samples(ingest("mnist", root=args.root, name="mnist").samples)
    train, test = data.where(data.splits == "train"), data.where(data.splits == "test")
    if args.limit:
        train = train.where(np.arange(len(train)) < args.limit)
        test = test.where(np.arange(len(test)) < args.limit)
    recipe = ModelConfig(seed=args.seed)
    options = RprOptions(seed=args.seed)
    full = train_model(recipe, train.images, train.labels, 10, test.images, test.labels)
    train_scores = score_rpr(full.model, train.images, train.labels, train.sample_ids, 10, options)
    test_full = score_rpr(full.model, test.images, test.labels, test.sample_ids, 10, options)
    policy = CurationPolicy(
        require_correct=False,
        drop_label_issues=False,
        drop_outliers=False,
        dedupe=False,
        quota_mode="fixed",
        per_class=args.per_class,
        seed=args.seed,
    )
    robust = select_scored(train, train_scores.clean_correct, train_scores.robust, policy)
    curated = train_model(recipe, robust.images, robust.labels, 10, test.images, test.labels)
    test_curated = score_rpr(curated.model, test.images, test.labels, test.sample_ids, 10, options)
    rows = [
        [
            "ours: M (all of train)",
            f"{len(train):,}",
            f"{full.metrics['test_accuracy']:.4f}",
            f"{test_full.robust.mean():.4f}",
        ],
        [
            f"ours: M_R ({args.per_class:,} robust per class)",
            f"{len(robust):,}",
            f"{curated.metrics['test_accuracy']:.4f}",
            f"{test_curated.robust.mean():.4f}",
        ],
        *[
            [
                r["model"],
                f"{r['train_size']:,}",
                f"{r['test_accuracy']:.4f}",
                f"{r['test_robust_fraction']:.4f}",
            ]
            for r in PAPER_TABLE
        ],
    ]
    record(
        "Paper reproduction (MNIST)"
        + (f", first {args.limit} images per split" if args.limit else ""),
        f"`python bench/paper_reproduction.py --root ROOT`: reference CNN recipe, pixels (28), 250 tries, "
        f"seed {args.seed}; {cpu_model()}.",
        ["model", "training-set size", "test accuracy", "test robust fraction"],
        rows,
        f"Robust fraction of the training set under M: {train_scores.robust.mean():.4f} (the paper: 0.7128). "
        f"Total time {time.perf_counter() - started:.0f} s.",
    )


if __name__ == "__main__":
    main()
