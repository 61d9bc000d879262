"""Dagster asset definitions: thin wrappers around one core ``robust_data`` call each."""

from assets.raw_samples import DATASETS, RawSamplesConfig, raw_samples_assets
from assets.reference_model import ReferenceModelConfig, reference_model
from assets.rpr_scores import RprScoresConfig, rpr_scores

__all__ = [
    "DATASETS",
    "RawSamplesConfig",
    "ReferenceModelConfig",
    "RprScoresConfig",
    "raw_samples_assets",
    "reference_model",
    "rpr_scores",
]
