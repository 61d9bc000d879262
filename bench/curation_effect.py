"""Does a curated dataset beat equal-budget baselines? 8+ seeds, paired by seed and image.

One curation per dataset, made as the main job makes it (the product's seed 0): the paper's
CNN (4 epochs) trained on the training split is the reference model; RPR (pixels, 250
tries) on the training split; out-of-fold predictions (5 folds) and cleanlab with Datalab;
the preset's policy. Then for every seed s the training sets of robust_data.report.retrain
(``training_sets``), each trained with the recipe at seed s:

``curated``            the preset's kept (and repaired) originals and its variants
``curated_drawn``      the same originals and allocation, variants drawn, not mined
                       (ablation: what mining adds; only for presets that mine)
``random_subset``      as many originals per class, at random, with the same variant count
                       per class from the same transforms, plain draws spread evenly
``all_with_variants``  every original plus the same variant count per class
``original``           every original, no variants (the reference recipe)

Every model of a seed is measured on the same perturbed test images (common random numbers):
the primary metric, declared in advance, is the mean per-image flip rate over K copies under
the scoring scheme (``pixels``): the share of copies predicted other than the true label.
Secondary: test accuracy, worst-class accuracy, flip rate under the held-out family
``salt_pepper(p=0.05)``, and the held-out corruption error (mean error over the MNIST-C
corruptions the plan does not use, every severity; unnormalised). Differences are curated
minus baseline, per seed paired over the same test images, combined by a t-interval over
seeds; the secondary metrics' p-values are Holm-adjusted per baseline.

Datasets: ``mnist-5k`` (4,000 train / 1,000 test); ``fashion`` (Fashion-MNIST from Debian's
dataset-fashion-mnist: 500 training images per class drawn with seed 0, all 10,000 test
images); ``fashion-dirty`` (the same 5,000 with classes 3 and 8 cut to a tenth, then 20% of
the remaining 4,100 training labels flipped within confusable pairs, 23.4% of each paired
class; test labels untouched), where label
repair is also scored: precision and recall of the label issues against the flipped ids.

Run: .venv/bin/python bench/curation_effect.py mnist-5k [--seeds 8] [--k 64] [--preset mined]
Prints everything and records the tables in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
from results import cpu_model, record

from robust_data.curation.policy import select_curated
from robust_data.curation.presets import PRESETS, Preset
from robust_data.ingest.arrays import SampleArrays, decode_samples
from robust_data.ingest.build import ingest
from robust_data.ingest.sources import resolve_source
from robust_data.ingest.sources.base import LoadOptions
from robust_data.label_quality.assess import assess_labels
from robust_data.label_quality.noise import FASHION_MNIST_CONFUSABLE, DirtyOptions, make_dirty
from robust_data.label_quality.oof import OofOptions, out_of_fold
from robust_data.perturb.corrupt.library import MNIST_C
from robust_data.report.corruption_suite import corruption_accuracy
from robust_data.report.evaluate import class_accuracy, held_out_scheme, used_families
from robust_data.report.flips import FlipOptions, flip_rates
from robust_data.report.retrain import CuratedInputs, curated_labels, train_on, training_sets
from robust_data.report.stats import holm, interval, per_seed_differences, t_p_value
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.rpr.engine import RprOptions, score_rpr
from robust_data.scoring.training import train_model

ARMS = ("curated", "curated_drawn", "random_subset", "all_with_variants", "original")
BASELINES = ARMS[1:]
CLASSES = 10


@dataclass
class Data:
    """A dataset's training split (labels as the user has them) and its test split."""

    train: SampleArrays
    test: SampleArrays
    flipped: np.ndarray | None = None  # (N,) bool, dirty only: label flipped


@dataclass
class Curated:
    """The one curation every seed trains from."""

    kept: np.ndarray  # (N,) bool
    steps: np.ndarray  # (N,) int, 0 robust
    labels: np.ndarray  # (N,) int, after repair
    inputs: CuratedInputs
    notes: list[str]


@dataclass
class Figures:
    """One model's per-image figures on the test split."""

    correct: np.ndarray  # (T,) 0/1
    flips: np.ndarray  # (T,) flip rate under pixels, higher is worse
    flips_held: np.ndarray  # (T,) flip rate under the held-out family
    worst_class: float  # lowest per-class accuracy
    mce_held: float  # mean error over held-out corruptions, lower is better


def load(name: str) -> Data:
    """The dataset's splits (see the module docstring)."""
    if name == "mnist-5k":
        data = decode_samples(ingest("mnist-5k", name="mnist-5k").samples)
        return Data(data.where(data.splits == "train"), data.where(data.splits == "test"))
    source = resolve_source("fashion-mnist").load(LoadOptions())
    pixels = np.asarray(source.pixels).transpose(0, 3, 1, 2)
    splits = np.asarray(source.splits)
    labels = np.asarray(source.labels, np.int64)
    ids = [f"{s}/{k}" for s, k in zip(splits, source.keys, strict=True)]
    rng = np.random.default_rng(0)
    pick = np.concatenate(
        [
            rng.choice(np.flatnonzero((splits == "train") & (labels == c)), 500, replace=False)
            for c in range(CLASSES)
        ]
    )
    pick.sort()
    test = np.flatnonzero(splits == "test")

    def arrays(index: np.ndarray) -> SampleArrays:
        return SampleArrays(
            [ids[i] for i in index],
            (pixels[index] / 255.0).astype(np.float32),
            labels[index],
            splits[index],
        )

    train = arrays(pick)
    if name == "fashion":
        return Data(train, arrays(test))
    # 20% of all training labels after the cut: 500 x 7 paired classes of 4,100 samples
    cut = (3, 8)
    paired = {c for pair in FASHION_MNIST_CONFUSABLE for c in pair}
    kept_total = 500 * (CLASSES - len(cut)) + 50 * len(cut)
    share = 0.2 * kept_total / (500 * len(paired - set(cut)))
    dirty = make_dirty(
        train.labels, train.sample_ids, DirtyOptions(flip_share=share, cut_classes=cut)
    )
    kept = train.where(np.isin(np.arange(len(train)), dirty.kept))
    kept = replace(kept, labels=dirty.labels)
    return Data(kept, arrays(test), dirty.flipped)


def curate(data: Data, preset: Preset) -> Curated:
    """Reference model, RPR on train, out-of-fold cleanlab, the preset's policy."""
    train, notes = data.train, []
    started = time.perf_counter()
    reference = train_model(ModelOptions(), train.images, train.labels, CLASSES, progress=False)
    args = (train.images, train.labels, train.sample_ids, CLASSES)
    scores = score_rpr(reference.model, *args, RprOptions(compile="off"), progress=False)
    steps = np.asarray(scores.steps_to_flip, np.int64)
    rpr = pa.table(
        {
            "sample_id": train.sample_ids,
            "clean_correct": scores.clean_correct,
            "robust": scores.robust,
            "steps_to_flip": steps,
        }
    )
    oof = out_of_fold(train, CLASSES, reference, OofOptions(), progress=False)
    quality = assess_labels(oof.table()).table
    samples = pa.table({"sample_id": train.sample_ids, "label": train.labels})
    curation = select_curated(samples, rpr, quality, preset.policy)
    ledger = curation.ledger.to_pylist()
    kept = np.array([r["kept"] for r in ledger])
    labels = curated_labels(train, curation.ledger)
    reasons = curation.reason_counts()
    repaired = int(sum(r["new_label"] is not None for r in ledger))
    notes.append(
        f"curation ({preset.name}): kept {kept.sum():,} of {len(kept):,}, repaired {repaired}; "
        + ", ".join(f"{k} {v}" for k, v in reasons.items() if v and k != "kept")
        + f"; reference test-free curation took {time.perf_counter() - started:.0f} s"
    )
    if data.flipped is not None:
        issue = np.array(quality.column("is_label_issue").to_pylist(), bool)
        notes.append(label_issue_scores(issue, data.flipped, labels, train, kept))
    inputs = CuratedInputs(labels, reference.model, "pixels", 0)
    return Curated(kept, steps, labels, inputs, notes)


def label_issue_scores(
    issue: np.ndarray, flipped: np.ndarray, labels: np.ndarray, train: SampleArrays, kept
) -> str:
    """Precision and recall of cleanlab's label issues against the flipped labels."""
    hit = int((issue & flipped).sum())
    precision = hit / max(int(issue.sum()), 1)
    recall = hit / max(int(flipped.sum()), 1)
    wrong_kept = int((kept & flipped & (labels == train.labels)).sum())
    return (
        f"label issues: {int(issue.sum())} flagged, {int(flipped.sum())} flipped: precision "
        f"{precision:.3f}, recall {recall:.3f}; flipped labels still trained as given: "
        f"{wrong_kept}"
    )


def measure(models: dict, data: Data, k: int, held_out: list[str], mce_images: int) -> dict:
    """Every model's :class:`Figures`, the flip rates on the same copies for all."""
    test = data.test
    args = (test.images, test.labels, test.sample_ids, CLASSES)
    pixels = flip_rates(models, *args, FlipOptions(k=k))
    held = flip_rates(models, *args, FlipOptions(k=k, scheme="salt_pepper(p=0.05)"))
    out = {}
    part = slice(0, mce_images)
    for name, model in models.items():
        correct = pixels[name].clean_correct.astype(np.float64)  # the clean pass flip_rates ran
        per_class = class_accuracy(correct, test.labels, CLASSES)
        suite = corruption_accuracy(
            model,
            test.images[part],
            test.labels[part],
            test.sample_ids[part],
            held_out,
            progress=False,
            precision="auto",
        )
        errors = [r["error"] for r in suite.to_pylist() if r["corruption"] != "clean"]
        out[name] = Figures(
            correct,
            pixels[name].flip_rate,
            held[name].flip_rate,
            float(np.nanmin(per_class)),
            float(np.mean(errors)),
        )
    return out


def run_seed(data: Data, curated: Curated, preset: Preset, seed: int, args) -> dict:
    """Train every arm at ``seed`` and measure them."""
    drawn = replace(preset, plan=replace(preset.plan, mining="none"))
    common = (data.train, curated.kept, curated.steps)
    names = [n for n in ("curated", "random_subset", "all_with_variants") if n in args.arms]
    sets = training_sets(
        *common,
        preset,
        seed,
        CLASSES,
        250,
        ("reference", *names),
        curated.inputs,
    )
    if preset.plan.mining != "none" and "curated_drawn" in args.arms:
        sets["curated_drawn"] = training_sets(
            *common, drawn, seed, CLASSES, 250, ("curated",), curated.inputs
        )["curated"]
    original = sets.pop("reference")
    if "original" in args.arms:
        sets["original"] = original
    models = {}
    for name in (a for a in ARMS if a in sets):
        started = time.perf_counter()
        models[name] = train_on(sets[name], ModelOptions(), CLASSES, seed).model
        print(
            f"  seed {seed} {name}: {len(sets[name].labels):,} images "
            f"({sets[name].variants:,} variants) trained in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
    held_out = [c for c in MNIST_C if c not in used_families(preset.plan.transforms)]
    started = time.perf_counter()
    figures = measure(models, data, args.k, held_out, args.mce_images)
    print(f"  seed {seed} measured in {time.perf_counter() - started:.1f} s", flush=True)
    return figures


METRICS = (  # name, attribute, per image, higher is better
    ("flip rate (pixels)", "flips", True, False),
    ("test accuracy", "correct", True, True),
    ("worst-class accuracy", "worst_class", False, True),
    ("held-out flip rate (salt_pepper)", "flips_held", True, False),
    ("held-out corruption error", "mce_held", False, False),
)


def compare(runs: list[dict]) -> list[list[str]]:
    """Rows: baseline, metric, curated mean, baseline mean, difference, interval, relative,
    Holm-adjusted p (secondary), verdict."""
    rows = []
    for base in (b for b in BASELINES if b in runs[0]):
        diffs, means = [], []
        for _, attr, per_image, _ in METRICS:
            if per_image:
                d = per_seed_differences(
                    [getattr(r["curated"], attr) for r in runs],
                    [getattr(r[base], attr) for r in runs],
                )
                a = np.mean([getattr(r["curated"], attr).mean() for r in runs])
                b = np.mean([getattr(r[base], attr).mean() for r in runs])
            else:
                values = [(getattr(r["curated"], attr), getattr(r[base], attr)) for r in runs]
                d = [x - y for x, y in values]
                a, b = np.mean([x for x, _ in values]), np.mean([y for _, y in values])
            diffs.append(d)
            means.append((a, b))
        p = [t_p_value(d) for d in diffs]
        adjusted = [p[0], *holm(p[1:])]
        for (label, _, _, higher), d, (a, b), q in zip(
            METRICS, diffs, means, adjusted, strict=True
        ):
            iv = interval(d)
            if len(d) < 2:
                verdict = "one seed: no interval"
            elif iv.low <= 0 <= iv.high or (label != METRICS[0][0] and q >= 0.05):
                verdict = "not distinguishable"
            else:
                verdict = "better" if (iv.mean > 0) == higher else "worse"
            rel = f"{100 * (a - b) / b:+.1f}%" if b else "n/a"
            rows.append(
                [
                    base,
                    label,
                    f"{100 * a:.2f}",
                    f"{100 * b:.2f}",
                    f"{100 * iv.mean:+.2f} [{100 * iv.low:+.2f}, {100 * iv.high:+.2f}]",
                    rel,
                    f"{q:.3g}",
                    verdict,
                ]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("mnist-5k", "fashion", "fashion-dirty"))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--preset", default="mined")
    parser.add_argument("--mce-images", type=int, default=1000)
    parser.add_argument(
        "--class-focus", type=int, default=None, help="override the plan's class_focus"
    )
    parser.add_argument(
        "--arms",
        default=",".join(ARMS),
        help=f"comma-separated arms to train (curated always); default {','.join(ARMS)}",
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    args.arms = {"curated", *args.arms.split(",")}
    if not args.arms <= set(ARMS):
        parser.error(f"expected arms from {ARMS}; found {sorted(args.arms - set(ARMS))}")
    started = time.perf_counter()
    preset = PRESETS[args.preset]
    if args.class_focus is not None:
        plan = replace(preset.plan, class_focus=args.class_focus)
        preset = replace(preset, name=f"{preset.name}+class_focus={args.class_focus}", plan=plan)
    data = load(args.dataset)
    print(
        f"{args.dataset}: {len(data.train):,} train, {len(data.test):,} test; CPU "
        f"{cpu_model()}; preset {preset.name}; K = {args.k}; held-out scheme "
        f"{held_out_scheme(preset.plan.transforms)}",
        flush=True,
    )
    curated = curate(data, preset)
    for note in curated.notes:
        print(note, flush=True)
    runs = [run_seed(data, curated, preset, s, args) for s in range(args.seeds)]
    rows = compare(runs)
    minutes = (time.perf_counter() - started) / 60
    summary = [
        *curated.notes,
        f"{args.seeds} seeds (0..{args.seeds - 1}), K = {args.k} copies per test image, "
        f"held-out corruption error on the first {min(args.mce_images, len(data.test)):,} "
        f"test images; differences are curated minus baseline in points (rates x 100), "
        f"95% t-intervals over seeds of per-seed paired means; p Holm-adjusted over the "
        f"secondary metrics (the primary, flip rate, unadjusted); whole run {minutes:.1f} min",
    ]
    header = [
        "baseline",
        "metric",
        "curated",
        "baseline",
        "difference (pt)",
        "relative",
        "p",
        "verdict",
    ]
    title = f"Curation effect, {args.dataset}, preset {preset.name}, {args.seeds} seeds"
    arms = ",".join(a for a in ARMS if a in args.arms)
    what = (
        f"`bench/curation_effect.py {args.dataset} --seeds {args.seeds} --k {args.k} "
        f"--preset {args.preset}"
        + (f" --class-focus {args.class_focus}" if args.class_focus is not None else "")
        + (f" --arms {arms}" if args.arms != set(ARMS) else "")
        + f"`; CPU {cpu_model()}"
    )
    if args.no_record:
        print(title, what, header, *rows, *summary, sep="\n")
    else:
        record(title, what, header, rows, "\n\n".join(summary))


if __name__ == "__main__":
    main()
