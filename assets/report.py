"""``retrained_model`` and ``robustness_report``: retrain on the curated data, prove the effect."""

import json
from pathlib import Path

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset
from pydantic import Field

from assets.checks import check_result, check_spec
from assets.raw_samples import DATASETS
from assets.resources import GPU_STEP_TAGS, HomeResource
from robust_data.arrays import decode_samples, num_classes
from robust_data.checks import check_accuracy_loss, check_model_table, check_report
from robust_data.models import ModelConfig, load_model
from robust_data.reference import load_reference
from robust_data.report import (
    Candidate,
    add_variants,
    build_report,
    inline_png,
    original_count,
    paper_table_markdown,
    random_subset,
    read_export,
    retrain,
    write_report,
)
from robust_data.rpr.engine import RprOptions
from robust_data.schema import read_params

RETRAINED_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("train_size", pa.int64(), nullable=False),
        pa.field("test_accuracy", pa.float64()),
    ]
)


class RetrainedModelConfig(Config):
    """How to retrain."""

    with_variants: bool = True  # train on the export's variant rows too
    baselines: list[str] = Field(default_factory=lambda: ["random_subset"])  # or []
    seed: int = 0  # of the random subset


@asset(
    ins={
        "curated_dataset": AssetIn(),
        "reference_model": AssetIn(),
        "raw_samples": AssetIn(),
        "variants": AssetIn(),
    },
    partitions_def=DATASETS,
    group_name="report",
    kinds={"pytorch", "parquet"},
    description="Models trained with the reference recipe on the curated export (and baselines).",
    op_tags=GPU_STEP_TAGS,
    check_specs=[
        check_spec("retrained_model", "valid", "Accuracies in [0, 1]; weight files match sha256."),
        check_spec(
            "retrained_model",
            "accuracy_loss",
            "Guard (warning): no retrained model more than 1 pt below the reference's accuracy.",
            blocking=False,
        ),
    ],
)
def retrained_model(
    context: AssetExecutionContext,
    config: RetrainedModelConfig,
    home: HomeResource,
    curated_dataset,
    reference_model,
    raw_samples,
    variants,
):
    """Retrain (core calls: :func:`robust_data.report.retrain` per model)."""
    export = Path(curated_dataset.column("path")[0].as_py()).parent
    recipe = ModelConfig(**json.loads(reference_model.column("config")[0].as_py()))
    data = decode_samples(raw_samples)
    test = data.where(data.splits == "test")
    size = original_count(export)  # the curated set without its variants

    def baseline():
        subset = random_subset(data.where(data.splits == "train"), size, config.seed)
        # The same variants as the curated export, of the subset's own parents.
        return add_variants(subset, variants) if config.with_variants else subset

    # Each training set is decoded when its model trains, so one is in memory at a time.
    jobs = {"retrained": lambda: read_export(export, "train", config.with_variants)}
    if "random_subset" in config.baselines:
        jobs["random_subset"] = baseline
    folder = home.store().storage_root / "retrained_model"
    rows = []
    for name, load in jobs.items():
        train = load()
        path = folder / f"{context.partition_key}-{name}.pt"
        trained, sha = retrain(train, recipe, num_classes(raw_samples), path, test)
        rows.append(
            {
                "model": name,
                "path": str(path),
                "sha256": sha,
                "train_size": len(train),
                "test_accuracy": trained.metrics["test_accuracy"],
            }
        )
    table = pa.Table.from_pylist(rows, schema=RETRAINED_SCHEMA)
    guard = check_accuracy_loss(table, reference_model.column("test_accuracy")[0].as_py())
    for problem in guard.problems:
        context.log.warning(problem)
    metadata = {
        r["model"]: f"{r['train_size']:,} images, test accuracy {r['test_accuracy']:.4f}"
        for r in rows
    }
    context.add_output_metadata(output_name="result", metadata=metadata | {"guard": guard.summary()})
    yield Output(table)
    yield check_result("retrained_model", "valid", check_model_table(table, RETRAINED_SCHEMA))
    yield check_result("retrained_model", "accuracy_loss", guard, warning=True)


class RobustnessReportConfig(Config):
    """What the report evaluates."""

    corruptions: list[str] = Field(default_factory=list)  # empty: all corrupted_test holds
    device: str = "auto"


@asset(
    ins={
        "retrained_model": AssetIn(),
        "reference_model": AssetIn(),
        "raw_samples": AssetIn(),
        "rpr_scores": AssetIn(),
        "corrupted_test": AssetIn(),
    },
    partitions_def=DATASETS,
    group_name="report",
    kinds={"parquet"},
    description="Per model: training-set size, test accuracy, test robust fraction, ECE, corruption "
    "accuracy and mCE; the full report is under <home>/reports/<dataset>/.",
    check_specs=[
        check_spec("robustness_report", "valid", "No NaN; fractions in [0, 1]; reference mCE is 1.")
    ],
)
def robustness_report(
    context: AssetExecutionContext,
    config: RobustnessReportConfig,
    home: HomeResource,
    retrained_model,
    reference_model,
    raw_samples,
    rpr_scores,
    corrupted_test,
):
    """Build the report (one core call: :func:`robust_data.report.build_report`)."""
    reference, ref_file = load_reference(reference_model)
    ref_row = reference_model.to_pylist()[0]
    candidates = [Candidate("reference", reference, ref_file.sha256, ref_row["train_samples"])]
    for row in retrained_model.to_pylist():
        model, _ = load_model(row["path"], row["sha256"])
        candidates.append(Candidate(row["model"], model, row["sha256"], row["train_size"]))
    params = read_params(rpr_scores.schema)
    options = RprOptions(
        scheme=params.get("scheme", "pixels"),
        max_steps=params.get("max_steps", 250),
        seed=params.get("seed", 0),
        device=config.device,
    )
    test = decode_samples(raw_samples, splits=("test",))
    report = build_report(
        context.partition_key,
        candidates,
        test,
        rpr_scores,
        options,
        corrupted_test,
        config.corruptions or None,
    )
    path = write_report(report, home.store().home / "reports" / context.partition_key)
    context.add_output_metadata(
        output_name="result",
        metadata={
            "paper_table": MetadataValue.md(paper_table_markdown(report.table)),
            "robustness_curves": MetadataValue.md(
                inline_png(report.figures["robustness_curves"], "robustness curves")
            ),
            "corruption_accuracy": MetadataValue.md(
                inline_png(report.figures["corruption_accuracy"], "accuracy per corruption")
            ),
            "mce": MetadataValue.json({r["model"]: r["mce"] for r in report.table.to_pylist()}),
            "report": MetadataValue.path(str(path)),
        }
    )
    yield Output(report.table)
    yield check_result("robustness_report", "valid", check_report(report.table))
