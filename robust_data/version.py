"""Package version and the code revision stamped into every Parquet file."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

try:
    __version__ = metadata.version("robust-data")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


@functools.lru_cache(maxsize=1)
def code_revision() -> str | None:
    """Return the git commit of the source tree this package runs from, if there is one.

    Returns
    -------
    str or None
        40-hex commit id, suffixed with ``-dirty`` when the tree has uncommitted changes;
        None when the package is not inside a git work tree or git is missing.
    """
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    suffix = "-dirty" if dirty.stdout.strip() else ""
    return rev.stdout.strip() + suffix
