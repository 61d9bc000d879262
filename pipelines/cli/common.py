"""What every part of the command shares: the one-line error and the defaults."""

from __future__ import annotations

from robust_data.errors import DatasetError
from robust_data.sources import check_name

DEFAULT_DATASET = "mnist-5k"
EXAMPLE_SQL = "SELECT label_name, count(*) FROM raw_samples GROUP BY 1"


class CliError(Exception):
    """A failure reported to the user as one line, exit status 1."""


def dataset_name(name: str) -> str:
    """A dataset name given to report, export or score-model, checked like ingest's."""
    try:
        return check_name(name)
    except DatasetError as error:
        raise DatasetError(
            error.expected, error.found, "pass a dataset listed by 'robust-data datasets'"
        ) from None
