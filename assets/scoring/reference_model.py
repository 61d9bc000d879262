"""``reference_model``: the dataset's reference model, trained on its train split."""

from dagster import AssetExecutionContext, AssetIn, asset

from assets.checks import check_result, check_spec
from assets.config import FROM_COMPUTE, CoreConfig, device_field, set_fields
from assets.metadata import summary_metadata, table_definition
from assets.partitions import DATASETS
from assets.resources import (
    GPU_POOL,
    GPU_STEP_TAGS,
    ComputeResource,
    HomeResource,
    transient_failures_retried,
)
from assets.versions import versioned
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.reference import (
    REFERENCE_SCHEMA,
    check_model_table,
    reference_summary,
    train_reference,
)
from robust_data.scoring.spec import ModelSpec


class ReferenceModelConfig(
    CoreConfig,
    core=ModelOptions,
    unset={"precision": FROM_COMPUTE["precision"], "model": "the built-in `arch`"},
):
    """Architecture and training recipe (robust_data.scoring.models.ModelOptions); unset fields
    take its defaults, precision the compute resource's. Your own model goes in ``model``
    (a ``package.module:function`` factory or a TorchScript file's path), a built-in in
    ``arch``: not both."""

    device: str | None = device_field()


@asset(
    ins={"raw_samples": AssetIn()},
    partitions_def=DATASETS,
    group_name="scoring",
    kinds={"pytorch", "parquet"},
    description="The reference model, trained on the train split: one row with its weight file, "
    "sha256, recipe and accuracies. RPR scores, label quality and curation all use it: a low "
    "test_accuracy makes everything downstream less trustworthy.",
    metadata=table_definition(REFERENCE_SCHEMA),
    op_tags=GPU_STEP_TAGS,
    pool=GPU_POOL,
    check_specs=[
        check_spec(
            "reference_model", "valid", "Accuracies in [0, 1]; the weight file matches its sha256."
        )
    ],
)
def reference_model(
    context: AssetExecutionContext,
    config: ReferenceModelConfig,
    home: HomeResource,
    compute: ComputeResource,
    raw_samples,
):
    """Train the reference model (one core call: ``scoring.reference.train_reference``)."""
    chosen = set_fields(config)
    ModelSpec.from_flags(chosen.get("model"), chosen.get("arch"))  # not both; nothing written
    options = config.options(precision=compute.precision)
    device = config.device or compute.device
    weights = home.store().weights_location("reference_model", context.partition_key)
    with transient_failures_retried(context):
        table = train_reference(raw_samples, options, weights, device=device)
    context.add_output_metadata(
        output_name="result", metadata=summary_metadata(reference_summary(table))
    )
    yield versioned(table, ignore=("train_seconds",))  # a wall time: not the model
    yield check_result("reference_model", "valid", check_model_table(table))
