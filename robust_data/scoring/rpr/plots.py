"""The paper's RPR figures as PNG bytes: robustness curves, per-class bars, example grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from robust_data.present.plots import figure_png, grouped_bars, image_grid, legend_outside


def plot_curves(curves: Mapping[str, np.ndarray], title: str = "RPR robustness curve") -> bytes:
    """Robust fraction against tries, one line per named curve (Figures 3 and 5).

    Parameters
    ----------
    curves : mapping of str to np.ndarray
        Each (max_steps,) in [0, 1], from :func:`robustness_curve`.
    """
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    for name, curve in curves.items():
        steps = np.arange(1, len(curve) + 1)
        ax.plot(steps, curve, label=f"{name} (robust {curve[-1]:.4f})")
    ax.set_xlabel("tries (random perturbations of the original image)")
    ax.set_ylabel("fraction still robust")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    ax.set_title(title)
    return figure_png(fig)


def plot_class_fractions(
    fractions: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    title: str = "Robust fraction per class",
) -> bytes:
    """Grouped bars of the robust fraction per class, one colour per named series (Figure 4).

    Parameters
    ----------
    fractions : mapping of str to np.ndarray
        Each (K,) in [0, 1] (NaN bars are left out).
    class_names : sequence of str
        (K,) names on the x axis.
    """
    return grouped_bars(fractions, class_names, title, "robust fraction", ylim=(0, 1.0))


def plot_examples(
    robust: Sequence[tuple[np.ndarray, str]],
    fragile: Sequence[tuple[np.ndarray, str]],
    title: str = "Correctly classified: robust (top) vs not robust (bottom)",
) -> bytes:
    """Two rows of images with captions (Figure 1).

    Parameters
    ----------
    robust, fragile : sequence of (image, caption)
        Images are (C, H, W) float in [0, 1]; up to 10 of each are drawn.
    """
    return image_grid([robust, fragile], title)
