"""The corruption evaluation suite: a model's accuracy under every corruption and severity."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from robust_data.errors import RobustDataError
from robust_data.perturb.corrupt.library import CORRUPTIONS
from robust_data.present.progress import progress_bar
from robust_data.scoring.device import autocast, resolve_device, resolve_precision
from robust_data.scoring.rpr.engine import COMPILE_MIN_TRIES, ModelRunner, RprOptions, working_copy

SUITE_SCHEMA = pa.schema(
    [
        pa.field("corruption", pa.string(), nullable=False),  # "clean" for the uncorrupted row
        pa.field("severity", pa.int32(), nullable=False),  # 0 for clean
        pa.field("accuracy", pa.float64(), nullable=False),  # [0, 1], higher is better
        pa.field("error", pa.float64(), nullable=False),  # 1 - accuracy
        pa.field(
            "ece", pa.float64(), nullable=False
        ),  # expected calibration error, 15 bins; low is good
        pa.field("samples", pa.int64(), nullable=False),
    ]
)


def corruption_accuracy(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    sample_ids: Sequence[str],
    names: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 1024,
    progress: bool = True,
    precision: str = "fp32",
) -> pa.Table:
    """Accuracy on the clean images and under each corruption at each of its severities.

    One model's :func:`evaluate_suite`.

    Parameters
    ----------
    images : array
        (N, C, H, W) float in [0, 1], e.g. the test split.
    labels : np.ndarray
        (N,) int.
    names : sequence of str, optional
        Corruptions to run (default: all).

    Returns
    -------
    pa.Table
        :data:`SUITE_SCHEMA`, one row for clean and one per (corruption, severity).
    """
    options = SuiteOptions(seed, device, precision, batch_size, compile="off")
    jobs = suite_jobs(names)
    chunks = corrupt_chunks(images, sample_ids, jobs, seed, batch_size)
    return evaluate_suite({"model": model}, labels, jobs, chunks, options, progress)["model"]


@dataclass(frozen=True)
class SuiteOptions:
    """How the suite runs the models.

    Attributes
    ----------
    seed : int
        Seed of the corruptions (per sample, so batches and order do not matter).
    device, precision : str
        As for scoring: ``auto``/``cpu``/``cuda`` and ``auto``/``fp32``/``bf16``.
    batch_size : int
        Images per forward pass and per corrupted chunk; bounds memory (a chunk of corrupted
        images, ``batch_size * C * H * W * 4`` bytes, is made once and shared by the models).
    compile : str
        ``auto`` compiles each model when it runs at least ``COMPILE_MIN_TRIES`` images in all,
        ``on``, ``off``.
    """

    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 1024
    compile: str = "auto"


def suite_jobs(names: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(corruption, severity) pairs of the suite, ``("clean", 0)`` first.

    Raises
    ------
    RobustDataError
        For an unknown corruption name.
    """
    chosen = list(names) if names is not None else list(CORRUPTIONS)
    unknown = sorted(set(chosen) - set(CORRUPTIONS))
    if unknown:
        raise RobustDataError(
            f"corruptions from {sorted(CORRUPTIONS)}", str(unknown), "name only those"
        )
    return [("clean", 0)] + [
        (name, severity)
        for name in chosen
        for severity in range(1, CORRUPTIONS[name].severities + 1)
    ]


#: One chunk of a corrupted test set: (job index into the jobs, first row, (B, C, H, W) images).
Chunk = tuple[int, int, torch.Tensor]


def corrupt_chunks(
    images: np.ndarray | torch.Tensor,
    sample_ids: Sequence[str],
    jobs: Sequence[tuple[str, int]],
    seed: int,
    batch_size: int,
) -> Iterator[Chunk]:
    """Corrupt ``images`` (N, C, H, W) in [0, 1] job by job, ``batch_size`` images at a time.

    Yields
    ------
    Chunk
        Job index, first row and the corrupted (B, C, H, W) float32 images in [0, 1]; the
        ``("clean", 0)`` job yields the images as they are.
    """
    from robust_data.perturb.corrupt import corrupt

    x = torch.as_tensor(images, dtype=torch.float32)
    batch = max(1, batch_size)
    for j, (corruption, severity) in enumerate(jobs):
        for start in range(0, len(x), batch):
            chunk = x[start : start + batch]
            if corruption != "clean":
                ids = list(sample_ids[start : start + batch])
                chunk = corrupt(chunk, corruption, severity, seed, ids)
            yield j, start, chunk


def evaluate_suite(
    models: Mapping[str, nn.Module],
    labels: np.ndarray,
    jobs: Sequence[tuple[str, int]],
    chunks: Iterable[Chunk],
    options: SuiteOptions = SuiteOptions(),
    progress: bool = True,
) -> dict[str, pa.Table]:
    """Every model's accuracy and ECE on every job (clean, or a corruption at a severity).

    Each chunk of corrupted images is made (or read) once and run through every model; the
    models run in ``options.precision``, channels-last, compiled where it pays.

    Parameters
    ----------
    models : mapping of str to nn.Module
        Models by name; each takes (B, C, H, W) in [0, 1] and returns (B, K) logits. Not
        modified (each runs as a copy).
    labels : np.ndarray
        (N,) int, the labels of the test images.
    jobs : sequence of (str, int)
        (corruption, severity) per job, ``("clean", 0)`` for the uncorrupted images.
    chunks : iterable of Chunk
        Every job's N images in chunks (:func:`corrupt_chunks`, or
        :func:`robust_data.report.testset.stored_chunks` over a stored corrupted test set).

    Returns
    -------
    dict of str to pa.Table
        :data:`SUITE_SCHEMA` per model, one row per job in the order of ``jobs``.
    """
    y = np.asarray(labels)
    dev = resolve_device(options.device)
    precision = resolve_precision(options.precision, dev)
    compiled = options.compile == "on" or (
        options.compile == "auto" and len(y) * len(jobs) >= COMPILE_MIN_TRIES
    )
    run_options = RprOptions(device=options.device, batch_size=max(1, options.batch_size))
    runners = {
        name: ModelRunner(
            working_copy(model, dev, run_options.channels_last), run_options, compiled
        )
        for name, model in models.items()
    }
    # Per model and job: each sample's top probability and whether its argmax is right.
    confidence = {name: np.zeros((len(jobs), len(y)), np.float32) for name in models}
    correct = {name: np.zeros((len(jobs), len(y)), bool) for name in models}
    bar = progress_bar(
        total=len(jobs) * len(y),
        desc="corruption suite",
        unit="img",
        mininterval=0.5,
        disable=not progress,
    )
    try:
        with torch.inference_mode(), autocast(dev, precision):
            for j, start, chunk in chunks:
                chunk = chunk.to(dev)
                rows = slice(start, start + len(chunk))
                for name, runner in runners.items():
                    top, pred = torch.softmax(runner(chunk).float(), dim=1).max(dim=1)
                    confidence[name][j, rows] = top.cpu().numpy()
                    correct[name][j, rows] = pred.cpu().numpy() == y[rows]
                bar.update(len(chunk))
    finally:
        bar.close()
        for runner in runners.values():
            runner.close()
    return {name: _suite_table(jobs, confidence[name], correct[name]) for name in models}


def _suite_table(
    jobs: Sequence[tuple[str, int]], confidence: np.ndarray, correct: np.ndarray
) -> pa.Table:
    """:data:`SUITE_SCHEMA` from (jobs, N) top probabilities and correctness."""
    n = confidence.shape[1]
    accuracy = [float(c.mean()) if n else float("nan") for c in correct]
    return pa.table(
        {
            "corruption": [c for c, _ in jobs],
            "severity": [s for _, s in jobs],
            "accuracy": accuracy,
            "error": [1 - a for a in accuracy],
            "ece": [_ece(conf, ok) for conf, ok in zip(confidence, correct, strict=True)],
            "samples": [n] * len(jobs),
        },
        schema=SUITE_SCHEMA,
    )


def calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins.

    Parameters
    ----------
    probs : np.ndarray
        (N, K) predicted probabilities.
    labels : np.ndarray
        (N,) true labels.
    bins : int
        Bins over the confidence (the top probability) in [0, 1]; 15 as in Guo et al. 2017.

    Returns
    -------
    float
        sum over bins of (n_b / N) * |accuracy_b - mean confidence_b|, in [0, 1]; 0 is perfectly
        calibrated, higher is worse. NaN for no samples.
    """
    if len(labels) == 0:
        return float("nan")
    return _ece(probs.max(axis=1), probs.argmax(axis=1) == np.asarray(labels), bins)


def _ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """:func:`calibration_error` from (N,) top probabilities and (N,) correctness."""
    if len(correct) == 0:
        return float("nan")
    index = np.minimum(
        (confidence * bins).astype(int), bins - 1
    )  # a confidence of 1 goes in the last bin
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def mean_corruption_error(suite: pa.Table, reference: pa.Table) -> tuple[dict[str, float], float]:
    """Corruption errors relative to a reference model (Hendrycks & Dietterich 2019).

    CE_c = sum over severities of the model's error / the same sum for the reference;
    mCE = the mean of CE_c over corruptions. Both tables come from :func:`corruption_accuracy`.

    Returns
    -------
    (dict, float)
        CE per corruption and mCE; 1.0 is as good as the reference, lower is better.
    """

    def errors(table: pa.Table) -> dict[str, float]:
        out: dict[str, float] = {}
        for row in table.to_pylist():
            if row["corruption"] != "clean":
                out[row["corruption"]] = out.get(row["corruption"], 0.0) + row["error"]
        return out

    mine, ref = errors(suite), errors(reference)
    ce = {c: (mine[c] / ref[c] if ref[c] > 0 else float("nan")) for c in mine if c in ref}
    return ce, float(np.nanmean(list(ce.values()))) if ce else float("nan")
