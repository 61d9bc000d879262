"""The code location: ``dagster dev -w workspace.yaml`` and the CLI both load this module.

The home folder comes from ``ROBUST_DATA_HOME`` (default ``./.robust-data``); set
``DAGSTER_HOME`` to ``<home>/dagster`` so that the UI sees the CLI's runs (``robust-data ui``
does both). ``ROBUST_DATA_STORE`` moves the tables (a folder or an fsspec URL),
``ROBUST_DATA_DEVICE`` picks the compute device and ``ROBUST_DATA_MAX_CONCURRENT`` bounds the
steps that run at once (default 2) when a run is launched from the UI, a sensor or a schedule.
``ROBUST_DATA_EXECUTOR=k8s`` runs every step as its own Kubernetes pod instead (dagster-k8s).
"""

from __future__ import annotations

from dagster import (
    Definitions,
    ExecutorDefinition,
    JobDefinition,
    in_process_executor,
    multiprocess_executor,
)

from assets import ALL_ASSETS
from assets.resources import (
    EXECUTOR_ENV,
    ComputeResource,
    HomeResource,
    ParquetIOManager,
    Settings,
)
from pipelines.automation import curation_schedule, inbox_sensor
from pipelines.jobs import JOBS, curation_job, ingest_job, scoring_job
from robust_data.errors import RobustDataError
from robust_data.scoring.device import tune_allocator
from robust_data.store.store import Store

# Every step process loads this module: reuse freed tensor memory (no page-fault churn).
tune_allocator()

__all__ = ["build_definitions", "curation_job", "defs", "ingest_job", "scoring_job"]


def _executor(settings: Settings) -> ExecutorDefinition:
    """``multiprocess`` (default: steps as local processes), ``k8s`` (steps as pods) or
    ``celery`` (steps as tasks on Celery workers).

    The Kubernetes and Celery executors are left unconfigured so that a run's ``execution``
    config (deploy/k8s-executor.yaml; the broker and backend URLs for Celery) sets them; a
    preconfigured executor would silently ignore that.
    """
    if settings.executor == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError:
            raise RobustDataError(
                f"dagster-celery installed for {EXECUTOR_ENV}=celery",
                "it missing",
                "pip install -c constraints.txt '.[cluster]'",
            ) from None
        return celery_executor
    if settings.executor == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise RobustDataError(
                f"dagster-k8s installed for {EXECUTOR_ENV}=k8s",
                "it missing",
                "pip install -c constraints.txt '.[k8s]' (deploy/Dockerfile does)",
            ) from None
        return k8s_job_executor
    return multiprocess_executor.configured({"max_concurrent": settings.max_concurrent})


def build_definitions(store: Store | None = None) -> Definitions:
    """Definitions bound to a home folder (default: resolved from the environment)."""
    store = store or Store.open()
    settings = Settings.from_environ()
    return Definitions(
        assets=list(ALL_ASSETS),
        jobs=list(JOBS),
        sensors=[inbox_sensor],
        schedules=[curation_schedule],
        resources={
            "io_manager": ParquetIOManager(root=store.tables_root),
            "home": HomeResource(path=str(store.home)),
            "compute": ComputeResource(device=settings.device),
        },
        executor=_executor(settings),
    )


defs = build_definitions()


def resolved_job(name: str) -> JobDefinition:
    """A job of the environment's definitions (for ``reconstructable`` in worker processes)."""
    return build_definitions().resolve_job_def(name)


def in_process_job(name: str, home: str, tables_root: str) -> JobDefinition:
    """Job ``name`` over the store at ``home`` / ``tables_root``, with the in-process executor.

    The CLI runs single-worker jobs this way through ``execute_job`` rather than
    ``execute_in_process``, which keeps every step's output value in memory until the run ends
    (at 60,000 images the corrupted test set alone is 0.6 GB held to the last step). The store
    is an argument because Dagster caches a reconstructed job by its arguments: one process
    that runs jobs for several homes must not reuse the first home's definitions.
    """
    store = Store.open(home, storage_root=tables_root)
    return build_definitions(store).resolve_job_def(name).with_executor_def(in_process_executor)


def curation_job_def() -> JobDefinition:
    """The curation job, reconstructable in worker processes."""
    return resolved_job("curation_job")


def scoring_job_def() -> JobDefinition:
    """The scoring job, reconstructable in worker processes."""
    return resolved_job("scoring_job")
