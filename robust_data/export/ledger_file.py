"""The curation ledger shipped with an export: ``ledger.csv`` and its per-class counts.

``ledger.csv`` holds one row per input training sample, kept or dropped, with the reason of a
drop (the first rule it failed) and the human review that changed it, so a reader can tell
which samples are missing from the train split and why. It is CSV, not Parquet: no reader that
globs an export's Parquet files (DuckDB ``**/*.parquet``, ``datasets``' parquet and imagefolder
builders, ``pyarrow.dataset`` over ``data/``) can take it for a split, and it opens in a
spreadsheet; its text cells are written as ``robust-data review export`` writes them (a cell
starting with ``= + - @``, a tab or a carriage return gets a leading ``'``, so no spreadsheet
evaluates it).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

import pyarrow as pa

from robust_data.curation.ledger import REASONS
from robust_data.curation.reviews_csv import csv_cell
from robust_data.present.markdown import markdown_cell

LEDGER_FILE = "ledger.csv"
#: ``ledger.csv``'s columns: the stored ledger's, with the class name after the label.
LEDGER_COLUMNS = (
    "sample_id",
    "label",
    "label_name",
    "kept",
    "reason",
    "review",
    "overridden",
    "new_label",
)


def _cell(value: Any) -> str:
    """A CSV cell: empty for null, ``true``/``false``, numbers as written, text formula-safe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return csv_cell(str(value))


def ledger_csv(ledger: pa.Table, names: list[str]) -> str:
    """``ledger.csv``'s text: :data:`LEDGER_COLUMNS`, one row per ledger row, in its order.

    Parameters
    ----------
    ledger : pa.Table
        The stored ``curation_ledger`` (``review``, ``overridden`` and ``new_label`` may be
        missing in tables made before reviews: empty cells).
    names : list of str
        Class names indexed by label; a label beyond them is named by its number.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(LEDGER_COLUMNS)
    columns = set(ledger.column_names)
    for row in ledger.to_pylist():
        label = row["label"]
        values = {
            **{name: row.get(name) if name in columns else None for name in LEDGER_COLUMNS},
            "label_name": names[label] if 0 <= label < len(names) else str(label),
        }
        writer.writerow([_cell(values[name]) for name in LEDGER_COLUMNS])
    return out.getvalue()


def class_outcomes(ledger: pa.Table) -> dict[int, dict[str, int]]:
    """Per stored label: ``before`` (input samples), ``kept``, ``dropped``, ``relabelled`` (kept
    with a new label), and the drops per reason (only reasons that occur).

    A relabelled sample counts under its stored label here; in the export it trains under its
    new one.
    """
    rows = ledger.to_pylist()
    out: dict[int, dict[str, int]] = {}
    for row in rows:
        counts = out.setdefault(row["label"], Counter())
        counts["before"] += 1
        if row["kept"]:
            counts["kept"] += 1
            new = row.get("new_label")
            counts["relabelled"] += int(new is not None and new != row["label"])
        else:
            counts["dropped"] += 1
            counts[row["reason"] or "unknown"] += 1
    fields = ("before", "kept", "dropped", "relabelled")
    return {
        label: {name: int(counts.get(name, 0)) for name in (*fields, *_reasons(out))}
        for label, counts in sorted(out.items())
    }


def _reasons(per_class: dict[int, Any]) -> list[str]:
    """The drop reasons that occur in any class, in rule order (unknown ones last)."""
    seen = {key for counts in per_class.values() for key in counts}
    known = [r for r in REASONS if r in seen]
    extra = sorted(seen - set(REASONS) - {"before", "kept", "dropped", "relabelled"})
    return known + extra


def class_outcome_lines(per_class: dict[int, dict[str, int]], names: list[str]) -> list[str]:
    """The card's table: one row per class, its input samples, kept, dropped per reason."""
    reasons = _reasons(per_class)
    header = ["before", "kept", "dropped", *reasons, "relabelled"]
    lines = [
        "| label | class | " + " | ".join(header) + " |",
        "|---:|---|" + "---:|" * len(header),
    ]
    for label, counts in per_class.items():
        name = names[label] if 0 <= label < len(names) else str(label)
        cells = [f"{counts.get(key, 0):,}" for key in header]
        lines.append(f"| {label} | {markdown_cell(name)} | " + " | ".join(cells) + " |")
    totals = [f"{sum(c.get(key, 0) for c in per_class.values()):,}" for key in header]
    return [*lines, "| | **total** | " + " | ".join(totals) + " |"]
