"""A small home for the browser's tests: two digits datasets with real images and a real model.

``digits`` holds 240 samples with seeded made-up scores (tests/fixtures.synthetic_scores) in
which every 9th sample is misclassified by the reference model, a reference model trained for
one epoch (so the embedding shows both splits) and no reviews; ``digits-b`` holds 60 samples
and nothing else. Building it takes a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from robust_data.ingest.build import ingest
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.reference import train_reference
from robust_data.store.store import Store
from tests.fixtures import synthetic_scores

DATASET, OTHER = "digits", "digits-b"
N = 240
MISCLASSIFIED_EVERY = 9


def misclassify(rpr: pa.Table, every: int = MISCLASSIFIED_EVERY) -> pa.Table:
    """``rpr_scores`` with every ``every``-th sample predicted wrong (flips at try 1)."""
    rows = rpr.to_pylist()
    for k, row in enumerate(rows):
        if k % every == 0:
            wrong = (row["label"] + 1) % 10
            row.update(clean_pred=wrong, clean_correct=False, steps_to_flip=1, robust=False)
            row["flip_pred"] = wrong
    return pa.Table.from_pylist(rows, schema=rpr.schema)


def build_browse_home(home: Path) -> Store:
    """Write both datasets into ``home``; its store."""
    store = Store.open(home).ensure()
    digits = ingest(DATASET).samples
    samples = digits.slice(0, N)
    store.write(samples, "raw_samples", DATASET)
    scores = synthetic_scores(samples)
    scores["rpr_scores"] = misclassify(scores["rpr_scores"])
    for name, table in scores.items():
        store.write(table, name, DATASET)
    weights = store.weights_location("reference_model", DATASET)
    model = train_reference(samples, ModelOptions(epochs=1), weights, "cpu", progress=False)
    store.write(model, "reference_model", DATASET)
    other = digits.slice(N, 60)
    store.write(other, "raw_samples", OTHER)
    return store


def misclassified_ids(store: Store) -> list[str]:
    """Sample ids of ``digits`` whose stored clean prediction is wrong."""
    rpr = store.read("rpr_scores", DATASET)
    keep = np.logical_not(rpr.column("clean_correct").to_numpy(zero_copy_only=False))
    return [sid for sid, bad in zip(rpr.column("sample_id").to_pylist(), keep, strict=True) if bad]
