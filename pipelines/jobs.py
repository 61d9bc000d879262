"""The jobs: whole-graph curation, scoring only, ingestion only."""

from __future__ import annotations

from dagster import AssetSelection, HookContext, define_asset_job, failure_hook, success_hook

from robust_data.scoring.device import release_memory


@success_hook(name="release_memory_after_success")
def _released_after_success(context: HookContext) -> None:
    """Return a finished step's freed memory to the OS (one process runs many steps)."""
    release_memory()


@failure_hook(name="release_memory_after_failure")
def _released_after_failure(context: HookContext) -> None:
    """The same after a failed step, so that a retry starts from a trimmed heap."""
    release_memory()


#: Hooks of every job: freed memory goes back to the OS after each step.
HOOKS = {_released_after_success, _released_after_failure}

#: The main job: the whole graph for one dataset partition.
curation_job = define_asset_job(
    "curation_job",
    selection=AssetSelection.all(),
    description="Curate one dataset (partition): every asset of the graph and its checks.",
    hooks=HOOKS,
)

#: Scoring only: the reference model and the (sharded) RPR scores, from stored raw_samples.
scoring_job = define_asset_job(
    "scoring_job",
    selection=AssetSelection.assets("reference_model", "rpr_scores"),
    description="Train the reference model and score RPR for one dataset (partition).",
    hooks=HOOKS,
)

#: Ingestion only: read a dataset into raw_samples and ingest_rejects.
ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.groups("ingest"),
    description="Read one dataset (partition) into raw_samples.",
    hooks=HOOKS,
)

JOBS = (curation_job, scoring_job, ingest_job)
