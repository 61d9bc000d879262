"""``corrupted_test``: the test split under every corruption and severity, made once per dataset."""

from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from assets.checks import check_result, check_spec
from assets.config import CoreConfig
from assets.metadata import table_definition
from assets.partitions import DATASETS
from assets.versions import versioned
from robust_data.ingest.arrays import decode_samples
from robust_data.report.testset import (
    CORRUPTED_SCHEMA,
    CorruptedTestOptions,
    check_corrupted_test,
    corrupted_jobs,
    make_corrupted_test,
)


class CorruptedTestConfig(
    CoreConfig, core=CorruptedTestOptions, unset={"corruptions": "every corruption"}
):
    """Which corruptions, and their seed (robust_data.report.testset.CorruptedTestOptions)."""


@asset(
    ins={"raw_samples": AssetIn()},
    partitions_def=DATASETS,
    group_name="report",
    kinds={"pytorch", "parquet"},
    description="The test split under every corruption and severity: one row per (test image, "
    "corruption, severity) with uint8 pixels; severity 0 is the clean original. Made once and "
    "read by the report for every model; nothing here is good or bad, it is the benchmark.",
    metadata=table_definition(CORRUPTED_SCHEMA),
    check_specs=[
        check_spec(
            "corrupted_test", "valid", "Every job holds the test split's ids and labels in order."
        )
    ],
)
def corrupted_test(context: AssetExecutionContext, config: CorruptedTestConfig, raw_samples):
    """Corrupt the test split (one core call: :func:`make_corrupted_test`)."""
    test = decode_samples(raw_samples, splits=("test",))
    table = make_corrupted_test(
        test.images,
        test.labels,
        test.sample_ids,
        config.options(),
        source=f"raw_samples/{context.partition_key} (test split)",
    )
    jobs = corrupted_jobs(table)
    corruptions = [c for c in dict.fromkeys(name for name, _ in jobs) if c != "clean"]
    context.add_output_metadata(
        output_name="result",
        metadata={
            "dagster/row_count": MetadataValue.int(table.num_rows),
            "jobs": MetadataValue.int(len(jobs)),
            "test_images": MetadataValue.int(len(test)),
            "corruptions": MetadataValue.text(", ".join(corruptions)),
        },
    )
    yield versioned(table)
    yield check_result("corrupted_test", "valid", check_corrupted_test(table, raw_samples))
