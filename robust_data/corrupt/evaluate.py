"""The corruption evaluation suite: a model's accuracy under every corruption and severity."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from tqdm.auto import tqdm

from robust_data.corrupt.library import CORRUPTIONS
from robust_data.models import predict_logits

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
) -> pa.Table:
    """Accuracy on the clean images and under each corruption at each of its severities.

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
    from robust_data.corrupt import corrupt

    x = torch.as_tensor(images, dtype=torch.float32)
    y = np.asarray(labels)
    chosen = list(names) if names is not None else list(CORRUPTIONS)
    unknown = sorted(set(chosen) - set(CORRUPTIONS))
    if unknown:
        raise ValueError(f"expected corruptions from {sorted(CORRUPTIONS)}; found {unknown}")

    def score(batch_fn) -> tuple[float, float]:
        probs = []
        for start in range(0, len(x), batch_size):
            batch = batch_fn(
                x[start : start + batch_size], list(sample_ids[start : start + batch_size])
            )
            logits = torch.from_numpy(predict_logits(model, batch, device=device))
            probs.append(torch.softmax(logits.float(), dim=1).numpy())
        p = np.concatenate(probs) if probs else np.zeros((0, 1))
        return float((p.argmax(1) == y).mean()) if len(y) else float("nan"), calibration_error(p, y)

    rows = [("clean", 0, *score(lambda b, ids: b))]
    jobs = [(n, s) for n in chosen for s in range(1, CORRUPTIONS[n].severities + 1)]
    for name, severity in tqdm(
        jobs, desc="corruption suite", unit="run", **({} if progress else {"disable": True})
    ):
        rows.append(
            (name, severity, *score(lambda b, ids, n=name, s=severity: corrupt(b, n, s, seed, ids)))
        )
    return pa.table(
        {
            "corruption": [r[0] for r in rows],
            "severity": [r[1] for r in rows],
            "accuracy": [r[2] for r in rows],
            "error": [1 - r[2] for r in rows],
            "ece": [r[3] for r in rows],
            "samples": [len(x)] * len(rows),
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
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
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
