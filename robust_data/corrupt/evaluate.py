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

    def score(batch_fn) -> float:
        correct = 0
        for start in range(0, len(x), batch_size):
            batch = batch_fn(
                x[start : start + batch_size], list(sample_ids[start : start + batch_size])
            )
            correct += int(
                (
                    predict_logits(model, batch, device=device).argmax(1)
                    == y[start : start + batch_size]
                ).sum()
            )
        return correct / max(len(x), 1)

    rows = [("clean", 0, score(lambda b, ids: b))]
    jobs = [(n, s) for n in chosen for s in range(1, CORRUPTIONS[n].severities + 1)]
    for name, severity in tqdm(
        jobs, desc="corruption suite", unit="run", **({} if progress else {"disable": True})
    ):
        rows.append(
            (name, severity, score(lambda b, ids, n=name, s=severity: corrupt(b, n, s, seed, ids)))
        )
    return pa.table(
        {
            "corruption": [r[0] for r in rows],
            "severity": [r[1] for r in rows],
            "accuracy": [r[2] for r in rows],
            "error": [1 - r[2] for r in rows],
            "samples": [len(x)] * len(rows),
        },
        schema=SUITE_SCHEMA,
    )
