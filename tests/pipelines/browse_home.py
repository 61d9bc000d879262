"""A small home for the browser's tests: two digits datasets with real images and a real model.

``digits`` holds 240 samples with seeded made-up scores (tests/fixtures.synthetic_scores) in
which every 9th sample is misclassified by the reference model, a reference model trained for
one epoch (so the embedding shows both splits) and no reviews; ``digits-b`` holds 60 samples
and nothing else. Building it takes a few seconds. :func:`start_browse` runs
``robust-data browse digits`` over a home the way a user does, for every browser test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from robust_data.ingest.build import ingest
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.reference import train_reference
from robust_data.store.store import Store
from tests.fixtures import synthetic_scores
from tests.pipelines.test_webserver import free_port, wait_for

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


def start_browse(
    home: Path, prefix: list[str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``robust-data browse digits`` over ``home`` (optionally under ``prefix``), in its own
    process group, once it answers; the process and its port (the test fails if it does not)."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "robust-data"), "browse", DATASET]
    command += ["--home", str(home), "--port", str(port)]
    env = {**os.environ, "ROBUST_DATA_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    process = subprocess.Popen(
        [*(prefix or []), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", process, timeout=60)
    except (RuntimeError, TimeoutError):
        os.killpg(process.pid, signal.SIGKILL)
        out = process.communicate()[0]
        pytest.fail(f"browse did not start ({process.returncode}): {out[-800:]!r}")
    return process, port


def stop_browse(process: subprocess.Popen[bytes]) -> None:
    """Kill the browser's whole process group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)
