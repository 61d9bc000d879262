"""A small preview grid of a samples table: one row per class, a few images each."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from robust_data.ingest.images import decode_image


def preview_grid(
    samples: pa.Table, per_class: int = 8, max_classes: int = 10, cell: int = 32
) -> bytes:
    """Render the first ``per_class`` images of up to ``max_classes`` classes as one PNG.

    Parameters
    ----------
    samples : pa.Table
        A table with ``label`` and ``image`` ({bytes, path}) columns.
    per_class, max_classes : int
        Grid columns and rows.
    cell : int
        Side of each cell in pixels; images are scaled (nearest) to fit.

    Returns
    -------
    bytes
        PNG of shape (rows * cell, per_class * cell), RGB, white background.
    """
    labels = np.asarray(samples.column("label").to_numpy(zero_copy_only=False))
    images = samples.column("image").combine_chunks().field("bytes")
    classes = sorted(np.unique(labels).tolist())[:max_classes]
    canvas = Image.new("RGB", (per_class * cell, max(len(classes), 1) * cell), "white")
    for row, label in enumerate(classes):
        for col, index in enumerate(np.flatnonzero(labels == label)[:per_class].tolist()):
            pixels = decode_image(images[index].as_py())
            tile = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).convert(
                "RGB"
            )
            if max(tile.size) > cell:
                tile.thumbnail((cell, cell))
            scale = max(1, cell // max(tile.size))
            tile = tile.resize(
                (tile.size[0] * scale, tile.size[1] * scale), Image.Resampling.NEAREST
            )
            canvas.paste(tile, (col * cell, row * cell))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
