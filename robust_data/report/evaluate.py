"""Judge models on the test split, seed by seed, and compare curated against its baselines.

Per model: the primary metric, declared before any result, is the mean per-image flip rate
over K perturbed copies of each test image under the scoring scheme, every model seeing the
same copies (common random numbers, robust_data.report.flips); the same under a held-out
perturbation family (one not used to make variants); clean test accuracy, the worst class's
accuracy and ECE; accuracy under the corruptions the variants used (``seen``) and under the
others (``held_out``), and the mCE of each relative to the reference model of the same seed;
the paper's RPR robust fraction (250 tries) on the first ``robust_seeds`` seeds only. Training
on a perturbation and testing on the same one is visible as such: ``flip_rate`` vs
``flip_rate_held_out`` and ``mce_seen`` vs ``mce_held_out``.

Differences are curated minus baseline per seed (a mean over the same test images, so paired
by image), combined by a t-interval over seeds; the secondary metrics' p-values are
Holm-adjusted per baseline. An interval that includes 0 reads "not distinguishable". That
comparison is robust_data.report.comparison's (torch-free, so a stored report's verdicts are
read back without loading model code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from torch import nn

from robust_data.defaults import MAX_STEPS
from robust_data.errors import DatasetError, RobustDataError
from robust_data.ingest.arrays import SampleArrays
from robust_data.perturb.corrupt.library import MNIST_C

# Re-exported: the comparison lived here before it was split out to load without torch.
from robust_data.report.comparison import METRICS, Comparison, compare  # noqa: F401
from robust_data.report.corruption_suite import (
    SuiteOptions,
    corrupt_chunks,
    evaluate_suite,
    mean_corruption_error,
    suite_jobs,
)
from robust_data.report.flips import FLIP_K, FlipOptions, flip_rates
from robust_data.report.testset import corrupted_jobs, stored_chunks
from robust_data.scoring.rpr.engine import RprOptions, score_rpr
from robust_data.variants.make import parse_transform

#: Perturbation families in the order a held-out one is chosen (the first the plan does not use).
HELD_OUT_SCHEMES = ("salt_pepper(p=0.05)", "gaussian(sigma=0.2)", "pixels")

#: Test images per corrupted chunk and forward pass in the corruption suite.
SUITE_BATCH = 1024


@dataclass(frozen=True)
class JudgeOptions:
    """What the models are measured on.

    Attributes
    ----------
    scheme : str
        The RPR scoring scheme (as the curation scored with).
    held_out_scheme : str
        A perturbation family not used as a variant; default: the first of
        :data:`HELD_OUT_SCHEMES` that the plan does not use (see :func:`held_out_scheme`).
    max_steps : int
        Tries per test image for its RPR (as the curation scored with).
    seed : int
        Seed of the perturbations (as the curation scored with).
    corruptions : tuple of str
        The corruption suite (default: the MNIST-C set).
    k : int
        Perturbed copies per test image for the flip rates (>= 1), the same for every model.
    robust_seeds : int
        Seeds 0..robust_seeds-1 also get the paper's robust fraction (up to ``max_steps``
        tries per image, the costly part); later seeds do not (NaN). Default 1.
    device, precision : str
        Where and how the models run, for the suite and RPR alike: ``auto``/``cpu``/``cuda``
        and ``auto``/``fp32``/``bf16`` (``auto``: bf16 where the hardware has bf16 matrix
        units, the scoring precision of :func:`robust_data.scoring.rpr.engine.score_rpr`).
    """

    scheme: str = "pixels"
    held_out_scheme: str = HELD_OUT_SCHEMES[0]
    max_steps: int = MAX_STEPS
    seed: int = 0
    corruptions: tuple[str, ...] = MNIST_C
    k: int = FLIP_K
    robust_seeds: int = 1
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.k < 1 or self.robust_seeds < 0:
            raise RobustDataError(
                "k >= 1 and robust_seeds >= 0",
                f"{self.k} and {self.robust_seeds}",
                "pass k=64 and robust_seeds=1 (the defaults)",
                options=("k", "robust_seeds"),
            )

    def flip_options(self, scheme: str) -> FlipOptions:
        """The flip-rate options for ``scheme`` (same seed, device and precision)."""
        return FlipOptions(
            k=self.k, scheme=scheme, seed=self.seed, device=self.device, precision=self.precision
        )


def used_families(transforms: Sequence[str]) -> set[str]:
    """Names of the corruptions and perturbation schemes a plan's transforms use."""
    return {parse_transform(t).name for t in transforms}


def held_out_scheme(transforms: Sequence[str]) -> str:
    """The first of :data:`HELD_OUT_SCHEMES` the transforms do not use."""
    used = used_families(transforms)
    return next((s for s in HELD_OUT_SCHEMES if s.split("(")[0] not in used), HELD_OUT_SCHEMES[-1])


@dataclass
class Judged:
    """One model's measurements on the test split.

    Attributes
    ----------
    metrics : dict
        Metric name (see :data:`METRICS`) -> value.
    steps : np.ndarray
        (N,) int64 RPR tries to the flip under the scoring scheme; 0 for survivors.
    suite : pa.Table
        Accuracy and ECE per corruption job (``SUITE_SCHEMA`` of
        robust_data.report.corruption_suite).
    ce : dict
        Corruption error per corruption relative to the reference (1 = as the reference).
    """

    metrics: dict[str, float]
    steps: np.ndarray
    suite: pa.Table
    ce: dict[str, float]


def judge(
    models: Mapping[str, nn.Module],
    test: SampleArrays,
    classes: int,
    seen: set[str],
    options: JudgeOptions = JudgeOptions(),
    reference: str = "reference",
) -> dict[str, dict[str, float]]:
    """Every metric of every model on ``test``; mCEs relative to ``models[reference]``.

    The corrupted images are made once per chunk and run through every model.

    Returns
    -------
    dict
        Model name -> metric name (see :data:`METRICS`) -> value. Accuracies and fractions
        in [0, 1] (higher is better); mCE >= 0 (1 is the reference, lower is better); ECE in
        [0, 1] (lower is better).
    """
    judged = judge_models(models, test, classes, seen, options, reference)
    return {name: j.metrics for name, j in judged.items()}


@dataclass
class Measured:
    """One model's raw measurements on the test split, before any comparison.

    Attributes
    ----------
    suite : pa.Table
        Accuracy and ECE per corruption job (``SUITE_SCHEMA`` of
        robust_data.report.corruption_suite).
    steps : np.ndarray
        (N,) int64 RPR tries to the flip under the scoring scheme, 0 for survivors; empty
        (0,) where the robust fraction was not measured (seeds >= ``robust_seeds``).
    flips, flips_held_out : np.ndarray
        (N,) float64 in [0, 1] per-image flip rates over the K shared copies under the
        scoring and the held-out scheme; higher is worse.
    class_accuracy : np.ndarray
        (K classes,) float64 clean accuracy per class (NaN for a class without test images).
    """

    suite: pa.Table
    steps: np.ndarray
    flips: np.ndarray
    flips_held_out: np.ndarray
    class_accuracy: np.ndarray


def measure_models(
    models: Mapping[str, nn.Module],
    test: SampleArrays,
    classes: int,
    options: JudgeOptions = JudgeOptions(),
    corrupted: pa.Table | None = None,
    known_steps: Mapping[str, np.ndarray] | None = None,
    progress: bool = False,
    robust: bool = True,
) -> dict[str, Measured]:
    """Each model's suite, flip rates and RPR tries; nothing here depends on the other models.

    So one model per call (one evaluation step per model) measures what a call with all of
    them does; a call with several reads each corrupted chunk once for all of them.

    Parameters
    ----------
    corrupted : pa.Table, optional
        The stored corrupted test set of ``test`` (robust_data.report.testset): its chunks
        are read instead of made, and its corruptions are the suite (``options.corruptions``
        is then ignored). Default: made here from ``options.corruptions``.
    known_steps : mapping, optional
        Model name -> (N,) stored tries to the flip under ``options.scheme`` (0 survived):
        those models are not scored again under the scoring scheme.
    robust : bool
        Measure the 250-try robust fraction (the caller's seed < ``robust_seeds``); else
        ``steps`` are empty.
    """
    if corrupted is None:
        jobs = suite_jobs(options.corruptions)
        chunks = corrupt_chunks(test.images, test.sample_ids, jobs, options.seed, SUITE_BATCH)
    else:
        check_corrupted(corrupted, test)
        jobs, chunks = corrupted_jobs(corrupted), stored_chunks(corrupted, SUITE_BATCH)
    suites = evaluate_suite(
        dict(models),
        test.labels,
        jobs,
        chunks,
        SuiteOptions(options.seed, options.device, options.precision),
        progress,
    )
    args = (dict(models), test.images, test.labels, test.sample_ids, classes)
    flips = flip_rates(*args, options.flip_options(options.scheme), progress)
    held = flip_rates(*args, options.flip_options(options.held_out_scheme), progress)
    known = dict(known_steps or {})
    out: dict[str, Measured] = {}
    for name, model in models.items():
        steps = known.get(name)
        if steps is None:
            steps = (
                _steps(model, test, classes, options.scheme, options, progress)
                if robust
                else np.zeros(0, np.int64)
            )
        correct = flips[name].clean_correct
        out[name] = Measured(
            suites[name],
            np.asarray(steps, np.int64),
            flips[name].flip_rate,
            held[name].flip_rate,
            class_accuracy(correct, test.labels, classes),
        )
    return out


def class_accuracy(correct: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """(classes,) float64 share of each class's images that are ``correct`` (NaN: none)."""
    labels = np.asarray(labels, np.int64)
    totals = np.bincount(labels, minlength=classes).astype(np.float64)
    hits = np.bincount(labels, weights=np.asarray(correct, np.float64), minlength=classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)


def judged_from(
    measured: Mapping[str, Measured], seen: set[str], reference: str = "reference"
) -> dict[str, Judged]:
    """Every metric of every model of one seed; mCEs relative to ``measured[reference]``.

    Raises
    ------
    KeyError
        When ``reference`` was not measured.
    """
    base = measured[reference].suite
    out: dict[str, Judged] = {}
    for name, m in measured.items():
        rows = m.suite.to_pylist()
        clean = next(r for r in rows if r["corruption"] == "clean")
        suite_names = list(
            dict.fromkeys(r["corruption"] for r in rows if r["corruption"] != "clean")
        )
        held = [c for c in suite_names if c not in seen]
        seen_names = [c for c in suite_names if c in seen]
        ce, _ = mean_corruption_error(m.suite, base)
        metrics = {
            "flip_rate": float(np.mean(m.flips)) if len(m.flips) else np.nan,
            "flip_rate_held_out": float(np.mean(m.flips_held_out)) if len(m.flips) else np.nan,
            "test_accuracy": clean["accuracy"],
            "worst_class_accuracy": float(np.nanmin(m.class_accuracy))
            if np.isfinite(m.class_accuracy).any()
            else np.nan,
            "ece": clean["ece"],
            "robust_fraction": float(np.mean(m.steps <= 0)) if len(m.steps) else np.nan,
            "corruption_accuracy_held_out": _mean(
                [r["accuracy"] for r in rows if r["corruption"] in held]
            ),
            "corruption_accuracy_seen": _mean(
                [r["accuracy"] for r in rows if r["corruption"] in seen_names]
            ),
            "mce_held_out": _mean([ce[c] for c in held if c in ce]),
            "mce_seen": _mean([ce[c] for c in seen_names if c in ce]),
        }
        out[name] = Judged(metrics, m.steps, m.suite, ce)
    return out


def judge_models(
    models: Mapping[str, nn.Module],
    test: SampleArrays,
    classes: int,
    seen: set[str],
    options: JudgeOptions = JudgeOptions(),
    reference: str = "reference",
    corrupted: pa.Table | None = None,
    known_steps: Mapping[str, np.ndarray] | None = None,
    progress: bool = False,
) -> dict[str, Judged]:
    """:func:`judge` with the details a report draws: :func:`measure_models`, then
    :func:`judged_from` (see there for ``corrupted`` and ``known_steps``)."""
    measured = measure_models(models, test, classes, options, corrupted, known_steps, progress)
    return judged_from(measured, seen, reference)


def check_corrupted(corrupted: pa.Table, test: SampleArrays) -> None:
    """Raise unless ``corrupted`` holds whole jobs of ``test``'s images in split order."""
    stored_ids = corrupted.column("sample_id").slice(0, len(test)).to_pylist()
    if stored_ids != list(test.sample_ids) or corrupted.num_rows % max(len(test), 1):
        raise DatasetError(
            f"a corrupted test set of the {len(test):,} test images in split order",
            f"{corrupted.num_rows:,} rows starting with other images",
            "re-materialize corrupted_test",
        )


def _steps(
    model: nn.Module,
    test: SampleArrays,
    classes: int,
    scheme: str,
    o: JudgeOptions,
    progress: bool = False,
) -> np.ndarray:
    """(N,) int64 tries to the flip under ``scheme``; 0 for the points that survived."""
    options = RprOptions(
        scheme=scheme, max_steps=o.max_steps, seed=o.seed, device=o.device, precision=o.precision
    )
    result = score_rpr(
        model, test.images, test.labels, test.sample_ids, classes, options, progress=progress
    )
    return np.asarray(result.steps_to_flip, np.int64)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
