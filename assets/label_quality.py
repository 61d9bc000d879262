"""``label_quality``: cleanlab label issues, outliers and near-duplicates per training sample."""

from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset

from assets.checks import check_result, check_spec
from assets.raw_samples import DATASETS
from robust_data.arrays import class_names
from robust_data.checks import check_label_quality
from robust_data.label_quality import LabelQuality, LabelQualityOptions, assess_labels
from robust_data.markdown import inline_png


class LabelQualityConfig(Config):
    """cleanlab settings."""

    method: str = "self_confidence"  # or normalized_margin, confidence_weighted_entropy
    filter_by: str = "prune_by_noise_rate"  # find_label_issues rule
    datalab: bool = True  # outliers, near-duplicates, class imbalance on the embeddings


def _per_class_md(result: LabelQuality, names: list[str]) -> str:
    lines = ["| class | samples | label issues | share |", "|---|---:|---:|---:|"]
    for k, total, flagged in result.per_class(len(names)):
        share = flagged / total if total else 0.0
        lines.append(f"| {names[k]} | {total:,} | {flagged:,} | {share:.1%} |")
    return "\n".join(lines)


@asset(
    ins={"oof_predictions": AssetIn(key="oof_predictions"), "raw_samples": AssetIn()},
    partitions_def=DATASETS,
    group_name="label_quality",
    kinds={"parquet", "python"},
    description="Per training sample: label_quality (low = suspect), is_label_issue, "
    "suggested_label, outlier and near-duplicate findings.",
    check_specs=[
        check_spec(
            "label_quality", "valid", "One row per training sample, scores in [0, 1], no NaN."
        )
    ],
)
def label_quality(
    context: AssetExecutionContext, config: LabelQualityConfig, oof_predictions, raw_samples
):
    """Assess labels (one core call: :func:`robust_data.label_quality.assess_labels`)."""
    options = LabelQualityOptions(
        method=config.method, filter_by=config.filter_by, datalab=config.datalab
    )
    result = assess_labels(oof_predictions, options)
    names = class_names(raw_samples)
    table = result.table
    meta = {
        "dagster/row_count": MetadataValue.int(table.num_rows),
        "label_issues": MetadataValue.int(sum(table.column("is_label_issue").to_pylist())),
        "flagged_share": MetadataValue.float(round(result.flagged_share(), 4)),
        "issues_per_class": MetadataValue.md(_per_class_md(result, names)),
        "most_suspect": MetadataValue.md(
            inline_png(result.suspect_grid(raw_samples, names), "most suspect labels")
        ),
    }
    if config.datalab:
        meta["outliers"] = MetadataValue.int(sum(table.column("is_outlier").to_pylist()))
        meta["near_duplicates"] = MetadataValue.int(
            sum(table.column("is_near_duplicate").to_pylist())
        )
        meta["class_imbalance"] = MetadataValue.json(result.class_imbalance)
        meta["datalab_summary"] = MetadataValue.json(result.issue_summary)
    context.add_output_metadata(meta, output_name="result")
    yield Output(table)
    yield check_result("label_quality", "valid", check_label_quality(table, oof_predictions))
