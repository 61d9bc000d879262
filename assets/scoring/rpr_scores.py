"""``rpr_scores``: every datapoint's RPR under the reference model, with the paper's plots.

A graph-backed asset that fans out: ``plan_rpr_shards`` emits one step per shard,
``score_rpr_shard`` scores one contiguous slice of the samples (a worker process under the
multiprocess executor, a pod with a GPU under the Kubernetes executor) and
``merge_rpr_shards`` joins them into the table one unsharded run gives, bit for bit.
"""

import pyarrow as pa
from dagster import (
    AssetIn,
    Config,
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
from assets.metadata import summary_metadata, table_definition
from assets.partitions import DATASETS
from assets.resources import (
    GPU_POOL,
    GPU_STEP_TAGS,
    ComputeResource,
    Settings,
    transient_failures_retried,
)
from assets.versions import versioned
from robust_data.errors import RobustDataError
from robust_data.present.markdown import inline_png
from robust_data.scoring.reference import load_reference
from robust_data.scoring.rpr.engine import RprOptions
from robust_data.scoring.rpr.score import SPLITS, RprScores, Shard, merge_shards, score_samples
from robust_data.scoring.rpr.table import RPR_SCHEMA, check_rpr_scores


class RprScoresConfig(CoreConfig, core=RprOptions, unset=FROM_COMPUTE):
    """How to score (robust_data.scoring.rpr.engine.RprOptions); unset fields take its
    defaults, device and precision the compute resource's."""

    splits: list[str] | None = Field(
        default=None, description=f"Splits to score (unset: {', '.join(SPLITS)})"
    )
    shards: int | None = Field(
        default=None,
        description="Slices scored as separate steps, parallel processes or pods (unset: "
        "$ROBUST_DATA_RPR_SHARDS, default 1, read when the run starts)",
    )


class ShardPlanConfig(Config):
    """How many shards (from RprScoresConfig, by the config mapping)."""

    shards: int = 1


@config_mapping
def _split_config(config: RprScoresConfig) -> dict:
    """The asset's one config block -> its steps: the shard count to the plan, all to each shard."""
    settings = config.model_dump()
    settings["shards"] = settings["shards"] or Settings.from_environ().rpr_shards
    return {
        "plan_rpr_shards": {"config": {"shards": settings["shards"]}},
        "score_rpr_shard": {"config": settings},
    }


def _metadata(scores: RprScores, shards: int) -> dict[str, MetadataValue]:
    """The summary (robust fractions first, then how it was scored), the work, the plots."""
    result = scores.result
    meta = summary_metadata(scores.summary())
    meta.update(
        {
            "shards": MetadataValue.int(shards),
            "tries": MetadataValue.int(result.tries),
            # Over the slowest shard's wall time: the rate of the whole (parallel) scoring.
            "tries_per_second": MetadataValue.float(round(result.tries / result.seconds, 1)),
        }
    )
    titles = {
        "robustness_curve": "robustness curve per split",
        "robust_fraction_per_class": "robust fraction per class",
        "examples": "robust vs non-robust examples",
    }
    for name, png in scores.figures().items():
        meta[name] = MetadataValue.md(inline_png(png, titles[name]))
    return meta


@op(out=DynamicOut(pa.Table))
def plan_rpr_shards(config: ShardPlanConfig):
    """One output per shard: a one-row table (shard, count)."""
    if config.shards < 1:
        raise RobustDataError(
            "shards >= 1", str(config.shards), "pass `shards=1` or more", options=("shards",)
        )
    for index in range(config.shards):
        yield DynamicOutput(
            pa.table({"shard": [index], "count": [config.shards]}), mapping_key=f"shard_{index}"
        )


@op(tags=GPU_STEP_TAGS, pool=GPU_POOL)
def score_rpr_shard(
    context: OpExecutionContext,
    config: RprScoresConfig,
    compute: ComputeResource,
    shard: pa.Table,
    raw_samples: pa.Table,
    reference_model: pa.Table,
) -> pa.Table:
    """Score one shard (one core call: :func:`robust_data.scoring.rpr.score.score_samples`)."""
    spec = Shard(shard.column("shard")[0].as_py(), shard.column("count")[0].as_py())
    model, weights = load_reference(reference_model)
    options = config.options(device=compute.device, precision=compute.precision)
    splits = SPLITS if config.splits is None else tuple(config.splits)
    with transient_failures_retried(context):
        scores = score_samples(raw_samples, model, weights.sha256, options, splits, shard=spec)
    context.log.info(
        f"shard {spec.index + 1}/{spec.count}: {scores.table.num_rows} samples, "
        f"{scores.result.tries:,} tries in {scores.result.seconds:.1f} s"
    )
    return scores.table


@op(out={"result": Out(pa.Table), "rpr_scores_valid": Out(is_required=False)})
def merge_rpr_shards(context: OpExecutionContext, shards: list[pa.Table], raw_samples: pa.Table):
    """Merge the shards (one core call: :func:`robust_data.scoring.rpr.score.merge_shards`)."""
    scores = merge_shards(shards, raw_samples)
    yield versioned(scores.table, metadata=_metadata(scores, len(shards)))
    yield check_result("rpr_scores", "valid", check_rpr_scores(scores.table, raw_samples))


@graph_asset(
    ins={"raw_samples": AssetIn(), "reference_model": AssetIn()},
    partitions_def=DATASETS,
    group_name="scoring",
    kinds={"pytorch", "parquet"},
    description="Random Perturbation Robustness under the reference model: one row per sample "
    "of each scored split. Low steps_to_flip (robust false) marks a fragile point, null means "
    "it survived every try; a higher `robust_fraction_<split>` is better.",
    metadata=table_definition(RPR_SCHEMA),
    config=_split_config,
    check_specs=[
        check_spec(
            "rpr_scores",
            "valid",
            "Schema, one row per scored sample, steps in 1..max_steps, flags agree.",
        )
    ],
)
def rpr_scores(raw_samples, reference_model):
    """Plan the shards, score each, merge them."""
    scored = plan_rpr_shards().map(
        lambda shard: score_rpr_shard(shard, raw_samples, reference_model)
    )
    merged = merge_rpr_shards(scored.collect(), raw_samples)
    return {"result": merged.result, "rpr_scores_valid": merged.rpr_scores_valid}
