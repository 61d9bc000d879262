"""Query rows as text: an aligned table, CSV or JSON lines; every cell printable.

A stored value cannot colour, move or rewrite the terminal it is printed on
(:func:`printable`); bytes show as their size in the table and as base64 in JSON, numbers
keep a readable precision, and CSV and JSON lines are written batch by batch.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, TextIO

import pyarrow as pa

FORMATS = ("table", "csv", "json")


def _json_lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(_jsonable(r), sort_keys=False) + "\n" for r in rows)


def _csv_lines(names: list[str], rows: list[dict[str, Any]], header: bool = False) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(names)
    for row in rows:
        writer.writerow([_cell_csv(row[n]) for n in names])
    return out.getvalue()


def table_text(
    names: list[str], cells: list[list[str]], footer: str, right: list[bool] | None = None
) -> str:
    """Columns two spaces apart: ``right[i]`` ones (numbers) right-aligned, the rest left."""
    names = [printable(n) for n in names]
    widths = [max([len(n)] + [len(c[i]) for c in cells]) for i, n in enumerate(names)]
    right = right or [False] * len(names)

    def joined(texts: list[str]) -> str:
        return "  ".join(
            t.rjust(w) if r else t.ljust(w) for t, w, r in zip(texts, widths, right, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([joined(names), rule, *map(joined, cells), footer]) + "\n"


def numeric_columns(schema: pa.Schema) -> list[bool]:
    """Per column: integer, floating-point or decimal (right-aligned in the table)."""
    return [
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        for t in schema.types
    ]


def row_count(rows: int) -> str:
    """The aligned table's footer: ``(N rows)``."""
    return f"({rows} row{'s' if rows != 1 else ''})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, Decimal):  # DuckDB sums are HUGEINT/DECIMAL: JSON numbers, not strings
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _cell_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, bytes)):
        return json.dumps(_jsonable(value))
    return str(value)


def _cell_text(value: Any, max_width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_cell_text(v, max_width)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_item_text(v, max_width) for v in value) + "]"
    elif isinstance(value, float):
        text = _float_text(value)
    else:
        text = str(value)
    text = printable(text)
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def printable(text: str) -> str:
    r"""``text`` with each character Python's ``repr`` escapes written as ``repr`` writes it.

    Control characters (``\x1b`` that starts a terminal escape sequence, ``\n``, ``\r``,
    ``\x9b``), bidirectional overrides (``\u202e``) and other non-printable characters
    become visible text, so that a stored value cannot colour, move or rewrite the terminal
    it is printed on. Backslashes are left as they are. Printable text is returned as is.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _item_text(value: Any, max_width: int) -> str:
    """A list element: as in a cell, but strings quoted (as Python shows a list)."""
    return repr(value) if isinstance(value, str) else _cell_text(value, max_width)


def _float_text(value: float) -> str:
    """4 decimals (0.95971234 -> 0.9597); 4 significant digits where that shows 0.0000 or
    would run long (1.234e-05, 1.235e+12); nan and inf as Python writes them."""
    if not math.isfinite(value):
        return str(value)
    if value != 0 and not 5e-5 <= abs(value) < 1e12:
        return f"{value:.4g}"
    return f"{value:.4f}"


def table_cells(
    names: list[str], batches: Iterable[pa.RecordBatch], max_width: int = 40
) -> list[list[str]]:
    """The aligned table's cells of ``batches``: row by row, column ``names`` in order."""
    return [
        [_cell_text(row[n], max_width) for n in names]
        for batch in batches
        for row in batch.to_pylist()
    ]


def write_lines(out: TextIO, fmt: str, names: list[str], batches: Iterable[pa.RecordBatch]) -> None:
    """``csv`` (a header first) or ``json`` lines of ``batches``, written batch by batch."""
    if fmt == "csv":
        out.write(_csv_lines(names, [], header=True))
    for batch in batches:
        rows = batch.to_pylist()
        out.write(_csv_lines(names, rows) if fmt == "csv" else _json_lines(rows))
