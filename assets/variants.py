"""``variants``: corrupted, augmented and adversarial variants of the training samples."""

import base64

from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset
from pydantic import Field

from assets.checks import check_result, check_spec
from assets.raw_samples import DATASETS
from robust_data.checks import check_variants
from robust_data.plots import image_grid
from robust_data.reference import load_reference
from robust_data.variants import DEFAULT_TRANSFORMS, make_variants


class VariantsConfig(Config):
    """Which variants to make (one per sample and transform)."""

    transforms: list[str] = Field(default_factory=lambda: list(DEFAULT_TRANSFORMS))
    seed: int = 0
    splits: list[str] = Field(default_factory=lambda: ["train"])


@asset(
    ins={"raw_samples": AssetIn(), "reference_model": AssetIn()},
    partitions_def=DATASETS,
    group_name="variants",
    kinds={"pytorch", "parquet"},
    description="One row per variant: variant_id, parent_sample_id, transform, severity, seed, "
    "label, PNG image.",
    check_specs=[
        check_spec("variants", "valid", "Schema; every parent is a sample with the same label.")
    ],
)
def variants(context: AssetExecutionContext, config: VariantsConfig, raw_samples, reference_model):
    """Make variants (one core call: :func:`robust_data.variants.make_variants`).

    Until curation exists, the parents are the samples of ``splits`` in ``raw_samples``.
    """
    model, _ = load_reference(reference_model)
    result = make_variants(
        raw_samples, config.transforms, config.seed, tuple(config.splits), model=model.model
    )
    lines = ["| transform | variants |", "|---|---:|"]
    lines += [f"| {name} | {count:,} |" for name, count in result.counts().items()]
    gallery = image_grid(list(result.examples.values()), "Variants: one row per transform")
    png = base64.b64encode(gallery).decode()
    context.add_output_metadata(
        output_name="result",
        metadata={
            "dagster/row_count": MetadataValue.int(result.table.num_rows),
            "per_transform": MetadataValue.md("\n".join(lines)),
            "gallery": MetadataValue.md(f"![variants](data:image/png;base64,{png})"),
        }
    )
    yield Output(result.table)
    yield check_result("variants", "valid", check_variants(result.table, raw_samples))
