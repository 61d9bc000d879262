"""``label_quality``: cleanlab label issues, outliers and near-duplicates per training sample."""

from dagster import (
    AssetExecutionContext,
    AssetIn,
    MetadataValue,
    TableMetadataValue,
    asset,
)

from assets.checks import check_result, check_spec
from assets.config import CoreConfig
from assets.metadata import records_table, summary_metadata, table_definition
from assets.partitions import DATASETS
from assets.versions import versioned
from robust_data.ingest.arrays import class_names
from robust_data.label_quality.assess import (
    LABEL_QUALITY_SCHEMA,
    LabelQuality,
    LabelQualityOptions,
    assess_labels,
    check_label_quality,
)
from robust_data.present.markdown import inline_png
from robust_data.present.summary import rounded


class LabelQualityConfig(CoreConfig, core=LabelQualityOptions):
    """cleanlab settings (robust_data.label_quality.assess.LabelQualityOptions)."""


def _per_class(result: LabelQuality, names: list[str]) -> TableMetadataValue:
    """Label issues per given class: samples, issues and their share (high = a noisy class)."""
    rows = [
        {
            "class": names[k],
            "samples": total,
            "label_issues": flagged,
            "share": round(flagged / total, 4) if total else 0.0,
        }
        for k, total, flagged in result.per_class(len(names))
    ]
    columns = {
        "class": "The given label",
        "samples": "Training samples with this label",
        "label_issues": "Of them, flagged as label issues",
        "share": "label_issues / samples; high = a noisy class",
    }
    return records_table(rows, columns)


def _metadata(result: LabelQuality, names: list[str], datalab: bool) -> dict[str, MetadataValue]:
    """The summary (counts and shares) first, then the tables (Datalab's when it ran); no plot."""
    meta = summary_metadata(result.summary(datalab))
    meta["issues_per_class"] = _per_class(result, names)
    if datalab:
        summary = {
            "issue_type": "Datalab check",
            "score": "In [0, 1]; low = many or severe issues",
            "num_issues": "Samples flagged",
        }
        meta["datalab_summary"] = records_table(result.issue_summary, summary)
        meta["class_imbalance"] = MetadataValue.json(rounded(result.class_imbalance))
    return meta


@asset(
    ins={"oof_predictions": AssetIn(key="oof_predictions"), "raw_samples": AssetIn()},
    partitions_def=DATASETS,
    group_name="label_quality",
    kinds={"parquet", "python"},
    description="cleanlab's findings: one row per training sample. Low label_quality "
    "(is_label_issue true) is a suspect label, with suggested_label the likely one; low "
    "outlier_score / near_duplicate_score flag outliers and near-duplicates.",
    metadata=table_definition(LABEL_QUALITY_SCHEMA),
    check_specs=[
        check_spec(
            "label_quality", "valid", "One row per training sample, scores in [0, 1], no NaN."
        )
    ],
)
def label_quality(
    context: AssetExecutionContext, config: LabelQualityConfig, oof_predictions, raw_samples
):
    """Assess labels (one core call: :func:`robust_data.label_quality.assess.assess_labels`)."""
    options = config.options()
    result = assess_labels(oof_predictions, options)
    names = class_names(raw_samples)
    table = result.table
    meta = _metadata(result, names, options.datalab)
    meta["most_suspect"] = MetadataValue.md(
        inline_png(result.suspect_grid(raw_samples, names), "most suspect labels")
    )
    context.add_output_metadata(meta, output_name="result")
    yield versioned(table)
    yield check_result("label_quality", "valid", check_label_quality(table, oof_predictions))
