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
    "CurationTables",
    "DatasetError",
    "Home",
    "IngestOptions",
    "IngestResult",
    "Store",
    "__version__",
    "curate",
    "ingest",
    "resolve_home",
    "resolve_source",
]


def __getattr__(name: str):
    """``CuratedDataset``, ``curate`` and ``CurationTables`` import torch, and ``Home`` pandas:
    each is loaded on first use, not with the package."""
    if name == "CuratedDataset":
        from robust_data.export.dataset import CuratedDataset

        return CuratedDataset
    if name in ("curate", "CurationTables"):
        from robust_data import notebook

        return getattr(notebook, name)
    if name == "Home":
        from robust_data.store.frames import Home

        return Home
    raise AttributeError(f"module 'robust_data' has no attribute {name!r}")
