"""The code location: ``dagster dev -w workspace.yaml`` and the CLI both load this module.

The home folder comes from ``ROBUST_DATA_HOME`` (default ``./.robust-data``); set
``DAGSTER_HOME`` to ``<home>/dagster`` so that the UI sees the CLI's runs (``robust-data ui``
does both).
"""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

from assets import (
    curated_dataset,
    curation_assets,
    label_quality,
    oof_predictions_asset,
    raw_samples_assets,
    reference_model,
    retrained_model,
    robustness_report,
    rpr_scores,
    variants,
)
from pipelines.resources import HomeResource, ParquetIOManager
from robust_data.store import Store

#: The main job: the whole graph for one dataset partition. It grows as the graph grows.
curation_job = define_asset_job(
    "curation_job",
    selection=AssetSelection.all(),
    description="Curate one dataset (partition): every asset of the graph.",
)

#: Ingestion only: read a dataset into raw_samples and ingest_rejects.
ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.groups("ingest"),
    description="Read one dataset (partition) into raw_samples.",
)


def build_definitions(store: Store | None = None) -> Definitions:
    """Definitions bound to a home folder (default: resolved from the environment)."""
    store = store or Store.open()
    return Definitions(
        assets=[
            raw_samples_assets,
            reference_model,
            rpr_scores,
            oof_predictions_asset,
            label_quality,
            variants,
            curation_assets,
            curated_dataset,
            retrained_model,
            robustness_report,
        ],
        jobs=[curation_job, ingest_job],
        resources={
            "io_manager": ParquetIOManager(root=str(store.storage_root)),
            "home": HomeResource(path=str(store.home)),
        },
    )


defs = build_definitions()
