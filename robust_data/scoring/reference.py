"""Train a dataset's reference model and record it as a one-row table (``reference_model``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from robust_data.errors import DatasetError
from robust_data.ingest.arrays import SampleArrays, decode_samples, num_classes
from robust_data.io.files import file_exists, file_sha256, read_bytes
from robust_data.present.summary import StageSummary, logged
from robust_data.scoring.device import resolve_device
from robust_data.scoring.models import ModelOptions, TrainedModel, accuracy, build_model
from robust_data.scoring.spec import ModelSpec, check_archive, check_model, load_scripted
from robust_data.scoring.training import train_model
from robust_data.scoring.weights import (
    ModelFile,
    is_weight_file,
    load_model,
    model_bytes,
    save_model,
)
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
        column("model_kind", pa.string(), "builtin, factory or torchscript (your own model)"),
        column(
            "model_source",
            pa.string(),
            "The built-in's name, the factory's package.module:function or the TorchScript path",
        ),
        column("model_sha256", pa.string(), "sha256 of your TorchScript file; null otherwise"),
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
    spec = config.spec
    script_sha = check_spec_on(spec, config, train.images[:CHECK_IMAGES], classes)
    if spec.kind == "torchscript":  # a trained model: used as is
        trained = scripted_reference(config, train, test, classes, device)
        saved = save_model(trained, weights_path)
        return reference_row(trained, saved, 0, script_sha)
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


CHECK_IMAGES = 3
"""Images your own model is tried on first (an odd count: a batch size no model expects)."""


def check_spec_on(
    spec: ModelSpec, config: ModelOptions, images: np.ndarray, classes: int
) -> str | None:
    """Check your own model against a dataset before anything is trained or written: the
    factory imports and returns an ``nn.Module``, the TorchScript file loads, and either gives
    (n, classes) logits for ``images`` (n, C, H, W) (a few of the dataset's). Built-ins pass.

    Returns
    -------
    str or None
        The TorchScript file's sha256 (None for the other kinds).

    Raises
    ------
    DatasetError
        One line naming what is wrong and how to fix it.
    """
    if spec.kind == "builtin" or len(images) == 0:
        return spec.check()
    sample = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)
    module: nn.Module
    if spec.kind == "torchscript":
        module, sha = load_scripted(spec.source)
    else:
        shape = (int(sample.shape[1]), int(sample.shape[2]), int(sample.shape[3]))
        module, sha = build_model(config, shape, classes), None
    check_model(module, sample, classes, spec.source)
    return sha


def check_model_for(samples: pa.Table, config: ModelOptions) -> str | None:
    """:func:`check_spec_on` with a few train images of a stored samples table (``raw_samples``)."""
    train = samples.filter(pc.equal(samples.column("split"), "train")).slice(0, CHECK_IMAGES)
    images = decode_samples(train).images if train.num_rows else np.zeros((0, 1, 1, 1))
    return check_spec_on(config.spec, config, images, num_classes(samples))


def scripted_reference(
    config: ModelOptions,
    train: SampleArrays,
    test: SampleArrays,
    classes: int,
    device: str = "auto",
) -> TrainedModel:
    """Your TorchScript file (``config.model``) as the reference model, untrained here, with
    its fp32 accuracies on ``train`` and ``test`` (NaN without test rows), both in [0, 1]."""
    module, _ = load_scripted(config.model)
    metrics = {
        "train_accuracy": accuracy(module, train.images, train.labels, device),
        "test_accuracy": accuracy(module, test.images, test.labels, device),
        "device": str(resolve_device(device)),
        "precision": "fp32",
    }
    in_shape = (int(train.images.shape[1]), int(train.images.shape[2]), int(train.images.shape[3]))
    return TrainedModel(module.eval(), config, in_shape, classes, metrics, 0.0)


def reference_row(
    trained: TrainedModel, saved: ModelFile, train_samples: int, script_sha: str | None = None
) -> pa.Table:
    """The one-row ``reference_model`` table of a trained, saved model; ``script_sha`` is
    the sha256 of your TorchScript file when the model is one."""
    test_accuracy = trained.metrics.get("test_accuracy", float("nan"))
    spec = trained.config.spec
    row = {
        "path": str(saved.path),
        "sha256": saved.sha256,
        "arch": spec.source if spec.kind == "builtin" else spec.kind,
        "config": json.dumps(asdict(trained.config), sort_keys=True),
        "num_classes": trained.num_classes,
        "num_parameters": sum(p.numel() for p in trained.model.parameters()),
        "train_samples": train_samples,
        "train_accuracy": float(trained.metrics["train_accuracy"]),
        "test_accuracy": None if np.isnan(test_accuracy) else float(test_accuracy),
        "train_seconds": round(float(trained.train_seconds), 3),
        "device": str(trained.metrics["device"]),
        "precision": str(trained.metrics["precision"]),
        "model_kind": spec.kind,
        "model_source": spec.source,
        "model_sha256": script_sha,
    }
    table = pa.Table.from_pylist([row], schema=REFERENCE_SCHEMA)
    params = {**asdict(trained.config), "model_kind": spec.kind, "model_sha256": script_sha}
    meta = table_metadata("reference_model", "raw_samples", params)
    return table.replace_schema_metadata(meta)


@dataclass(frozen=True, kw_only=True)
class ReferenceSummary(StageSummary):
    """The summary of a reference model: accuracies first (test NaN without a test split)."""

    test_accuracy: float
    train_accuracy: float
    arch: str
    model: str = ""  # builtin name, "factory pkg.mod:make" or "torchscript PATH"
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
        model=ModelSpec(
            row.get("model_kind") or "builtin", row.get("model_source") or row["arch"]
        ).label,
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


def scoring_model(
    spec: ModelSpec,
    samples: pa.Table,
    config: ModelOptions | None = None,
    device: str = "auto",
    progress: bool = True,
) -> tuple[TrainedModel, ModelFile]:
    """The model a one-off scoring (``robust-data score-model``) uses, nothing written.

    A TorchScript path is a robust-data weight file (loaded) or your TorchScript file (used as
    is, checked against the dataset first); a built-in or a factory is trained with ``config``
    on the dataset's train split, in memory.

    Returns
    -------
    (TrainedModel, ModelFile)
        The model, and its file: the path and sha256 of the file, or for a model trained here
        the sha256 its weight file would have and the path ``(trained in memory)``.

    Raises
    ------
    DatasetError
        One line for a missing or unreadable file, a bad factory, or a model whose output does
        not fit the dataset's classes.
    """
    config = config or ModelOptions()
    if spec.kind == "torchscript":
        if file_exists(spec.source) and is_weight_file(read_bytes(check_archive(spec.source))):
            return load_model(spec.source)
        module, sha = load_scripted(spec.source)
        data = decode_samples(samples.slice(0, CHECK_IMAGES))
        classes = num_classes(samples)
        check_spec_on(spec, replace(config, model=spec.source), data.images, classes)
        shape = (int(data.images.shape[1]), int(data.images.shape[2]), int(data.images.shape[3]))
        options = replace(config, model=spec.source)
        return TrainedModel(module, options, shape, classes), ModelFile(spec.source, sha)
    options = (
        replace(config, arch=spec.source, model="")
        if spec.kind == "builtin"
        else replace(config, model=spec.source)
    )
    check_model_for(samples, options)
    data = decode_samples(samples)
    train = data.where(data.splits == "train")
    if len(train) == 0:
        raise DatasetError(
            f"a train split to train {spec.label} on",
            "no train rows",
            "pass a trained model (a TorchScript file or a robust-data weight file)",
        )
    trained = train_model(
        options, train.images, train.labels, num_classes(samples), device=device, progress=progress
    )
    digest = hashlib.sha256(model_bytes(trained)).hexdigest()
    return trained, ModelFile("(trained in memory)", digest)
