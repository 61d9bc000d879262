"""Retrain on the curated dataset, and the robustness report that compares the models.

The report evaluates every model on the untouched test split: clean accuracy and calibration,
RPR robustness (robust fraction and curve), accuracy and calibration under every corruption
and severity, mean corruption error relative to the reference model, and the paper's table
(model, training-set size, test accuracy, test robust fraction).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from robust_data.arrays import SampleArrays, decode_samples
from robust_data.corrupt.evaluate import (
    SuiteOptions,
    calibration_error,
    evaluate_suite,
    mean_corruption_error,
)
from robust_data.corrupt.testset import corrupted_jobs, select_corruptions, stored_chunks
from robust_data.models import ModelConfig, TrainedModel, predict_logits, save_model, train_model
from robust_data.plots import grouped_bars
from robust_data.rpr.engine import RprOptions, score_rpr
from robust_data.rpr.plots import plot_curves
from robust_data.rpr.table import robustness_curve, steps_column
from robust_data.store import write_bytes_atomic, write_text_atomic

#: Test images per corrupted chunk and forward pass in the corruption suite.
SUITE_BATCH = 1024

REPORT_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),  # reference, retrained, random_subset
        pa.field("train_size", pa.int64(), nullable=False),
        pa.field("test_accuracy", pa.float64(), nullable=False),  # higher is better
        pa.field("test_robust_fraction", pa.float64(), nullable=False),  # higher is better
        pa.field("ece", pa.float64(), nullable=False),  # clean, 15 bins; lower is better
        pa.field("corruption_accuracy", pa.float64(), nullable=False),  # mean over the suite
        pa.field("corruption_ece", pa.float64(), nullable=False),  # mean over the suite
        pa.field("mce", pa.float64(), nullable=False),  # relative to the reference; lower is better
        pa.field("model_sha256", pa.string(), nullable=False),
    ]
)
"""One row per model: the paper's table and the summary numbers."""

PAPER_TABLE = [
    {
        "model": "paper: M (all of MNIST train)",
        "train_size": 60000,
        "test_accuracy": 0.9885,
        "test_robust_fraction": 0.2957,
    },
    {
        "model": "paper: M_R (1,500 robust per class)",
        "train_size": 15000,
        "test_accuracy": 0.9692,
        "test_robust_fraction": 0.5101,
    },
]


@dataclass
class Candidate:
    """A model to report on."""

    name: str
    model: TrainedModel
    sha256: str
    train_size: int


def read_export(path: Path, split: str = "train", with_variants: bool = True) -> SampleArrays:
    """Decode one split of a Parquet export (variant rows only with ``with_variants``)."""
    table = pq.read_table(Path(path) / f"{split}.parquet")
    if not with_variants:
        table = table.filter(pc.is_null(table.column("transform")))
    return decode_samples(table)


def original_count(path: Path, split: str = "train") -> int:
    """Rows of an export's split that are not variants (``transform`` is null)."""
    transform = pq.read_table(Path(path) / f"{split}.parquet", columns=["transform"]).column(0)
    return transform.null_count


def random_subset(data: SampleArrays, size: int, seed: int) -> SampleArrays:
    """``size`` samples of ``data`` chosen with a local seeded generator (stratification: none)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(data), bool)
    mask[rng.choice(len(data), size=min(size, len(data)), replace=False)] = True
    return data.where(mask)


def add_variants(data: SampleArrays, variants: pa.Table) -> SampleArrays:
    """``data`` followed by the rows of a ``variants`` table whose parent is in ``data``.

    Gives the random-subset baseline the same variants the curated export carries, so the two
    differ only in which originals were chosen.
    """
    chosen = pa.array(list(data.sample_ids), pa.string())
    rows = variants.filter(pc.is_in(variants.column("parent_sample_id"), chosen))
    rows = rows.select(["variant_id", "split", "label", "image"]).rename_columns(
        ["sample_id", "split", "label", "image"]
    )
    extra = decode_samples(rows)
    if not len(extra):
        return data
    return SampleArrays(
        list(data.sample_ids) + extra.sample_ids,
        np.concatenate([data.images, extra.images]),
        np.concatenate([data.labels, extra.labels]),
        np.concatenate([data.splits, extra.splits]),
    )


def retrain(
    train: SampleArrays,
    recipe: ModelConfig,
    classes: int,
    path: Path,
    test: SampleArrays,
    progress: bool = True,
) -> tuple[TrainedModel, str]:
    """Train the reference recipe on ``train``, save it, return the model and its sha256."""
    trained = train_model(
        recipe, train.images, train.labels, classes, test.images, test.labels, progress=progress
    )
    return trained, save_model(trained, path).sha256


@dataclass
class Report:
    """The report: its table, its JSON document and its figures."""

    table: pa.Table
    document: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)

    def markdown(self) -> str:
        """The report as Markdown, figures linked from ``plots/``."""
        doc = self.document
        rpr = doc["rpr"]
        lines = [
            f"# Robustness report: {doc['dataset']}",
            "",
            f"Test split: {doc['test_samples']:,} images. RPR: {rpr['scheme']}, {rpr['max_steps']} tries, "
            f"seed {rpr['seed']}. Corruption suite: {len(doc['suite_corruptions'])} corruptions, all severities.",
            "",
            "## The paper's table",
            "",
            paper_table_markdown(self.table),
            "",
            "The paper's own numbers on full MNIST, for comparison: "
            + "; ".join(
                f"{r['model']}: {r['train_size']:,} images, accuracy {r['test_accuracy']:.4f}, "
                f"robust {r['test_robust_fraction']:.4f}"
                for r in PAPER_TABLE
            ),
            "",
            "## Summary",
            "",
            "| model | clean ECE | corruption accuracy | corruption ECE | mCE |",
            "|---|---:|---:|---:|---:|",
            *(
                f"| {r['model']} | {r['ece']:.4f} | {r['corruption_accuracy']:.4f} "
                f"| {r['corruption_ece']:.4f} | {r['mce']:.3f} |"
                for r in self.table.to_pylist()
            ),
            "",
            "## RPR robustness curves",
            "",
            "![robustness curves](plots/robustness_curves.png)",
            "",
            "## Corruption error per corruption (CE, relative to the reference)",
            "",
            "| corruption | " + " | ".join(doc["models"]) + " |",
            "|---|" + "---:|" * len(doc["models"]),
        ]
        for corruption in doc["suite_corruptions"]:
            lines.append(
                f"| {corruption} | "
                + " | ".join(f"{doc['models'][m]['ce'][corruption]:.3f}" for m in doc["models"])
                + " |"
            )
        lines += ["", "![accuracy per corruption](plots/corruption_accuracy.png)", ""]
        return "\n".join(lines)


def paper_table_markdown(table: pa.Table) -> str:
    """Model, training-set size, test accuracy, test robust fraction: the paper's table."""
    lines = [
        "| model | training-set size | test accuracy | test robust fraction |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['train_size']:,} | {r['test_accuracy']:.4f} | {r['test_robust_fraction']:.4f} |"
        for r in table.to_pylist()
    ]
    return "\n".join(lines)


def build_report(
    dataset: str,
    candidates: list[Candidate],
    test: SampleArrays,
    reference_rpr: pa.Table,
    options: RprOptions,
    corrupted: pa.Table,
    suite: list[str] | None = None,
    progress: bool = True,
) -> Report:
    """Evaluate every candidate on ``test``; the first candidate is the reference.

    ``reference_rpr`` holds the reference model's stored RPR scores; its test rows are used
    as they are (same scheme, seed and tries as ``options``), the others are scored here.
    ``corrupted`` is the stored corrupted test set (:mod:`robust_data.corrupt.testset`) of
    ``test``: each of its chunks is read once and run through every model; ``suite`` picks
    corruptions from it (default: all it holds).
    """
    classes = int(max(c.model.num_classes for c in candidates))
    rows, models, curves = [], {}, {}
    test_rows = reference_rpr.filter(pc.equal(reference_rpr.column("split"), "test"))
    for index, cand in enumerate(candidates):
        logits = predict_logits(cand.model.model, test.images, device=options.device)
        probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        accuracy = float((probs.argmax(1) == test.labels).mean())
        if index == 0:
            steps = steps_column(test_rows)
        else:
            steps = score_rpr(
                cand.model.model,
                test.images,
                test.labels,
                test.sample_ids,
                classes,
                options,
                progress,
            ).steps_to_flip
        curve = robustness_curve(steps, options.max_steps)
        curves[cand.name] = curve
        models[cand.name] = {
            "train_size": cand.train_size,
            "sha256": cand.sha256,
            "test_accuracy": accuracy,
            "ece": calibration_error(probs, test.labels),
            "test_robust_fraction": float(curve[-1]),
            "curve": curve.tolist(),
        }
    # Each corrupted test set is made once and shared by every model, in the scoring precision.
    corrupted = select_corruptions(corrupted, suite)
    stored_ids = corrupted.column("sample_id").slice(0, len(test)).to_pylist()
    if stored_ids != list(test.sample_ids) or corrupted.num_rows % max(len(test), 1):
        raise ValueError(
            f"expected a corrupted test set of the {len(test):,} test images in split order; "
            f"found {corrupted.num_rows:,} rows starting with other images; re-materialize "
            "corrupted_test"
        )
    suites = evaluate_suite(
        {cand.name: cand.model.model for cand in candidates},
        test.labels,
        corrupted_jobs(corrupted),
        stored_chunks(corrupted, SUITE_BATCH),
        SuiteOptions(options.seed, options.device, options.precision, SUITE_BATCH, options.compile),
        progress,
    )
    reference = suites[candidates[0].name]
    for cand in candidates:
        ce, mce = mean_corruption_error(suites[cand.name], reference)
        corrupted = suites[cand.name].filter(
            pc.not_equal(suites[cand.name].column("corruption"), "clean")
        )
        entry = models[cand.name]
        entry.update(
            {
                "ce": ce,
                "mce": mce,
                "suite": suites[cand.name].to_pylist(),
                "corruption_accuracy": float(pc.mean(corrupted.column("accuracy")).as_py()),
                "corruption_ece": float(pc.mean(corrupted.column("ece")).as_py()),
            }
        )
        rows.append(
            {
                "model": cand.name,
                "train_size": cand.train_size,
                "test_accuracy": entry["test_accuracy"],
                "test_robust_fraction": entry["test_robust_fraction"],
                "ece": entry["ece"],
                "corruption_accuracy": entry["corruption_accuracy"],
                "corruption_ece": entry["corruption_ece"],
                "mce": mce,
                "model_sha256": cand.sha256,
            }
        )
    document = {
        "dataset": dataset,
        "test_samples": len(test),
        "rpr": {
            "scheme": test_rows.column("scheme")[0].as_py()
            if test_rows.num_rows
            else options.scheme,
            "max_steps": options.max_steps,
            "seed": options.seed,
        },
        "suite_corruptions": list(
            dict.fromkeys(c for c in reference.column("corruption").to_pylist() if c != "clean")
        ),
        "models": models,
        "paper": PAPER_TABLE,
    }
    figures = {
        "robustness_curves": plot_curves(
            curves, f"RPR robustness curves, test split ({document['rpr']['scheme']})"
        ),
        "corruption_accuracy": grouped_bars(
            {
                name: [
                    float(
                        np.mean(
                            [r["accuracy"] for r in models[name]["suite"] if r["corruption"] == c]
                        )
                    )
                    for c in document["suite_corruptions"]
                ]
                for name in models
            },
            document["suite_corruptions"],
            "Test accuracy per corruption (mean over severities)",
            "accuracy",
        ),
    }
    return Report(pa.Table.from_pylist(rows, schema=REPORT_SCHEMA), document, figures)


def write_report(report: Report, folder: Path) -> Path:
    """Write report.md, report.json and plots/*.png under ``folder`` (each file atomically)."""
    folder = Path(folder)
    for name, png in report.figures.items():
        write_bytes_atomic(png, folder / "plots" / f"{name}.png")
    write_text_atomic(json.dumps(report.document, indent=2, allow_nan=True), folder / "report.json")
    return write_text_atomic(report.markdown(), folder / "report.md")


def inline_png(png: bytes, alt: str) -> str:
    """Markdown image with the PNG inlined (for Dagster metadata)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
