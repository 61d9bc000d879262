"""What every part of the command shares: the one-line error and the defaults."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from robust_data.errors import DatasetError, RobustDataError, did_you_mean
from robust_data.ingest.sources import check_name
from robust_data.store.store import Store

DEFAULT_DATASET = "mnist-5k"
EXAMPLE_SQL = "SELECT label_name, count(*) FROM raw_samples GROUP BY 1"


class CliError(Exception):
    """A failure reported to the user as one line, exit status 1."""


#: An option as a core message names it (robust_data.errors): `` `root` ``, `` `resize=28x28` ``.
_OPTION = re.compile(r"`([a-z][a-z0-9_]*)(?:=([^`]*))?`")


def flagged(text: str, options: Iterable[str] | None = None) -> str:
    """``text`` of the core with each of ``options`` it names as the command's flag.

    `` `root` `` becomes ``--root``, `` `resize=28x28` `` ``--resize 28x28`` and
    `` `force=True` `` ``--force``; a name that is no flag of the command stays as it is.
    ``options`` None: any option (for text that crossed from a Dagster step, or a note).
    """
    from pipelines.cli.parser import option_names  # the parser imports this module

    names = option_names() if options is None else set(options) & option_names()

    def flag(match: re.Match[str]) -> str:
        name, value = match.groups()
        if name not in names:
            return match.group(0)
        option = "--" + name.replace("_", "-")
        return option if value in (None, "True") else f"{option} {value}"

    return _OPTION.sub(flag, text)


def error_line(error: Exception) -> str:
    """The one line the command prints for an error: options named as its flags."""
    if isinstance(error, RobustDataError):
        return flagged(str(error), error.options)
    return str(error)


def dataset_name(name: str) -> str:
    """A dataset name given to report, export or score-model, checked like ingest's."""
    try:
        return check_name(name)
    except DatasetError as error:
        raise DatasetError(
            error.expected, error.found, "pass a dataset listed by 'robust-data datasets'"
        ) from None


def stored_dataset(
    store: Store, name: str, tables: Sequence[str] = ("raw_samples",), make: str = "ingest"
) -> str:
    """``name`` checked, once ``store`` holds every one of ``tables`` for it (browse, report,
    export, score-model, review).

    Parameters
    ----------
    tables : sequence of str
        What the command reads (``raw_samples``: an ingested dataset).
    make : str
        The command that makes them: ``ingest`` or ``curate``.

    Raises
    ------
    DatasetError
        One line. A dataset not in the home names the closest stored one (``did you mean
        'digits'?``), and advises ``make`` only when none is close; a stored dataset that lacks
        some of ``tables`` names them and advises ``make``.
    """
    name = dataset_name(name)
    missing = [table for table in tables if not store.has(table, name)]
    if not missing:
        return name
    run = (
        f"run `robust-data ingest {name}` (or curate)"
        if make == "ingest"
        else f"run `robust-data curate --dataset {name}`"
    )
    if store.has("raw_samples", name):
        raise DatasetError(
            f"a {'curated' if make == 'curate' else 'stored'} dataset {name!r} in {store.home}",
            f"no {', '.join(missing)} for it",
            f"{run} with this --home first",
        )
    stored = store.datasets()
    shown = ", ".join(stored[:10]) + (f" and {len(stored) - 10} more" if len(stored) > 10 else "")
    raise DatasetError(
        f"a dataset stored in {store.home} (stored: {shown or 'none'})",
        f"{name!r}, which is not in this home",
        did_you_mean(name, stored) or f"{run} with this --home first",
    )
