"""Export a curated dataset as Parquet or an ImageFolder, with a dataset card and lineage.

The stage's core calls: :func:`export_dataset` writes a local export folder,
:func:`export_to_store` exports to :meth:`Store.export_location` (the home, or the store URL,
where the finished export is published). The export holds every split in one typed schema
(:mod:`~robust_data.export.tables`), written as Parquet or an ImageFolder
(:mod:`~robust_data.export.writers`), ``README.md`` (the dataset card, opening with Hugging Face
YAML: configs, dataset_info, license), ``lineage.json`` (paths relative to the home, the sha256
of every exported file; both :mod:`~robust_data.export.card`), ``ledger.csv`` (every input
training sample, kept or why dropped; :mod:`~robust_data.export.ledger_file`) and ``plots/``.
What the train split holds is one rule for every caller (:mod:`~robust_data.export.contents`):
the kept originals, plus their variants when the curation's plan makes any.

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

import pyarrow as pa
import pyarrow.parquet as pq

from robust_data.curation.ledger import class_count_chart
from robust_data.errors import DatasetError
from robust_data.export.card import ExportParts, build_lineage, dataset_card, file_hashes
from robust_data.export.contents import VariantChoice, choose_variants
from robust_data.export.layout import FORMATS, ExportError, safe_name
from robust_data.export.ledger_file import LEDGER_FILE, ledger_csv
from robust_data.export.publish import publish_export
from robust_data.export.result import ExportResult
from robust_data.export.swap import check_target, owner_tag, remove_stale, swap_in
from robust_data.export.tables import split_tables
from robust_data.export.verdicts import find_report
from robust_data.export.writers import write_data
from robust_data.ingest.arrays import class_names
from robust_data.io.atomic import default_mode
from robust_data.io.files import filesystem, is_url
from robust_data.store.home import table_location
from robust_data.store.schema import read_params
from robust_data.store.store import Store


def stored_schema(store: Store, table: str, dataset: str) -> pa.Schema:
    """The schema (and table metadata) of a stored table, read from its footer only.

    Raises
    ------
    FileNotFoundError
        When the table has not been materialized for ``dataset``.
    """
    fs, path = filesystem(table_location(store.tables_root, table, dataset))
    with fs.open(path, "rb") as handle:
        return pq.read_schema(handle)


def variant_choice(store: Store, dataset: str, with_variants: bool | None) -> VariantChoice:
    """Whether ``dataset``'s export holds variants (:func:`choose_variants` on the stored
    ``curated_samples``' parameters), checked against the store.

    Raises
    ------
    DatasetError
        When the export is to hold variants and the store has no ``variants`` table for the
        dataset: one line naming both ways out.
    """
    params = read_params(stored_schema(store, "curated_samples", dataset))
    choice = choose_variants(params, with_variants)
    if choice.included and not store.has("variants", dataset):
        why = "the curation's variant plan makes them" if choice.planned else "asked"
        raise DatasetError(
            f"the variants of {dataset!r} ({why}) in {store.home}",
            "no variants table",
            f"materialize variants (`robust-data curate --dataset {dataset}`), or export "
            "originals only (--originals-only, with_variants=False)",
        )
    if choice.included:
        _check_variants_match(store, dataset)
    return choice


def _check_variants_match(store: Store, dataset: str) -> None:
    """Refuse variants made from another curation than the stored one: a variant whose parent
    the stored ``curated_samples`` does not keep (a curation stopped before its variants).

    Raises
    ------
    DatasetError
        One line with the count and both ways out.
    """
    curated = store.read("curated_samples", dataset, ["sample_id"])
    kept = set(curated.column("sample_id").to_pylist())
    parents = store.read("variants", dataset, ["parent_sample_id"]).column(0).to_pylist()
    stale = sum(parent not in kept for parent in parents)
    if stale:
        raise DatasetError(
            f"the variants of {dataset!r} made from its stored curation",
            f"{stale:,} of {len(parents):,} variants of samples that curation does not keep "
            "(variants of an earlier curation: was a run stopped before its variants?)",
            f"run `robust-data curate --dataset {dataset}` again, or export originals only "
            "(--originals-only, with_variants=False)",
        )


def export_dataset(
    store: Store,
    dataset: str,
    out: str | os.PathLike[str],
    fmt: str = "parquet",
    with_variants: bool | None = None,
    force: bool = False,
    runs: dict[str, str] | None = None,
) -> ExportResult:
    """Export ``dataset``'s curated training set and its test split (see the module docs).

    Parameters
    ----------
    with_variants : bool or None
        None (default): the train split holds the kept samples' variants when the curation's
        variant plan makes any (robust_data.export.contents); True: always; False: originals
        only.

    Raises
    ------
    ExportError
        Unknown format; an ``out`` that is, holds or lies in the home's own folders (see
        :func:`check_target`, which ``force`` does not override); or a non-empty target that
        is not an earlier export (without force).
    DatasetError
        When the export is to hold variants the store does not have.
    FileNotFoundError
        When an upstream table has not been materialized.
    """
    if fmt not in FORMATS:
        raise ExportError(f"a format in {FORMATS}", repr(fmt), "pass one of those")
    target = Path(out).expanduser().resolve()
    check_target(store, target, dataset, force)
    choice = variant_choice(store, dataset, with_variants)
    stale = remove_stale(store, target, dataset)
    curated = store.read("curated_samples", dataset)
    tables = split_tables(store, dataset, curated, choice.included)
    inputs = ("curated_samples", "curation_ledger", *(("variants",) if choice.included else ()))
    ledger = store.read("curation_ledger", dataset)
    parts = ExportParts(tables, ledger, choice, find_report(store, dataset, inputs))
    lineage = build_lineage(store, dataset, curated, runs or {}, fmt, parts)
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
        names = list(class_names(store.read("raw_samples", dataset)))
        (tmp / LEDGER_FILE).write_text(ledger_csv(ledger, names), encoding="utf-8", newline="")
        (tmp / "README.md").write_text(dataset_card(tmp, lineage, parts), encoding="utf-8")
        lineage["files"] = file_hashes(tmp)
        text = json.dumps(lineage, indent=2, sort_keys=True)
        (tmp / "lineage.json").write_text(text, encoding="utf-8")
        swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rows = {split: t.num_rows for split, t in tables.items()}
    return ExportResult(target, fmt, rows, stale.removed, restored=stale.restored)


@dataclass(frozen=True)
class ExportOptions:
    """What :func:`export_to_store` writes.

    Attributes
    ----------
    fmt : str
        ``parquet`` (one typed schema, Hugging Face features) or ``imagefolder``.
    with_variants : bool or None
        The kept samples' variants in the train split: None follows the curation's variant
        plan (variants when it makes any, robust_data.export.contents), True adds them
        whatever the plan, False exports originals only.
    """

    fmt: str = "parquet"
    with_variants: bool | None = None


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
