"""``retrained_model`` and ``robustness_report``: retrain on the curated data, prove the effect."""

from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset
from pydantic import Field

from assets.checks import check_result, check_spec
from assets.raw_samples import DATASETS
from assets.resources import (
    GPU_STEP_TAGS,
    ComputeResource,
    HomeResource,
    transient_failures_retried,
)
from robust_data.arrays import decode_samples, num_classes
from robust_data.checks import check_accuracy_loss, check_model_table, check_report
from robust_data.defaults import MAX_STEPS
from robust_data.evaluate import JudgeOptions, held_out_scheme, used_families
from robust_data.markdown import inline_png
from robust_data.models import load_model
from robust_data.policies import preset_from_params
from robust_data.reference import load_reference
from robust_data.report import (
    Candidate,
    ReportSetup,
    build_report,
    headline_verdicts,
    paper_table_markdown,
    stored_steps,
    summary_markdown,
    write_report,
)
from robust_data.retrain import (
    RETRAINED_SCHEMA,
    RetrainOptions,
    StoredModel,
    curation_inputs,
    retrain_models,
)
from robust_data.rpr.table import scored_max_steps
from robust_data.schema import read_params


class RetrainedModelConfig(Config):
    """Which models the report compares, and how many seeds each."""

    seeds: int = 3  # >= 2 for intervals; each seed trains every training set
    baselines: list[str] = Field(
        default_factory=lambda: ["random_subset", "all_with_variants"]
    )  # besides reference and curated; see robust_data.retrain.TRAINING_SETS
    device: str | None = None  # auto, cpu or cuda; unset: the compute resource's device


@asset(
    ins={
        "raw_samples": AssetIn(),
        "rpr_scores": AssetIn(),
        "curation_ledger": AssetIn(),
        "reference_model": AssetIn(),
    },
    # Seed 0's curated set is the export's train split, variants included (made alike).
    deps=["curated_dataset", "variants"],
    partitions_def=DATASETS,
    group_name="report",
    kinds={"pytorch", "parquet"},
    description="Per seed: the reference recipe trained on all originals, on the curated set "
    "with its preset's variants, and on the equal-budget baselines.",
    op_tags=GPU_STEP_TAGS,
    check_specs=[
        check_spec("retrained_model", "valid", "Accuracies in [0, 1]; weight files match sha256."),
        check_spec(
            "retrained_model",
            "accuracy_loss",
            "Guard (warning): no model's mean accuracy more than 1 pt below the reference's.",
            blocking=False,
        ),
    ],
)
def retrained_model(
    context: AssetExecutionContext,
    config: RetrainedModelConfig,
    home: HomeResource,
    compute: ComputeResource,
    raw_samples,
    rpr_scores,
    curation_ledger,
    reference_model,
):
    """Train every model of every seed.

    One core call: :func:`robust_data.retrain.retrain_models`.
    """
    chosen = preset_from_params(read_params(curation_ledger.schema))
    reference, ref_file = load_reference(reference_model)
    data = decode_samples(raw_samples)
    train, test = data.where(data.splits == "train"), data.where(data.splits == "test")
    kept, steps = curation_inputs(train, curation_ledger, rpr_scores)
    folder = home.store().storage_root / "retrained_model"
    options = RetrainOptions(
        seeds=config.seeds,
        names=("reference", "curated", *config.baselines),
        max_steps=scored_max_steps(rpr_scores),
        device=config.device or compute.device,
    )
    with transient_failures_retried(context):
        table = retrain_models(
            train,
            test,
            kept,
            steps,
            chosen,
            reference.config,
            num_classes(raw_samples),
            lambda name, seed: folder / f"{context.partition_key}-{name}-seed{seed}.pt",
            StoredModel(reference, str(ref_file.path), ref_file.sha256),
            options,
        )
    guard = check_accuracy_loss(table)
    for problem in guard.problems:
        context.log.warning(problem)
    rows = table.to_pylist()
    metadata = {
        f"{r['model']} (seed {r['seed']})": f"{r['train_size']:,} images "
        f"({r['originals']:,} originals + {r['variants']:,} variants), test accuracy "
        f"{r['test_accuracy']:.4f}"
        for r in rows
    }
    context.add_output_metadata(
        output_name="result",
        metadata={"preset": chosen.name, **metadata, "guard": guard.summary()},
    )
    yield Output(table)
    yield check_result("retrained_model", "valid", check_model_table(table, RETRAINED_SCHEMA))
    yield check_result("retrained_model", "accuracy_loss", guard, warning=True)


class RobustnessReportConfig(Config):
    """How the report judges the models."""

    held_out_scheme: str | None = (
        None  # unset: the first of HELD_OUT_SCHEMES the variants do not use
    )
    device: str | None = None  # auto, cpu or cuda; unset: the compute resource's device


@asset(
    ins={
        "retrained_model": AssetIn(),
        "raw_samples": AssetIn(),
        "rpr_scores": AssetIn(),
        "curation_ledger": AssetIn(),
        "corrupted_test": AssetIn(),
    },
    partitions_def=DATASETS,
    group_name="report",
    kinds={"parquet"},
    description="Per seed and model: test accuracy, RPR robust fraction (scoring scheme and "
    "held out), corruption accuracy and mCE (seen and held out), ECE; verdicts with 95% "
    "intervals; the full report is under <home>/reports/<dataset>/.",
    check_specs=[
        check_spec(
            "robustness_report",
            "valid",
            "Metrics in range; every seed has reference and curated; reference mCE is 1.",
        )
    ],
)
def robustness_report(
    context: AssetExecutionContext,
    config: RobustnessReportConfig,
    home: HomeResource,
    compute: ComputeResource,
    retrained_model,
    raw_samples,
    rpr_scores,
    curation_ledger,
    corrupted_test,
):
    """Judge and compare (one core call: :func:`robust_data.report.build_report`)."""
    chosen = preset_from_params(read_params(curation_ledger.schema))
    params = read_params(rpr_scores.schema)
    transforms = chosen.plan.transforms
    setup = ReportSetup(
        context.partition_key,
        chosen.name,
        frozenset(used_families(transforms)),
        JudgeOptions(
            scheme=params.get("scheme", "pixels"),
            held_out_scheme=config.held_out_scheme or held_out_scheme(transforms),
            max_steps=params.get("max_steps", MAX_STEPS),
            seed=params.get("seed", 0),
            device=config.device or compute.device,
            precision=compute.precision,
        ),
    )
    candidates = []
    for row in retrained_model.to_pylist():
        model, _ = load_model(row["path"], row["sha256"])
        candidates.append(
            Candidate(row["model"], row["seed"], model, row["sha256"], row["train_size"])
        )
    test = decode_samples(raw_samples, splits=("test",))
    known = stored_steps(rpr_scores, test, candidates)
    with transient_failures_retried(context):
        report = build_report(setup, candidates, test, corrupted_test, known)
    path = write_report(report, home.store().home / "reports" / context.partition_key)
    for line in report.verdicts:
        context.log.info(line)
    context.add_output_metadata(
        output_name="result",
        metadata={
            "verdicts": MetadataValue.md("\n".join(f"- {v}" for v in report.verdicts)),
            "headline": MetadataValue.json(
                {
                    "preset": report.document["preset"],
                    "seeds": report.document["seeds"],
                    "verdicts": headline_verdicts(report.table),
                }
            ),
            "paper_table": MetadataValue.md(paper_table_markdown(report.table)),
            "models": MetadataValue.md(
                summary_markdown(report.document["summary"], report.document["train_sizes"])
            ),
            "robustness_curves": MetadataValue.md(
                inline_png(report.figures["robustness_curves"], "robustness curves")
            ),
            "corruption_accuracy": MetadataValue.md(
                inline_png(report.figures["corruption_accuracy"], "accuracy per corruption")
            ),
            "report": MetadataValue.path(str(path)),
        },
    )
    yield Output(report.table)
    yield check_result("robustness_report", "valid", check_report(report.table))
