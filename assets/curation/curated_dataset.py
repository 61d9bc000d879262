"""``curated_dataset``: the curated dataset exported as Parquet to the home or the store URL."""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    MetadataValue,
    asset,
)

from assets.checks import check_result, check_spec
from assets.config import CoreConfig
from assets.metadata import summary_metadata, table_definition
from assets.partitions import DATASETS
from assets.resources import HomeResource
from assets.versions import versioned
from robust_data.export.card import LINEAGE_TABLES
from robust_data.export.export import ExportOptions, export_to_store
from robust_data.export.result import FILES_SCHEMA, check_export
from robust_data.export.tables import UPSTREAM
from robust_data.io.files import read_bytes


class CuratedDatasetConfig(
    CoreConfig,
    core=ExportOptions,
    omit=("fmt",),  # Parquet: the step's table lists the Parquet files, its check reads them
    unset={
        "with_variants": "as the curation's variant plan says (variants when it makes any), "
        "the same default as `robust-data export`"
    },
):
    """What to export (robust_data.export.export.ExportOptions)."""


def latest_runs(instance, partition: str, names: tuple[str, ...]) -> dict[str, str]:
    """Run id of the latest materialization of each asset for ``partition``."""
    runs = {}
    for name in names:
        found = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[partition]), limit=1
        )
        if found.records:
            runs[name] = found.records[0].run_id
    return runs


@asset(
    deps=[*UPSTREAM, "variants"],
    partitions_def=DATASETS,
    group_name="curation",
    kinds={"parquet"},
    description="The export at `<home>/exports/<dataset>`, or `<store URL>/exports/<dataset>` when "
    "ROBUST_DATA_STORE is a URL: data/train-*.parquet and data/test-*.parquet (one typed "
    "schema, Hugging Face features; train: the kept originals plus their variants when the "
    "curation's plan makes them), README.md (dataset card: what it holds, how samples were "
    "judged, the report's verdicts when one exists), ledger.csv (every training sample, kept "
    "or why dropped), lineage.json (written last); one row per exported data file here.",
    metadata=table_definition(FILES_SCHEMA),
    check_specs=[
        check_spec(
            "curated_dataset", "valid", "Every exported file exists, matches its sha256 and rows."
        )
    ],
)
def curated_dataset(
    context: AssetExecutionContext, config: CuratedDatasetConfig, home: HomeResource
):
    """Export (one core call: :func:`robust_data.export.export.export_to_store`)."""
    store = home.store()
    dataset = context.partition_key
    runs = latest_runs(context.instance, dataset, LINEAGE_TABLES)
    options = config.options()
    result = export_to_store(store, dataset, options, runs=runs)
    table = result.files_table()
    card = read_bytes(f"{result.where}/README.md").decode("utf-8")
    context.add_output_metadata(
        output_name="result",
        metadata={
            **summary_metadata(result.summary()),  # export, rows
            "card": MetadataValue.md(card[:4000]),
        },
    )
    yield versioned(table)
    yield check_result("curated_dataset", "valid", check_export(table))
