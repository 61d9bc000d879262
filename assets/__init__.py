"""Dagster asset definitions: thin wrappers around one core ``robust_data`` call each."""

from assets.curation.curated_dataset import CuratedDatasetConfig, curated_dataset
from assets.curation.curation import CurationConfig, curation_assets, reviews
from assets.ingest.raw_samples import RawSamplesConfig, raw_samples_assets
from assets.label_quality.label_quality import LabelQualityConfig, label_quality
from assets.label_quality.oof_predictions import OofPredictionsConfig, oof_predictions_asset
from assets.partitions import DATASETS
from assets.report.corrupted_test import CorruptedTestConfig, corrupted_test
from assets.report.report import (
    RetrainedModelConfig,
    RobustnessReportConfig,
    retrained_model,
    robustness_report,
)
from assets.scoring.reference_model import ReferenceModelConfig, reference_model
from assets.scoring.rpr_scores import RprScoresConfig, rpr_scores
from assets.variants.variants import VariantsConfig, variants

#: Every asset definition of the graph, upstream first.
ALL_ASSETS = (
    raw_samples_assets,
    reference_model,
    rpr_scores,
    oof_predictions_asset,
    label_quality,
    reviews,
    curation_assets,
    variants,
    curated_dataset,
    corrupted_test,
    retrained_model,
    robustness_report,
)

__all__ = [
    "ALL_ASSETS",
    "DATASETS",
    "CorruptedTestConfig",
    "CuratedDatasetConfig",
    "CurationConfig",
    "LabelQualityConfig",
    "OofPredictionsConfig",
    "RawSamplesConfig",
    "ReferenceModelConfig",
    "RetrainedModelConfig",
    "RobustnessReportConfig",
    "RprScoresConfig",
    "VariantsConfig",
    "corrupted_test",
    "curated_dataset",
    "curation_assets",
    "label_quality",
    "oof_predictions_asset",
    "raw_samples_assets",
    "reference_model",
    "retrained_model",
    "reviews",
    "robustness_report",
    "rpr_scores",
    "variants",
]
