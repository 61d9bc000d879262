"""The names inside an export folder (formats, data files, safe names) and its error."""

from __future__ import annotations

import re

from robust_data.errors import RobustDataError
from robust_data.store.targets import EXPORT_MARKER

FORMATS = ("parquet", "imagefolder")
MARKER = EXPORT_MARKER  # lineage.json's "format": what marks a folder as an export
DATA_FOLDER = "data"
METADATA_FILE = "metadata.parquet"


class ExportError(RobustDataError):
    """A refused or impossible export, as one line."""


def data_file(split: str) -> str:
    """A split's Parquet file in an export, relative to it: ``data/<split>-00000-of-00001``."""
    return f"{DATA_FOLDER}/{safe_name(split)}-00000-of-00001.parquet"


def safe_name(name: str) -> str:
    """A file or folder name that cannot leave its parent: [A-Za-z0-9._-] only, no leading dot."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")
    return cleaned or "_"
