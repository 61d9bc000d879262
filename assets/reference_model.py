"""``reference_model``: the dataset's reference model, trained on its train split."""

from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, asset

from assets.raw_samples import DATASETS
from pipelines.resources import HomeResource
from robust_data.models import ModelConfig
from robust_data.reference import train_reference


class ReferenceModelConfig(Config):
    """Architecture and training recipe (see robust_data.models.ModelConfig)."""

    arch: str = "simple_cnn"  # simple_cnn (the paper's) or resnet (ResNet-8 for 32x32 RGB)
    width: int = 32  # channels of the first convolution
    epochs: int = 4
    batch_size: int = 64
    optimizer: str = "adam"  # adam (the paper's) or sgd
    lr: float = 1e-3
    seed: int = 0
    precision: str = "auto"  # auto: bf16 where the hardware has bf16 matrix units
    device: str = "auto"  # auto: CUDA when present, else the CPU


@asset(
    ins={"raw_samples": AssetIn()},
    partitions_def=DATASETS,
    group_name="scoring",
    kinds={"pytorch", "parquet"},
    description="The reference model: weight file path, sha256, config, train/test accuracy.",
)
def reference_model(
    context: AssetExecutionContext, config: ReferenceModelConfig, home: HomeResource, raw_samples
):
    """Train the reference model (one core call: :func:`robust_data.reference.train_reference`)."""
    settings = config.model_dump()
    device = settings.pop("device")
    weights = home.store().storage_root / "reference_model" / f"{context.partition_key}.pt"
    table = train_reference(raw_samples, ModelConfig(**settings), weights, device=device)
    row = table.to_pylist()[0]
    context.add_output_metadata(
        {
            "sha256": row["sha256"],
            "weights": MetadataValue.path(row["path"]),
            "arch": row["arch"],
            "num_parameters": MetadataValue.int(row["num_parameters"]),
            "train_accuracy": MetadataValue.float(row["train_accuracy"]),
            "test_accuracy": MetadataValue.float(row["test_accuracy"] or float("nan")),
            "train_seconds": MetadataValue.float(row["train_seconds"]),
            "device": f"{row['device']} ({row['precision']})",
        }
    )
    return table
