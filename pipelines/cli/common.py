"""What every part of the command shares: the one-line error and the defaults."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from robust_data.errors import DatasetError, RobustDataError
from robust_data.ingest.sources import PATH_SOURCES, SOURCES, check_name

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


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``did you mean 'curate'?`` for the closest of ``known`` to ``word``; ``""`` for none."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def suggested(error: DatasetError, dataset: str, registered: Iterable[str]) -> DatasetError:
    """``error`` with ``did you mean 'mnist-5k'?`` appended when it is about ``dataset``.

    The candidates are the built-in sources and the home's ``registered`` names; for a
    ``prefix:PATH`` spec, the path sources' prefixes (``imagefoldr:/x`` -> ``imagefolder:/x``).
    Without a close match (or for an error about something else) ``error`` itself.
    """
    if error.found != repr(dataset):
        return error
    prefix, sep, path = dataset.partition(":")
    if sep:
        close = difflib.get_close_matches(prefix, [p for p in PATH_SOURCES if p != prefix], n=1)
        hint = f"did you mean {close[0] + sep + path!r}?" if close else ""
    else:
        names = [n for n in SOURCES if n not in PATH_SOURCES] + list(registered)
        hint = did_you_mean(dataset, [n for n in dict.fromkeys(names) if n != dataset])
    if not hint:
        return error
    return DatasetError(error.expected, error.found, f"{error.fix}; {hint}", options=error.options)
