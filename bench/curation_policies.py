"""Which curation preset trains more robust models? Every preset, several seeds, with intervals.

For each dataset and seed s: train the reference recipe (seed s) on the training split; score
RPR on it (pixels, 250 tries); apply each preset's policy (RPR rules, and the label-quality
rules with cleanlab's findings from 3-fold out-of-fold predictions made once per dataset with
seed 0's reference); build the training sets of robust_data.report.retrain (curated, random_subset
at the same number of images, all_with_variants; presets without variants skip the last: it is
the reference) and train the recipe on each; judge every model of a seed together on the test
split (robust_data.report.evaluate.judge: accuracy, RPR robust fraction under pixels and under a
held-out family, held-out corruption accuracy and mCE; one reference, shared corrupted images).
Reports per preset the mean and 95% interval
of every model and the paired difference curated minus each baseline, and the preset that
meets the issue's target (robust fraction >= +3 pt over the reference and >= +2 pt over the
random baseline with intervals excluding zero, accuracy within 0.5 pt of the reference,
held-out mCE below 1).

Run: .venv/bin/python bench/curation_policies.py [--datasets digits mnist-5k] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results import cpu_model, record

from robust_data.curation.policy import select_scored
from robust_data.curation.presets import PRESETS
from robust_data.ingest.arrays import decode_samples, num_classes
from robust_data.ingest.build import ingest
from robust_data.label_quality.assess import assess_labels
from robust_data.label_quality.oof import OofOptions, out_of_fold
from robust_data.report.evaluate import (
    METRICS,
    JudgeOptions,
    compare,
    held_out_scheme,
    judge,
    used_families,
)
from robust_data.report.retrain import train_on, training_sets
from robust_data.scoring.device import tune_allocator
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.rpr.engine import RprOptions, score_rpr
from robust_data.scoring.training import train_model

FLAGS = ("is_label_issue", "is_outlier", "is_near_duplicate")
SHOWN = ("test_accuracy", "robust_fraction", "robust_fraction_held_out", "mce_held_out")


def run_dataset(dataset: str, seeds: list[int], presets: list[str]) -> dict[str, list[dict]]:
    """Preset -> rows (seed, model, train_size, metrics) for one dataset."""
    raw = ingest(dataset, name=dataset).samples
    data = decode_samples(raw)
    classes = num_classes(raw)
    train, test = data.where(data.splits == "train"), data.where(data.splits == "test")
    runs: dict[str, list[dict]] = {p: [] for p in presets}
    quality = None
    for seed in seeds:
        recipe = ModelOptions(seed=0)
        reference = train_model(
            ModelOptions(seed=seed), train.images, train.labels, classes, progress=False
        )
        scores = score_rpr(
            reference.model,
            train.images,
            train.labels,
            train.sample_ids,
            classes,
            RprOptions(),
            progress=False,
        )
        if quality is None:  # label quality once per dataset: out-of-fold, 3 folds, seed 0
            oof = out_of_fold(train, classes, reference, OofOptions(folds=3), progress=False)
            quality = assess_labels(oof.table()).table
            flagged = {k: int(sum(quality.column(k).to_pylist())) for k in FLAGS}
            print(f"label quality ({oof.seconds:.0f} s): {flagged}", flush=True)
        models = {"reference": reference.model}
        sizes = {"reference": len(train)}
        clock = time.perf_counter()
        for p in presets:
            preset = PRESETS[p]
            kept_ids = set(
                select_scored(
                    train, scores.clean_correct, scores.robust, preset.policy, quality
                ).sample_ids
            )
            kept = np.array([i in kept_ids for i in train.sample_ids])
            # Without variants all_with_variants is the reference itself: not trained twice.
            names = ("curated", "random_subset", "all_with_variants")[
                : 3 if preset.plan.transforms else 2
            ]
            sets = training_sets(
                train, kept, scores.steps_to_flip, preset, seed, classes, 250, names=names
            )
            for set_name, training in sets.items():
                models[f"{p}/{set_name}"] = train_on(training, recipe, classes, seed).model
                sizes[f"{p}/{set_name}"] = len(training.labels)
        trained = time.perf_counter() - clock
        # Models judged together share the reference, the corrupted images and the RPR noise;
        # presets are grouped by what their variants used (which corruptions count as seen).
        groups: dict[tuple, list[str]] = {}
        for p in presets:
            transforms = PRESETS[p].plan.transforms
            key = (frozenset(used_families(transforms)), held_out_scheme(transforms))
            groups.setdefault(key, []).append(p)
        judged: dict[str, dict[str, float]] = {}
        for (seen, held_out), members in groups.items():
            chosen = {"reference": models["reference"]} | {
                k: m for k, m in models.items() if k.split("/")[0] in members
            }
            options = JudgeOptions(held_out_scheme=held_out)
            judged |= judge(chosen, test, classes, set(seen), options)
        print(
            f"seed {seed}: training {trained:.0f} s, judging "
            f"{time.perf_counter() - clock - trained:.0f} s",
            flush=True,
        )
        for p in presets:
            for key in ["reference", *(k for k in models if k.startswith(f"{p}/"))]:
                name = key.split("/")[-1]
                runs[p].append(
                    {"seed": seed, "model": name, "train_size": sizes[key]} | judged[key]
                )
                print(
                    f"{dataset} seed {seed} {p:6s} {name:18s} {sizes[key]:7,d} "
                    + " ".join(f"{k} {judged[key][k]:.4f}" for k in SHOWN),
                    flush=True,
                )
    return runs


def meets_target(comparison) -> bool:
    """The issue's target for a default preset."""
    ref, rnd = comparison.differences["reference"], comparison.differences["random_subset"]
    return (
        ref["robust_fraction"].low >= 0.0
        and ref["robust_fraction"].mean >= 0.03
        and rnd["robust_fraction"].low > 0.0
        and rnd["robust_fraction"].mean >= 0.02
        and ref["test_accuracy"].mean >= -0.005
        and comparison.summary["curated"].get("mce_held_out", None) is not None
        and comparison.summary["curated"]["mce_held_out"].mean < 1.0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist-5k"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    args = parser.parse_args()
    tune_allocator()
    for dataset in args.datasets:
        started = time.perf_counter()
        runs = run_dataset(dataset, args.seeds, args.presets)
        rows, lines = [], []
        for p, preset_runs in runs.items():
            comparison = compare(preset_runs)
            for model, summary in comparison.summary.items():
                size = next(r["train_size"] for r in preset_runs if r["model"] == model)
                rows.append(
                    [p, model, f"{size:,}"]
                    + [
                        f"{summary[m].mean:.4f} [{summary[m].low:.4f}, {summary[m].high:.4f}]"
                        if m in summary
                        else "n/a"
                        for m in SHOWN
                    ]
                )
            target = "meets" if meets_target(comparison) else "does not meet"
            lines.append(f"**{p}** ({target} the target):")
            lines += [f"- {v}" for v in comparison.verdicts if _headline(v)]
        record(
            f"Curation presets on {dataset}",
            f"`python bench/curation_policies.py --datasets {dataset} --seeds "
            f"{' '.join(map(str, args.seeds))}`, {cpu_model()}: per seed the reference recipe "
            "(simple_cnn, 4 epochs), RPR on the training split (pixels, 250 tries), each preset's "
            "policy (label-quality rules from 3-fold out-of-fold cleanlab, once), models trained "
            "on curated / random_subset (same number of images) / all_with_variants, judged on "
            "the test split. Mean [95% t-interval] "
            f"over {len(args.seeds)} seeds; {time.perf_counter() - started:.0f} s.",
            ["preset", "model", "train images", *SHOWN],
            rows,
            "\n".join(lines),
        )


def _headline(line: str) -> bool:
    """Verdicts shown in RESULTS.md: those on the metrics of the table (every outcome)."""
    shown = [m for m in METRICS if m.name in SHOWN]
    return any(f"on {m.name}" in line or f" {m.adjective} than" in line for m in shown)


if __name__ == "__main__":
    main()
