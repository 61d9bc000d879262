"""``oof_predictions``: out-of-fold pred_probs and embeddings of every training sample."""

import json

from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset

from assets.checks import check_result, check_spec
from assets.metadata import table_definition
from assets.raw_samples import DATASETS
from assets.resources import GPU_STEP_TAGS, ComputeResource, transient_failures_retried
from robust_data.checks import check_oof
from robust_data.models import ModelConfig
from robust_data.oof import OOF_COLUMNS_DOC, OOF_SCHEMA, OofOptions, oof_predictions
from robust_data.reference import load_reference


class OofPredictionsConfig(Config):
    """Cross-validation settings; the fold models use the reference model's recipe."""

    folds: int = 5  # reduced (with a warning) to the smallest class's training count
    embedding_dim: int = 64  # PCA components of the reference model's penultimate layer
    seed: int = 0  # fold assignment and PCA
    epochs: int | None = None  # unset: the reference model's epochs
    device: str | None = None  # auto, cpu or cuda; unset: the compute resource's device


@asset(
    name="oof_predictions",
    ins={"raw_samples": AssetIn(), "reference_model": AssetIn()},
    partitions_def=DATASETS,
    group_name="label_quality",
    kinds={"pytorch", "parquet"},
    description="Out-of-fold predictions: one row per training sample, with the class "
    "probabilities of a fold model that never saw it and its embedding. Feeds label_quality; "
    "a low oof_accuracy means the label findings rest on a weak model.",
    metadata=table_definition(OOF_SCHEMA, OOF_COLUMNS_DOC),
    op_tags=GPU_STEP_TAGS,
    check_specs=[
        check_spec(
            "oof_predictions", "valid", "Schema, no NaN, probabilities in [0, 1] summing to 1."
        )
    ],
)
def oof_predictions_asset(
    context: AssetExecutionContext,
    config: OofPredictionsConfig,
    compute: ComputeResource,
    raw_samples,
    reference_model,
):
    """Stratified K-fold training (one core call: :func:`robust_data.oof.oof_predictions`)."""
    reference, _ = load_reference(reference_model)
    recipe = json.loads(reference_model.column("config")[0].as_py())
    if config.epochs:
        recipe["epochs"] = config.epochs
    options = OofOptions(
        folds=config.folds,
        model=ModelConfig(**recipe),
        embedding_dim=config.embedding_dim,
        seed=config.seed,
        device=config.device or compute.device,
    )
    with transient_failures_retried(context):
        result = oof_predictions(raw_samples, reference, options)
    for note in result.warnings:
        context.log.warning(note)
    accuracy = float((result.pred_probs.argmax(axis=1) == result.labels).mean())
    context.add_output_metadata(
        output_name="result",
        metadata={
            "oof_accuracy": MetadataValue.float(round(accuracy, 4)),
            "dagster/row_count": MetadataValue.int(len(result.sample_ids)),
            "folds": MetadataValue.int(result.folds),
            "embedding_dim": MetadataValue.int(int(result.embeddings.shape[1])),
            "seconds": MetadataValue.float(round(result.seconds, 1)),
            "training_share": MetadataValue.float(round(result.train_seconds / result.seconds, 3)),
            "warnings": MetadataValue.text("; ".join(result.warnings) or "none"),
        },
    )
    table = result.table({"seed": config.seed, "embedding_dim": config.embedding_dim})
    yield Output(table)
    yield check_result("oof_predictions", "valid", check_oof(table, raw_samples))
