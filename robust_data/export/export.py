"""Export a curated dataset as Parquet or an ImageFolder, with a dataset card and lineage.

The stage's core calls: :func:`export_dataset` writes a local export folder,
:func:`export_to_store` exports to :meth:`Store.export_location` (the home, or the store URL,
where the finished export is published). The export holds every split in one typed schema
(:mod:`~robust_data.export.tables`), written as Parquet or an ImageFolder
(:mod:`~robust_data.export.writers`), ``README.md`` (the dataset card, opening with Hugging Face
YAML: configs, dataset_info, license), ``lineage.json`` (paths relative to the home, the sha256
of every exported file; both :mod:`~robust_data.export.card`) and ``plots/``.

The export is written into a temporary folder beside the target and swapped in at the end, so a
failure leaves the previous export as it was; the target is checked first, and what killed
exports left beside it is cleared (:mod:`~robust_data.export.swap`). A store URL gets the
finished local export uploaded, ``lineage.json`` last (:mod:`~robust_data.export.publish`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from robust_data.curation.ledger import class_count_chart
from robust_data.export.card import build_lineage, dataset_card, file_hashes
from robust_data.export.layout import FORMATS, ExportError, safe_name
from robust_data.export.publish import publish_export
from robust_data.export.result import ExportResult
from robust_data.export.swap import check_target, owner_tag, remove_stale, swap_in
from robust_data.export.tables import split_tables
from robust_data.export.writers import write_data
from robust_data.ingest.arrays import class_names
from robust_data.io.atomic import default_mode
from robust_data.io.files import is_url
from robust_data.store.store import Store


def export_dataset(
    store: Store,
    dataset: str,
    out: str | os.PathLike[str],
    fmt: str = "parquet",
    with_variants: bool = False,
    force: bool = False,
    runs: dict[str, str] | None = None,
) -> ExportResult:
    """Export ``dataset``'s curated training set and its test split (see the module docs).

    Raises
    ------
    ExportError
        Unknown format; an ``out`` that is, holds or lies in the home's own folders (see
        :func:`check_target`, which ``force`` does not override); or a non-empty target that
        is not an earlier export (without force).
    FileNotFoundError
        When an upstream table has not been materialized.
    """
    if fmt not in FORMATS:
        raise ExportError(f"a format in {FORMATS}", repr(fmt), "pass one of those")
    target = Path(out).expanduser().resolve()
    check_target(store, target, dataset, force)
    stale = remove_stale(store, target, dataset)
    curated = store.read("curated_samples", dataset)
    tables = split_tables(store, dataset, curated, with_variants)
    rows = {split: t.num_rows for split, t in tables.items()}
    lineage = build_lineage(store, dataset, curated, runs or {}, rows, fmt, with_variants)
    ledger = store.read("curation_ledger", dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.{owner_tag()}-", suffix=".tmp", dir=target.parent)
    )
    try:
        tmp.chmod(default_mode(folder=True))  # mkdtemp's 0700 -> what mkdir gives (the umask)
        (tmp / "plots").mkdir()
        chart = class_count_chart(ledger, dict(enumerate(class_names(curated))))
        (tmp / "plots" / "class_counts.png").write_bytes(chart)
        write_data(tmp, fmt, tables, lineage)
        (tmp / "README.md").write_text(dataset_card(tmp, lineage, tables, ledger), encoding="utf-8")
        lineage["files"] = file_hashes(tmp)
        text = json.dumps(lineage, indent=2, sort_keys=True)
        (tmp / "lineage.json").write_text(text, encoding="utf-8")
        swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(target, fmt, rows, stale.removed, restored=stale.restored)


@dataclass(frozen=True)
class ExportOptions:
    """What :func:`export_to_store` writes.

    Attributes
    ----------
    fmt : str
        ``parquet`` (one typed schema, Hugging Face features) or ``imagefolder``.
    with_variants : bool
        Add the kept samples' variants to the train split.
    """

    fmt: str = "parquet"
    with_variants: bool = False


def export_to_store(
    store: Store,
    dataset: str,
    options: ExportOptions = ExportOptions(),
    runs: dict[str, str] | None = None,
    scratch: str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Export ``dataset`` to :meth:`Store.export_location`: the home, or the store URL.

    Locally this is :func:`export_dataset` into ``<home>/exports/<dataset>``. With a store URL
    the export is written into a private temporary folder (``tempfile.mkdtemp`` under
    ``scratch``, default the system's temporary folder, which must lie outside the home), then
    published to ``<store URL>/exports/<dataset>`` by :func:`publish_export`; the temporary
    folder is removed whether or not that succeeds.

    Returns
    -------
    ExportResult
        For a published export, ``location`` is the URL and ``path`` the removed folder.

    Raises
    ------
    ExportError, FileNotFoundError
        As :func:`export_dataset`.
    """
    location = store.export_location(dataset)
    fmt, with_variants = options.fmt, options.with_variants
    if not is_url(location):
        return export_dataset(store, dataset, location, fmt, with_variants, runs=runs)
    staging = Path(tempfile.mkdtemp(prefix="robust-data-export-", dir=scratch))
    try:
        local = export_dataset(
            store, dataset, staging / safe_name(dataset), fmt, with_variants, runs=runs
        )
        return publish_export(local, location)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
