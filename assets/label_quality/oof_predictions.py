"""``oof_predictions``: out-of-fold pred_probs and embeddings of every training sample.

A graph-backed asset that fans out like ``rpr_scores``: ``plan_oof_folds`` emits one step
per fold, ``train_oof_fold`` trains one fold model and predicts the samples it held out (a
worker process or pod of its own) and ``merge_oof_folds`` joins the folds with the reference
embeddings into the table one process gives, bit for bit.
"""

import json

import pyarrow as pa
from dagster import (
    AssetIn,
    DynamicOut,
    DynamicOutput,
    MetadataValue,
    OpExecutionContext,
    Out,
    config_mapping,
    graph_asset,
    op,
)
from pydantic import Field

from assets.checks import check_result, check_spec
from assets.config import FROM_COMPUTE, CoreConfig
from assets.metadata import table_definition
from assets.partitions import DATASETS
from assets.resources import GPU_POOL, GPU_STEP_TAGS, ComputeResource, transient_failures_retried
from assets.versions import versioned
from robust_data.label_quality.oof import OofOptions, fold_plan, merge_folds, oof_fold
from robust_data.label_quality.oof_table import OOF_SCHEMA, check_oof
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.reference import load_reference


class OofPredictionsConfig(
    CoreConfig, core=OofOptions, omit=("model",), unset={"device": FROM_COMPUTE["device"]}
):
    """Cross-validation settings (robust_data.label_quality.oof.OofOptions); the fold models
    use the reference model's recipe."""

    epochs: int | None = Field(
        default=None,
        description="Passes over the training data of each fold model (unset: the reference "
        "model's epochs)",
    )


@config_mapping
def _split_config(config: OofPredictionsConfig) -> dict:
    """The asset's one config block -> each of its three steps."""
    settings = {"config": config.model_dump()}
    return {name: settings for name in ("plan_oof_folds", "train_oof_fold", "merge_oof_folds")}


def _options(
    config: OofPredictionsConfig, compute: ComputeResource, reference_model: pa.Table
) -> OofOptions:
    """The core options: the reference model's recipe, with the configured epochs."""
    recipe = json.loads(reference_model.column("config")[0].as_py())
    if config.epochs:
        recipe["epochs"] = config.epochs
    return config.options(model=ModelOptions(**recipe), device=compute.device)


@op(out=DynamicOut(pa.Table))
def plan_oof_folds(
    context: OpExecutionContext,
    config: OofPredictionsConfig,
    compute: ComputeResource,
    raw_samples: pa.Table,
    reference_model: pa.Table,
):
    """One output per fold: a one-row table (fold, folds); the IO manager stores tables.

    Core call: :func:`robust_data.label_quality.oof.fold_plan`.
    """
    plan = fold_plan(raw_samples, _options(config, compute, reference_model))
    for note in plan.warnings:
        context.log.warning(note)
    for k in range(plan.folds):
        yield DynamicOutput(pa.table({"fold": [k], "folds": [plan.folds]}), mapping_key=f"fold_{k}")


@op(tags=GPU_STEP_TAGS, pool=GPU_POOL)
def train_oof_fold(
    context: OpExecutionContext,
    config: OofPredictionsConfig,
    compute: ComputeResource,
    fold: pa.Table,
    raw_samples: pa.Table,
    reference_model: pa.Table,
) -> pa.Table:
    """Train one fold model (one core call: :func:`robust_data.label_quality.oof.oof_fold`)."""
    options = _options(config, compute, reference_model)
    k, count = fold.column("fold")[0].as_py(), fold.column("folds")[0].as_py()
    with transient_failures_retried(context):
        table = oof_fold(raw_samples, k, options)
    context.log.info(f"fold {k + 1}/{count}: {table.num_rows} held-out samples predicted")
    return table


@op(out={"result": Out(pa.Table), "oof_predictions_valid": Out(is_required=False)})
def merge_oof_folds(
    context: OpExecutionContext,
    config: OofPredictionsConfig,
    compute: ComputeResource,
    folds: list[pa.Table],
    raw_samples: pa.Table,
    reference_model: pa.Table,
):
    """Join the folds, add embeddings (core call: ``label_quality.oof.merge_folds``)."""
    reference, _ = load_reference(reference_model)
    options = _options(config, compute, reference_model)
    result = merge_folds(raw_samples, folds, reference, options)
    accuracy = float((result.pred_probs.argmax(axis=1) == result.labels).mean())
    metadata = {
        "oof_accuracy": MetadataValue.float(round(accuracy, 4)),
        "dagster/row_count": MetadataValue.int(len(result.sample_ids)),
        "folds": MetadataValue.int(result.folds),
        "embedding_dim": MetadataValue.int(int(result.embeddings.shape[1])),
        "fold_train_seconds": MetadataValue.float(round(result.train_seconds, 1)),
        "merge_seconds": MetadataValue.float(round(result.seconds, 1)),
        "warnings": MetadataValue.text("; ".join(result.warnings) or "none"),
    }
    table = result.table({"seed": options.seed, "embedding_dim": options.embedding_dim})
    yield versioned(table, metadata=metadata)
    yield check_result("oof_predictions", "valid", check_oof(table, raw_samples))


@graph_asset(
    name="oof_predictions",
    ins={"raw_samples": AssetIn(), "reference_model": AssetIn()},
    partitions_def=DATASETS,
    group_name="label_quality",
    kinds={"pytorch", "parquet"},
    description="Out-of-fold predictions: one row per training sample, with the class "
    "probabilities of a fold model that never saw it and its embedding. Feeds label_quality; "
    "a low oof_accuracy means the label findings rest on a weak model.",
    metadata=table_definition(OOF_SCHEMA),
    config=_split_config,
    check_specs=[
        check_spec(
            "oof_predictions", "valid", "Schema, no NaN, probabilities in [0, 1] summing to 1."
        )
    ],
)
def oof_predictions_asset(raw_samples, reference_model):
    """Plan the folds, train each, merge them."""
    fits = plan_oof_folds(raw_samples, reference_model).map(
        lambda fold: train_oof_fold(fold, raw_samples, reference_model)
    )
    merged = merge_oof_folds(fits.collect(), raw_samples, reference_model)
    return {"result": merged.result, "oof_predictions_valid": merged.oof_predictions_valid}
