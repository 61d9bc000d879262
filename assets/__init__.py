"""Dagster asset definitions: thin wrappers around one core ``robust_data`` call each."""

from assets.raw_samples import DATASETS, RawSamplesConfig, raw_samples_assets

__all__ = ["DATASETS", "RawSamplesConfig", "raw_samples_assets"]
