"""Stage summaries: the few numbers a stage reports about what it made, as one typed record.

Each stage defines its summary beside its result type (``IngestSummary`` beside
``IngestResult``, ``ReportSummary`` beside ``Report``, ...): a frozen dataclass derived from
:class:`StageSummary`. The Dagster asset logs the record as metadata, one entry per field
(``assets.metadata.summary_metadata`` types each entry), and the CLI rebuilds the record from
a run's metadata (:meth:`StageSummary.from_metadata`) to print its summary: both go by the
record's fields, so neither spells a metadata key.

A field's entry is named after the field and typed by its value (int, float, str, or JSON for
mappings, sequences and nested dataclasses) unless its field metadata (:func:`logged`) says
otherwise: another key (:data:`ROW_COUNT`), a kind the value's type does not tell (a ``path``,
``md`` text), or ``each``: a mapping logged as one number per item, under ``<each><item>``. A
field whose value is None is not logged (e.g. counts of a check that did not run).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from robust_data.errors import DatasetError

#: The metadata key of a table's row count (Dagster shows it as the asset's row count).
ROW_COUNT = "dagster/row_count"

#: Decimals of every float shown as metadata (0.9304, not 0.9303621169916435).
DECIMALS = 4

#: How an entry is shown: by its value's type, as a path, or as Markdown.
Kind = Literal["value", "path", "md"]


def rounded(value: Any) -> Any:
    """``value`` with every float rounded for display, inside mappings, lists and tuples too.

    Floats of magnitude 0.001 or more get :data:`DECIMALS` decimals; smaller non-zero ones
    (p-values, tiny shares) keep 3 significant digits rather than turning into 0. NaN and
    infinities are kept; tuples become lists (as in JSON); anything else is returned as it is.
    Idempotent.
    """
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0.0:
            return value
        return round(value, DECIMALS) if abs(value) >= 1e-3 else float(f"{value:.3g}")
    if isinstance(value, Mapping):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def logged(
    *, key: str | None = None, kind: Kind = "value", each: str | None = None
) -> dict[str, Any]:
    """Field metadata for a summary field logged other than by its name and value type, as in
    ``rows: int = field(metadata=logged(key=ROW_COUNT))``.

    Parameters
    ----------
    key : str, optional
        The metadata key (default: the field's name), e.g. :data:`ROW_COUNT`.
    kind : {"value", "path", "md"}
        ``path`` and ``md`` for text shown as a location or as Markdown.
    each : str, optional
        For a mapping of name -> number: one entry per item, keyed ``<each><name>``.
    """
    return {"key": key, "kind": kind, "each": each}


@dataclass(frozen=True)
class Entry:
    """One metadata entry of a summary: key, plain value (JSON-ready), how to show it."""

    key: str
    value: Any
    kind: Kind = "value"


def _key(field: dataclasses.Field[Any]) -> str:
    return field.metadata.get("key") or field.name


def _plain(value: Any) -> Any:
    """A JSON-ready copy: nested dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _rebuilt(value: Any, hint: Any) -> Any:
    """A logged value back as the field's type: nested dataclasses and tuples restored."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return _record(hint, value)
    if typing.get_origin(hint) is tuple and isinstance(value, Sequence):
        return tuple(value)
    return value


def _record(kind: type[Any], values: Mapping[str, Any]) -> Any:
    """A dataclass ``kind`` from logged values keyed as :meth:`StageSummary.entries` keys them.

    Fields with a default may be missing; a missing required field is a DatasetError.
    """
    hints = typing.get_type_hints(kind)
    found: dict[str, Any] = {}
    for field in dataclasses.fields(kind):
        each, key = field.metadata.get("each"), _key(field)
        if each:  # entries <each><name> holding numbers (other entries may share the prefix)
            found[field.name] = {
                k.removeprefix(each): v
                for k, v in values.items()
                if k.startswith(each) and _is_number(v)
            }
        elif key in values:
            found[field.name] = _rebuilt(values[key], hints[field.name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise DatasetError(
                f"the metadata entry {key!r} of {kind.__name__}",
                f"only {sorted(values)}",
                "materialize the asset again with this version",
            )
    return kind(**found)


class StageSummary:
    """Base of the stage summary records (frozen dataclasses): to metadata and back."""

    def entries(self) -> list[Entry]:
        """The metadata entries, in field order: one per field, or per item of an ``each``."""
        entries: list[Entry] = []
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value, kind = getattr(self, field.name), field.metadata.get("kind", "value")
            each = field.metadata.get("each")
            if value is None:
                continue
            if each:
                entries += [Entry(f"{each}{name}", v, kind) for name, v in value.items()]
            else:
                entries.append(Entry(_key(field), _plain(value), kind))
        return entries

    @classmethod
    def from_metadata(cls, values: Mapping[str, Any]) -> Self:
        """The record from the plain values of an asset's metadata (key -> value).

        Raises
        ------
        DatasetError
            When a field without a default has no entry.
        """
        return _record(cls, values)
