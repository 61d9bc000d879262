"""``variants``: the curation preset's variants of the kept training samples."""

from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from assets.checks import check_result, check_spec
from assets.config import CoreConfig
from assets.metadata import count_table, summary_metadata, table_definition
from assets.partitions import DATASETS
from assets.versions import versioned
from robust_data.curation.presets import VariantOptions, plan_variants, preset_from_params
from robust_data.present.markdown import inline_png
from robust_data.present.plots import image_grid
from robust_data.scoring.reference import load_reference
from robust_data.scoring.rpr.table import scored_max_steps
from robust_data.store.schema import read_params
from robust_data.variants.make import VARIANTS_SCHEMA, check_variants


class VariantsConfig(
    CoreConfig,
    core=VariantOptions,
    unset={
        "transforms": "the curation preset's plan",
        "mining": "the curation preset's plan (none: plain keyed copies)",
        "candidates": "the curation preset's plan",
    },
):
    """Which variants to make (robust_data.curation.presets.VariantOptions): by default the
    curation preset's plan (its transforms, and its copies per sample, more for fragile points
    under ``focus``); ``mining`` hard or random picks each sample's copies from keyed candidates
    (robust_data.variants.mining)."""


@asset(
    ins={
        "curated_samples": AssetIn(),
        "curation_ledger": AssetIn(),
        "rpr_scores": AssetIn(),
        "reference_model": AssetIn(),
    },
    partitions_def=DATASETS,
    group_name="variants",
    kinds={"pytorch", "parquet"},
    description="Generated training images: one row per variant of a kept training sample "
    "(transform, severity, seed, PNG), tied to its parent by parent_sample_id. per_transform "
    "counts each transform's images (a missing one was not made); under the focus preset, "
    "more fragile parents get more copies.",
    metadata=table_definition(VARIANTS_SCHEMA),
    check_specs=[
        check_spec("variants", "valid", "Schema; every parent is a sample with the same label.")
    ],
)
def variants(
    context: AssetExecutionContext,
    config: VariantsConfig,
    curated_samples,
    curation_ledger,
    rpr_scores,
    reference_model,
):
    """Make the plan's variants (one core call: ``curation.presets.plan_variants``)."""
    chosen = preset_from_params(read_params(curation_ledger.schema))
    model, _ = load_reference(reference_model)
    result = plan_variants(
        curated_samples,
        rpr_scores,
        chosen,
        config.options(),
        model.model,
        scored_max_steps(rpr_scores),
    )
    counts = result.counts()
    metadata = {
        **summary_metadata(result.summary()),  # dagster/row_count, transforms: the CLI reads them
        "kept_samples": MetadataValue.int(curated_samples.num_rows),
        "preset": MetadataValue.text(chosen.name),
        "per_transform": count_table(counts, "transform", "variants", "Images it made"),
    }
    if result.examples:
        gallery = image_grid(list(result.examples.values()), "Variants: one row per transform")
        metadata["gallery"] = MetadataValue.md(inline_png(gallery, "variants"))
    context.add_output_metadata(output_name="result", metadata=metadata)
    yield versioned(result.table)
    yield check_result("variants", "valid", check_variants(result.table, curated_samples))
