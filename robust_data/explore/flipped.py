"""The perturbed image that flipped a sample, regenerated for the browser's sample page."""

from __future__ import annotations

import numpy as np

from robust_data.explore.sample_index import SampleIndex
from robust_data.ingest.images import encode_png


def flipped_image(index: SampleIndex, sample_id: str) -> tuple[bytes, int, int | None, int] | None:
    """The perturbed image that flipped a sample, regenerated, and the reference model's view.

    Returns
    -------
    (png, step, stored flip_pred, prediction now) or None
        None when the sample is robust or unscored. The noise is keyed by (seed, sample, try),
        so the image is the one scoring saw; the prediction is the stored reference model's
        on it now (fp32 here; scoring may have used bf16, so it can differ at the margin).
    """
    import torch

    from robust_data.ingest.images import decode_image
    from robust_data.scoring.rpr.engine import perturbed_at

    row = index.sample(sample_id)
    if row is None or row["steps_to_flip"] is None:
        return None
    pixels = decode_image(index.image(sample_id))  # (H, W, C) uint8
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    perturbed = perturbed_at(image, sample_id, row["scheme"], row["rpr_seed"], row["steps_to_flip"])
    with torch.no_grad():
        prediction = int(index.reference_model(perturbed[None]).argmax(dim=1)[0])
    png = encode_png((perturbed.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return png, int(row["steps_to_flip"]), row["flip_pred"], prediction
