"""Plot helpers shared by the stages: PNG bytes from a matplotlib Figure, image grids."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure (no pyplot state is used or left behind)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def image_grid(
    rows: Sequence[Sequence[tuple[np.ndarray, str]]], title: str, columns: int = 10
) -> bytes:
    """Rows of captioned images as one PNG.

    Parameters
    ----------
    rows : sequence of sequences of (image, caption)
        Images are (C, H, W) float in [0, 1], grayscale (C = 1) or RGB; at most ``columns``
        of each row are drawn.
    title : str
    columns : int
    """
    width = max([len(r[:columns]) for r in rows] + [1])
    fig = Figure(figsize=(1.1 * width, 1.4 * max(len(rows), 1)))
    axes = fig.subplots(max(len(rows), 1), width, squeeze=False)
    for row, items in enumerate(rows):
        for col in range(width):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(items[:columns]):
                image, caption = items[col]
                pixels = np.transpose(image, (1, 2, 0))
                shown = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
                ax.imshow(shown, cmap="gray", vmin=0, vmax=1)
                ax.set_title(caption, fontsize=7)
    fig.suptitle(title, fontsize=9)
    return figure_png(fig)


def legend_outside(ax: Axes) -> None:
    """The axes' legend to the right of the plot, where it never covers a bar or a line.

    It may reach past the figure's edge: :func:`figure_png` saves the tight bounding box,
    which takes it in.
    """
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize="small")


def grouped_bars_figure(
    series: Mapping[str, Sequence[float] | np.ndarray],
    names: Sequence[str],
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """The Figure of :func:`grouped_bars` (its legend outside the axes, on the right)."""
    fig = Figure(figsize=(max(6, 0.5 * len(names) + 2), 3.6))
    ax = fig.subplots()
    positions = np.arange(len(names))
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        ax.bar(
            positions + i * width - 0.4 + width / 2,
            np.nan_to_num(np.asarray(values, float)),
            width,
            label=label,
        )
    ax.set_xticks(positions, [str(n) for n in names], rotation=45 if len(names) > 12 else 0)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    legend_outside(ax)
    ax.set_title(title)
    return fig


def grouped_bars(
    series: Mapping[str, Sequence[float] | np.ndarray],
    names: Sequence[str],
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
) -> bytes:
    """Grouped bars as PNG: one group per name (x axis), one colour per series.

    NaN bars are left out; the legend sits right of the axes, never over a bar.
    """
    return figure_png(grouped_bars_figure(series, names, title, ylabel, ylim))
