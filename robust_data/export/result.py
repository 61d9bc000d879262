"""What an export returns (:class:`ExportResult`) and its ``curated_dataset`` table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from robust_data.export.layout import data_file
from robust_data.export.swap import StaleExports
from robust_data.io.files import file_exists, file_sha256
from robust_data.present.summary import StageSummary, logged
from robust_data.store.checks import CheckOutcome
from robust_data.store.schema import column, table_metadata


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and what it holds.

    ``removed`` lists the folders that killed exports had left beside the target and that this
    export removed; ``restored`` is the one of them renamed back to the target, the previous
    export (listed in ``removed`` too); :meth:`cleanup_lines` says so, one line each.

    ``location`` is the fsspec URL the export was published to
    (:func:`~robust_data.export.publish.publish_export`), and ``hashes`` the sha256 of each
    published file by relative path (``lineage.json``'s ``files``); both empty for a local
    export. A published export's ``path`` is the local folder it was written to, which
    :func:`~robust_data.export.export.export_to_store` removes once it is published.
    """

    path: Path
    format: str
    rows: dict[str, int]  # split -> rows
    removed: tuple[Path, ...] = ()
    location: str = ""
    hashes: dict[str, str] = field(default_factory=dict)
    restored: Path | None = None

    def cleanup_lines(self) -> list[str]:
        """What became of each folder stopped exports left beside the target, one line each."""
        return StaleExports(self.path, self.removed, self.restored).lines()

    @property
    def where(self) -> str:
        """The export's URL when it was published, else its local folder."""
        return self.location or str(self.path)

    def summary(self) -> ExportSummary:
        """Where the export is and its rows per split, for the asset's metadata and the CLI."""
        return ExportSummary(export=self.where, rows=dict(self.rows))

    def files_table(self, source: str = "curated_samples, variants, raw_samples") -> pa.Table:
        """One row per exported Parquet file: split, path, rows, sha256; with table metadata.

        Only for the Parquet format (``data/<split>-00000-of-00001.parquet`` per split). The
        paths are URLs for a published export, whose sha256 come from its ``hashes``.
        """
        if self.location:
            names = [data_file(split) for split in self.rows]
            paths = [f"{self.location}/{name}" for name in names]
            digests = [self.hashes[name] for name in names]
        else:
            files = [self.path / data_file(split) for split in self.rows]
            paths = [str(f) for f in files]
            digests = [file_sha256(f) for f in files]
        table = pa.table(
            {
                "split": list(self.rows),
                "path": paths,
                "rows": list(self.rows.values()),
                "sha256": digests,
            },
            schema=FILES_SCHEMA,
        )
        params = {"format": self.format, "export": self.where}
        return table.replace_schema_metadata(table_metadata("curated_dataset", source, params))


@dataclass(frozen=True, kw_only=True)
class ExportSummary(StageSummary):
    """The summary of an export: where it is (its URL or folder) and its rows per split."""

    export: str = field(metadata=logged(kind="path"))
    rows: dict[str, int]


FILES_SCHEMA = pa.schema(
    [
        column("split", pa.string(), "train or test"),
        column(
            "path",
            pa.string(),
            "The exported data file (data/<split>-00000-of-00001.parquet in the export)",
        ),
        column("rows", pa.int64(), "Rows in the file: originals and variants of that split"),
        column("sha256", pa.string(), "Hex sha256 of the file's bytes (lineage.json lists it too)"),
    ]
)
"""``curated_dataset``: one row per exported Parquet data file."""


def _parquet_rows(location: str) -> int:
    """Rows in the Parquet file at a local path or an fsspec URL (its footer only is read)."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(location, "rb") as handle:
        return int(pq.ParquetFile(handle).metadata.num_rows)


def check_export(table: pa.Table) -> CheckOutcome:
    """``curated_dataset``: every exported file exists, hashes to its sha256, has its rows.

    A path may be local or an fsspec URL (an export published to the store URL); a URL's
    object is read back through fsspec.
    """
    problems = []
    for row in table.to_pylist():
        location = row["path"]
        if not file_exists(location):
            problems.append(f"{location} is missing")
            continue
        if file_sha256(location) != row["sha256"]:
            problems.append(f"{location} does not match its sha256")
        try:
            rows = _parquet_rows(location)
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            problems.append(f"{location} is not a readable Parquet file ({error})")
            continue
        if rows != row["rows"]:
            problems.append(f"{location} has {rows} rows, expected {row['rows']}")
    if table.num_rows == 0:
        problems.append("no exported split")
    return CheckOutcome(problems, {"files": table.num_rows})
