"""Train a dataset's reference model and record it as a one-row table (``reference_model``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from robust_data.errors import DatasetError
from robust_data.ingest.arrays import decode_samples, num_classes
from robust_data.io.files import file_exists, file_sha256
from robust_data.present.summary import StageSummary, logged
from robust_data.scoring.models import ModelOptions, TrainedModel
from robust_data.scoring.training import train_model
from robust_data.scoring.weights import ModelFile, load_model, save_model
from robust_data.store.checks import CheckOutcome, nan_problems, range_problems, schema_problems
from robust_data.store.schema import column, table_metadata

REFERENCE_SCHEMA = pa.schema(
    [
        column("path", pa.string(), "The weight file", nullable=False),
        column("sha256", pa.string(), "sha256 of the weight file's bytes", nullable=False),
        column("arch", pa.string(), "Architecture name", nullable=False),
        column("config", pa.string(), "The training recipe (ModelOptions) as JSON", nullable=False),
        column("num_classes", pa.int32(), "Output classes", nullable=False),
        column("num_parameters", pa.int64(), "Trainable parameters", nullable=False),
        column("train_samples", pa.int64(), "Training images it saw", nullable=False),
        column(
            "train_accuracy",
            pa.float64(),
            "Accuracy on the train split, in [0, 1]; higher is better",
            nullable=False,
        ),
        column(
            "test_accuracy",
            pa.float64(),
            "Accuracy on the test split, in [0, 1]; higher is better; null without one",
        ),
        column("train_seconds", pa.float64(), "Wall time of the training", nullable=False),
        column("device", pa.string(), "Where it trained: cpu or cuda", nullable=False),
        column("precision", pa.string(), "fp32 or bf16", nullable=False),
    ]
)
"""One row naming a reference model: where its weights are, their sha256, how it scored."""


def train_reference(
    samples: pa.Table,
    config: ModelOptions,
    weights_path: str | Path,
    device: str = "auto",
    progress: bool = True,
) -> pa.Table:
    """Train the reference model on the train split, test it on the test split, save it.

    Parameters
    ----------
    samples : pa.Table
        A samples table (``raw_samples``); its images must share one shape.
    config : ModelOptions
    weights_path : path
        Where the weight file is written (atomically).
    device : str
        ``auto``, ``cpu`` or ``cuda``.

    Returns
    -------
    pa.Table
        One row in :data:`REFERENCE_SCHEMA`.
    """
    data = decode_samples(samples)
    train, test = data.where(data.splits == "train"), data.where(data.splits == "test")
    if len(train) == 0:
        raise DatasetError(
            "a train split to train the reference model on",
            "no train rows",
            "ingest a dataset with a train split",
        )
    classes = num_classes(samples)
    trained = train_model(
        config,
        train.images,
        train.labels,
        classes,
        test.images if len(test) else None,
        test.labels if len(test) else None,
        device=device,
        progress=progress,
    )
    saved = save_model(trained, weights_path)
    return reference_row(trained, saved, len(train))


def reference_row(trained: TrainedModel, saved: ModelFile, train_samples: int) -> pa.Table:
    """The one-row ``reference_model`` table of a trained, saved model."""
    test_accuracy = trained.metrics.get("test_accuracy", float("nan"))
    row = {
        "path": str(saved.path),
        "sha256": saved.sha256,
        "arch": trained.config.arch,
        "config": json.dumps(asdict(trained.config), sort_keys=True),
        "num_classes": trained.num_classes,
        "num_parameters": sum(p.numel() for p in trained.model.parameters()),
        "train_samples": train_samples,
        "train_accuracy": float(trained.metrics["train_accuracy"]),
        "test_accuracy": None if np.isnan(test_accuracy) else float(test_accuracy),
        "train_seconds": round(float(trained.train_seconds), 3),
        "device": str(trained.metrics["device"]),
        "precision": str(trained.metrics["precision"]),
    }
    table = pa.Table.from_pylist([row], schema=REFERENCE_SCHEMA)
    meta = table_metadata("reference_model", "raw_samples", asdict(trained.config))
    return table.replace_schema_metadata(meta)


@dataclass(frozen=True, kw_only=True)
class ReferenceSummary(StageSummary):
    """The summary of a reference model: accuracies first (test NaN without a test split)."""

    test_accuracy: float
    train_accuracy: float
    arch: str
    num_parameters: int
    train_seconds: float
    device: str  # where it trained and at what precision, e.g. "cuda (bf16)"
    sha256: str
    weights: str = field(metadata=logged(kind="path"))


def reference_summary(reference: pa.Table) -> ReferenceSummary:
    """The summary of a one-row ``reference_model`` table."""
    row = reference.to_pylist()[0]
    test_accuracy = row["test_accuracy"]
    return ReferenceSummary(
        test_accuracy=float("nan") if test_accuracy is None else test_accuracy,
        train_accuracy=row["train_accuracy"],
        arch=row["arch"],
        num_parameters=row["num_parameters"],
        train_seconds=row["train_seconds"],
        device=f"{row['device']} ({row['precision']})",
        sha256=row["sha256"],
        weights=row["path"],
    )


def load_reference(reference: pa.Table) -> tuple[TrainedModel, ModelFile]:
    """Load the model a ``reference_model`` table names, checking its sha256."""
    if reference.num_rows != 1 or "sha256" not in reference.column_names:
        raise DatasetError(
            "a one-row reference_model table",
            f"{reference.num_rows} rows with columns {reference.column_names}",
            "re-materialize reference_model",
        )
    row = reference.to_pylist()[0]
    return load_model(row["path"], row["sha256"])


def check_model_table(table: pa.Table, schema: pa.Schema = REFERENCE_SCHEMA) -> CheckOutcome:
    """A model table (reference or retrained): accuracies in [0, 1], weight files match sha256.

    Fails when a weight file is missing or its bytes do not hash to the recorded sha256.
    """
    problems = schema_problems(table, schema)
    if problems:
        return CheckOutcome(problems, {"rows": table.num_rows})
    if table.num_rows == 0:
        problems.append("no model rows")
    problems += nan_problems(table)
    for name in ("train_accuracy", "test_accuracy"):
        if name in table.schema.names:
            problems += range_problems(table, name, 0.0, 1.0, "accuracies")
    paths, shas = table.column("path").to_pylist(), table.column("sha256").to_pylist()
    for path, sha in zip(paths, shas, strict=True):
        if not file_exists(path):
            problems.append(f"weight file {path} is missing")
        elif file_sha256(path) != sha:
            problems.append(f"weight file {path} does not match its sha256 {sha[:12]}")
    return CheckOutcome(problems, {"rows": table.num_rows})
