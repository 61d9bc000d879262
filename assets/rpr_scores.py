"""``rpr_scores``: every datapoint's RPR under the reference model, with the paper's plots."""

import base64

from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, asset
from pydantic import Field

from assets.raw_samples import DATASETS
from robust_data.reference import load_reference
from robust_data.rpr.engine import MAX_STEPS, RprOptions
from robust_data.rpr.scoring import SPLITS, RprScores, score_samples


class RprScoresConfig(Config):
    """How to score (see robust_data.rpr.engine.RprOptions)."""

    scheme: str = "pixels"  # pixels, pixels(k=INT), gaussian(sigma=F), salt_pepper(p=F)
    max_steps: int = MAX_STEPS
    seed: int = 0
    splits: list[str] = Field(default_factory=lambda: list(SPLITS))  # train, test
    device: str = "auto"  # auto: CUDA when present, else the CPU
    precision: str = "auto"  # auto: bf16 where the hardware has bf16 matrix units
    batch_size: int = 4096  # perturbed images per forward pass (bounds memory)


def _image(png: bytes, alt: str) -> MetadataValue:
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _metadata(scores: RprScores) -> dict[str, MetadataValue]:
    result = scores.result
    meta: dict[str, MetadataValue] = {
        "dagster/row_count": MetadataValue.int(scores.table.num_rows),
        "scheme": result.scheme,
        "max_steps": MetadataValue.int(result.max_steps),
        "model_sha256": scores.table.column("model_sha256")[0].as_py(),
        "device": f"{result.device} ({result.precision})",
        "tries": MetadataValue.int(result.tries),
        "tries_per_second": MetadataValue.float(round(result.tries / result.seconds, 1)),
    }
    for split, fraction in scores.robust_fraction().items():
        meta[f"robust_fraction_{split}"] = MetadataValue.float(round(fraction, 4))
    titles = {
        "robustness_curve": "robustness curve per split",
        "robust_fraction_per_class": "robust fraction per class",
        "examples": "robust vs non-robust examples",
    }
    for name, png in scores.figures().items():
        meta[name] = _image(png, titles[name])
    return meta


@asset(
    ins={"raw_samples": AssetIn(), "reference_model": AssetIn()},
    partitions_def=DATASETS,
    group_name="scoring",
    kinds={"pytorch", "parquet"},
    description="Per sample: clean prediction, steps_to_flip (null = robust), flip prediction.",
)
def rpr_scores(
    context: AssetExecutionContext, config: RprScoresConfig, raw_samples, reference_model
):
    """Score RPR (one core call: :func:`robust_data.rpr.scoring.score_samples`)."""
    model, weights = load_reference(reference_model)
    options = RprOptions(
        scheme=config.scheme,
        max_steps=config.max_steps,
        seed=config.seed,
        device=config.device,
        precision=config.precision,
        batch_size=config.batch_size,
    )
    scores = score_samples(raw_samples, model, weights.sha256, options, tuple(config.splits))
    context.add_output_metadata(_metadata(scores))
    return scores.table
