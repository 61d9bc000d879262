"""``raw_samples`` (and ``ingest_rejects``): a dataset source read into the samples table."""

from dagster import (
    AssetExecutionContext,
    AssetOut,
    MetadataValue,
    multi_asset,
)
from pydantic import Field

from assets.checks import check_result, check_spec
from assets.config import CoreConfig
from assets.metadata import count_table, summary_metadata, table_definition
from assets.partitions import DATASETS
from assets.resources import HomeResource
from assets.versions import versioned
from robust_data.errors import DatasetError
from robust_data.ingest.build import IngestOptions, IngestResult, ingest, parse_size
from robust_data.ingest.preview import preview_grid
from robust_data.ingest.sources import BUILTIN_SOURCES
from robust_data.present.markdown import inline_png
from robust_data.store.checks import check_rejects, check_samples
from robust_data.store.schema import (
    REJECTS_SCHEMA,
    SAMPLES_SCHEMA,
)


class RawSamplesConfig(CoreConfig, core=IngestOptions, omit=("resize",)):
    """How to read the partition's dataset (robust_data.ingest.build.IngestOptions); source and
    root left unset take the home's registration."""

    source: str | None = Field(
        default=None,
        description="Registry name or imagefolder:PATH / parquet:PATH (unset: the registered "
        "source)",
    )
    root: str | None = Field(
        default=None, description="Local root for mnist, cifar10, ... (unset: the registered root)"
    )
    # HEIGHTxWIDTH text here, parsed into the core's (height, width).
    resize: str | None = Field(
        default=None,
        description="HEIGHTxWIDTH to resize every image to (unset: None, mixed sizes are an error)",
    )


def _metadata(result: IngestResult) -> dict[str, MetadataValue]:
    """The summary (rows, rejects, counts: what the CLI reads), then the class sizes, the count
    tables and the preview."""
    summary = result.summary()
    classes, splits = summary.counts.classes, summary.counts.splits
    return {
        **summary_metadata(summary),
        "num_classes": MetadataValue.int(len(classes)),
        "smallest_class": MetadataValue.int(min(classes.values(), default=0)),
        "largest_class": MetadataValue.int(max(classes.values(), default=0)),
        "notes": MetadataValue.text("; ".join(result.notes) or "none"),
        "class_counts": count_table(classes, "class", "samples", "Images of the class"),
        "split_counts": count_table(splits, "split", "samples", "Images in the split"),
        "preview": MetadataValue.md(
            inline_png(preview_grid(result.samples), "preview: one row per class")
        ),
    }


@multi_asset(
    outs={
        "raw_samples": AssetOut(
            description="The ingested dataset: one row per image (sample_id, split, label, PNG). "
            "Read class_counts for imbalance: a class far smaller than the others is a warning "
            "sign; ingest_rejects lists what could not be read.",
            kinds={"parquet", "python"},
            metadata=table_definition(SAMPLES_SCHEMA),
        ),
        "ingest_rejects": AssetOut(
            description="Source items left out of raw_samples: one row per item, with the reason. "
            "Empty is good; every row is an image the dataset lost.",
            kinds={"parquet"},
            metadata=table_definition(REJECTS_SCHEMA),
        ),
    },
    partitions_def=DATASETS,
    group_name="ingest",
    check_specs=[
        check_spec(
            "raw_samples",
            "valid",
            "Schema, unique sample_ids, labels 0..K-1 with one name each, >= 2 train classes.",
        ),
        check_spec("ingest_rejects", "valid", "Schema; every reject says why.", blocking=False),
    ],
)
def raw_samples_assets(
    context: AssetExecutionContext, config: RawSamplesConfig, home: HomeResource
):
    """Read the partition's dataset (one core call: :func:`robust_data.ingest.build`)."""
    source, root = config.source, config.root
    if not source:
        registration = home.store().lookup(context.partition_key, BUILTIN_SOURCES)
        source, root = registration.source, root or registration.root
    options = config.options(resize=parse_size(config.resize) if config.resize else None)
    result = ingest(source, root=root or None, name=context.partition_key, options=options)
    samples_check = check_samples(result.samples)
    if not samples_check.passed:  # refused before anything is stored: no half-ingested table
        raise DatasetError(
            "samples that pass the raw_samples check 'valid'",
            samples_check.summary(),
            f"fix the source {source} and ingest again (nothing was stored)",
        )
    for note in result.notes:  # what ingestion changed, e.g. 16-bit pixels scaled to 8 bits
        context.log.warning(f"ingest note: {note}")
    if result.rejects.num_rows:
        context.log.warning(
            f"{result.rejects.num_rows} unreadable images left out (see ingest_rejects)"
        )
    yield versioned(
        result.rejects,
        output_name="ingest_rejects",
        metadata={"dagster/row_count": MetadataValue.int(result.rejects.num_rows)},
    )
    # content_sha256 hashes each image's pixels: the encoded PNGs add nothing to the version
    yield versioned(
        result.samples, output_name="raw_samples", metadata=_metadata(result), ignore=("image",)
    )
    yield check_result("raw_samples", "valid", samples_check)
    yield check_result("ingest_rejects", "valid", check_rejects(result.rejects))
