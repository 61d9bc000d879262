"""robust-data: curate image-classification datasets for robustness.

The core library. It never imports dagster: the Dagster assets in ``assets/`` and the
definitions in ``pipelines/`` are thin wrappers around the functions exported here.
"""

from robust_data.errors import DatasetError
from robust_data.ingest.build import IngestOptions, IngestResult, ingest
from robust_data.ingest.sources import SOURCES, resolve_source
from robust_data.store.home import resolve_home
from robust_data.store.schema import REJECTS_SCHEMA, SAMPLES_SCHEMA
from robust_data.store.store import Store
from robust_data.version import __version__

__all__ = [
    "REJECTS_SCHEMA",
    "SAMPLES_SCHEMA",
    "SOURCES",
    "CuratedDataset",
    "DatasetError",
    "IngestOptions",
    "IngestResult",
    "Store",
    "__version__",
    "ingest",
    "resolve_home",
    "resolve_source",
]


def __getattr__(name: str):
    """``CuratedDataset`` imports torch: load it on first use, not with the package."""
    if name == "CuratedDataset":
        from robust_data.export.dataset import CuratedDataset

        return CuratedDataset
    raise AttributeError(f"module 'robust_data' has no attribute {name!r}")
