"""The jobs: whole-graph curation, scoring only, ingestion only."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

#: The main job: the whole graph for one dataset partition.
curation_job = define_asset_job(
    "curation_job",
    selection=AssetSelection.all(),
    description="Curate one dataset (partition): every asset of the graph and its checks.",
)

#: Scoring only: the reference model and the (sharded) RPR scores, from stored raw_samples.
scoring_job = define_asset_job(
    "scoring_job",
    selection=AssetSelection.assets("reference_model", "rpr_scores"),
    description="Train the reference model and score RPR for one dataset (partition).",
)

#: Ingestion only: read a dataset into raw_samples and ingest_rejects.
ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.groups("ingest"),
    description="Read one dataset (partition) into raw_samples.",
)

JOBS = (curation_job, scoring_job, ingest_job)
