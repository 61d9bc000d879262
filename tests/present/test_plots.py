"""Plots shared by the stages: legends sit beside the data, never over it."""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle

from robust_data.present.plots import grouped_bars, grouped_bars_figure


def test_grouped_bars_legend_never_covers_a_bar() -> None:
    """Bars up to the top of the axes (where a legend inside would sit) stay uncovered."""
    names = [str(k) for k in range(10)]
    series = {"before": np.ones(10), "after": np.full(10, 0.98), "a long series name": np.ones(10)}
    fig = grouped_bars_figure(series, names, "full bars", "fraction", ylim=(0, 1.0))
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = ax.get_legend().get_window_extent()
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 30
    assert not any(legend.overlaps(bar.get_window_extent()) for bar in bars)
    saved = fig.get_tightbbox().transformed(fig.dpi_scale_trans)  # what figure_png saves
    assert saved.contains(legend.x0, legend.y0) and saved.contains(legend.x1, legend.y1)


def test_grouped_bars_is_a_png() -> None:
    png = grouped_bars({"a": [1.0, np.nan]}, ["x", "y"], "title", "count")
    assert png.startswith(b"\x89PNG")
