"""Review decisions as CSV files: ``robust-data review export`` and ``review import``.

An exported file opens in a spreadsheet without any cell evaluated as a formula, and imports
back unchanged; an imported file is checked whole against the dataset before any decision in
it is recorded (robust_data.curation.reviews).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from robust_data.curation.reviews import (
    DECISIONS,
    TABLE,
    Review,
    check_reviews,
    load_reviews,
    record_reviews,
)
from robust_data.errors import DatasetError
from robust_data.store.store import Store
from robust_data.store.targets import Output, check_output, example_file, input_tables, write_output

CSV_COLUMNS = ("sample_id", "decision", "new_label", "note", "reviewed_at")
#: How a spreadsheet tells a formula (OWASP, "CSV injection"): a cell starting with one of
#: these is evaluated. :func:`csv_cell` writes such a cell, and one starting with
#: :data:`TEXT_PREFIX` itself, behind a leading single quote, which spreadsheets show as text;
#: :func:`csv_value` drops it again, so an exported file imports as it was.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_PREFIX = "'"
#: Columns an imported CSV must have; the others of :data:`CSV_COLUMNS` are optional.
REQUIRED_COLUMNS = ("sample_id", "decision")
_HEADER = "a CSV header with sample_id and decision (optional: new_label, note, reviewed_at)"
_LAYOUT = "export one with `robust-data review export` to see the layout"
_LABEL = re.compile(r"[+-]?[0-9]+")


def _guarded(value: str) -> bool:
    """Whether a spreadsheet could read ``value`` as a formula (leading spaces skipped, as
    spreadsheets do), or it starts with the quote itself."""
    return value.startswith(TEXT_PREFIX) or value.lstrip(" ").startswith(FORMULA_STARTS)


def csv_cell(value: str) -> str:
    """A cell as review export writes it: a formula start (or the quote) behind a ``'``."""
    return TEXT_PREFIX + value if _guarded(value) else value


def csv_value(cell: str) -> str:
    """The value of a cell :func:`csv_cell` wrote: its added ``'`` dropped, else the cell."""
    if cell.startswith(TEXT_PREFIX) and _guarded(cell[1:]):
        return cell[1:]
    return cell


def reviews_csv(table: pa.Table) -> str:
    """The decisions as CSV text (:data:`CSV_COLUMNS`, ISO 8601 times), for review export.

    Every cell goes through :func:`csv_cell`, so no spreadsheet evaluates a note such as
    ``=HYPERLINK(...)``; :func:`parse_reviews_csv` reads the file back unchanged.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180: a cell with \r is quoted too
    writer.writerow(CSV_COLUMNS)
    for row in table.to_pylist():
        label = "" if row["new_label"] is None else str(row["new_label"])
        at = row["reviewed_at"].isoformat()
        cells = [row["sample_id"], row["decision"], label, row["note"] or "", at]
        writer.writerow([csv_cell(cell) for cell in cells])
    return out.getvalue()


def export_reviews_csv(
    store: Store, dataset: str, path: str | os.PathLike[str], force: bool = False
) -> int:
    """Write ``dataset``'s decisions to ``path`` as CSV (atomic); the number of rows.

    ``path`` is checked like every path written for the user
    (:func:`robust_data.store.targets.check_output`): never in the home, the store, an export or
    another robust-data home, and an existing file only with ``force``.

    Raises
    ------
    TargetError
        One line naming the path and one that works; nothing is written.
    """
    output = Output("a review CSV file", "path", example_file(store, f"{dataset}-reviews.csv"))
    target = check_output(
        store, path, output, force, input_tables(store, dataset, ("raw_samples", TABLE))
    )
    table = load_reviews(store, dataset)
    write_output(reviews_csv(table).encode("utf-8"), target)
    return table.num_rows


def decode_csv(data: bytes, where: str) -> str:
    """CSV bytes as text: UTF-8, a leading byte order mark (Excel's "CSV UTF-8") dropped.

    Raises
    ------
    DatasetError
        One line naming the file, the line and the byte that is not UTF-8.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DatasetError(
            "a UTF-8 CSV file",
            f"byte 0x{data[error.start]:02x}, which is not UTF-8, on line {line} "
            f"(byte {column}) of {where}",
            'save it as "CSV UTF-8" (Excel), or convert it: iconv -f latin1 -t utf-8',
        ) from None


def _records(text: str, where: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of every record that is not blank; a CSV error as one line."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DatasetError(
                "well-formed CSV",
                f"{error} in the record that starts on line {line} of {where}",
                'close the quoted cell on that line, and write a quote inside it twice ("")',
            ) from None
        if any(cell.strip() for cell in row):
            yield line, row


def _columns(records: Iterator[tuple[int, list[str]]], where: str) -> list[str]:
    """The header's column names, checked: required ones present, none unknown or twice."""
    first = next(records, None)
    if first is None:
        raise DatasetError(_HEADER, f"no header: {where} is empty", _LAYOUT)
    line, names = first[0], [name.strip() for name in first[1]]
    unknown = [name for name in names if name not in CSV_COLUMNS]
    twice = sorted({name for name in names if names.count(name) > 1})
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    problems = [
        f"{what} {', '.join(map(repr, found))}"
        for what, found in (("missing", missing), ("unknown", unknown), ("twice", twice))
        if found
    ]
    if problems:
        raise DatasetError(
            _HEADER, f"columns {names} ({'; '.join(problems)}) on line {line} of {where}", _LAYOUT
        )
    return names


def _review(cells: dict[str, str], where: str) -> Review:
    """One decision from one record's cells (:func:`csv_value` applied); bad cells refused."""

    def refuse(expected: str, column: str, found: str) -> DatasetError:
        return DatasetError(expected, f"{found} in column {column} on {where}", "fix that line")

    sample_id = cells["sample_id"].strip()
    decision = cells["decision"].strip()
    raw_label = cells.get("new_label", "").strip()
    if not sample_id:
        raise refuse("a sample id", "sample_id", "an empty cell")
    if decision not in DECISIONS:
        raise refuse(f"a decision in {', '.join(DECISIONS)}", "decision", repr(decision))
    if raw_label and not _LABEL.fullmatch(raw_label):
        raise refuse("an integer new_label (a class index)", "new_label", repr(raw_label))
    label = int(raw_label) if raw_label else None
    if (decision == "relabel") != (label is not None):
        raise refuse(
            "a new_label with relabel and only with it",
            "new_label",
            f"decision {decision} and new_label {raw_label or '(empty)'}",
        )
    return Review(sample_id, decision, label, cells.get("note") or None)


def parse_reviews_csv_lines(text: str, where: str) -> tuple[list[Review], list[str]]:
    """Decisions from CSV text, and where each came from (``line 3 of reviews.csv``).

    The header needs ``sample_id`` and ``decision``; ``new_label`` (for relabel) and ``note``
    are optional, ``reviewed_at`` is ignored (an import is a new decision, stamped when it is
    recorded); any other column is refused. Cells go through :func:`csv_value`, so an
    exported file imports unchanged. Blank lines are skipped.

    Raises
    ------
    DatasetError
        One line naming the file, the line (and column) and what was wrong.
    """
    records = _records(text, where)
    names = _columns(records, where)
    reviews, lines = [], []
    for line, row in records:
        at = f"line {line} of {where}"
        if len(row) != len(names):
            raise DatasetError(
                f"{len(names)} cells on each line ({', '.join(names)})",
                f"{len(row)} on {at}",
                "quote a cell that holds a comma, or fill in the missing cells",
            )
        reviews.append(_review(dict(zip(names, map(csv_value, row), strict=True)), at))
        lines.append(at)
    return reviews, lines


def parse_reviews_csv(text: str, where: str) -> list[Review]:
    """Decisions from CSV text (see :func:`parse_reviews_csv_lines`)."""
    return parse_reviews_csv_lines(text, where)[0]


def import_reviews_csv(
    store: Store, dataset: str, path: str | os.PathLike[str]
) -> tuple[list[Review], pa.Table]:
    """Check a review CSV file whole against ``dataset``, then record it (source ``csv``).

    Returns
    -------
    (list of Review, pyarrow.Table)
        The imported decisions, and the whole reviews table after them.

    Raises
    ------
    DatasetError
        One line naming the file and line of the first bad decision; nothing is recorded.
    """
    from robust_data.ingest.arrays import num_classes

    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as error:
        raise DatasetError(
            "a readable CSV file", f"{source}: {error.strerror or error}", "check the path"
        ) from None
    reviews, lines = parse_reviews_csv_lines(decode_csv(data, str(source)), str(source))
    samples = store.read("raw_samples", dataset).select(["sample_id", "label"])
    ids = set(samples.column("sample_id").to_pylist())
    check_reviews(reviews, ids, num_classes(samples), lines)
    return reviews, record_reviews(store, dataset, reviews, "csv")
