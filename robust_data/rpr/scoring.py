"""Score a samples table with a reference model: the ``rpr_scores`` asset's one core call."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.arrays import SampleArrays, class_names, decode_samples
from robust_data.models import TrainedModel
from robust_data.rpr.engine import RprOptions, RprResult, score_rpr
from robust_data.rpr.plots import plot_class_fractions, plot_curves, plot_examples
from robust_data.rpr.table import (
    class_robust_fraction,
    robust_fraction_by_split,
    robustness_curve,
    rpr_table,
)

SPLITS = ("train", "test")


@dataclass
class RprScores:
    """The scores of a samples table and what the paper draws from them.

    Attributes
    ----------
    table : pa.Table
        ``rpr_scores`` rows, one per scored sample.
    result : RprResult
        The engine's raw result (timing, tries).
    data : SampleArrays
        The scored samples, row-aligned with ``table``.
    class_names : list of str
        (K,) label names.
    """

    table: pa.Table
    result: RprResult
    data: SampleArrays
    class_names: list[str]

    def splits(self) -> list[str]:
        """The splits present, train before test."""
        return list(robust_fraction_by_split(self.table))

    def robust_fraction(self) -> dict[str, float]:
        """Robust fraction per split, in [0, 1]; higher is more robust."""
        return robust_fraction_by_split(self.table)

    def curves(self) -> dict[str, np.ndarray]:
        """Robustness curve per split, each (max_steps,) in [0, 1]."""
        steps = self.result.steps_to_flip
        return {
            s: robustness_curve(steps[self.data.splits == s], self.result.max_steps)
            for s in self.splits()
        }

    def class_fractions(self) -> dict[str, np.ndarray]:
        """Robust fraction per class and split, each (K,) in [0, 1]."""
        k = len(self.class_names)
        return {
            s: class_robust_fraction(
                self.data.labels[self.data.splits == s],
                self.result.robust[self.data.splits == s],
                k,
            )
            for s in self.splits()
        }

    def examples(self, per_row: int = 10) -> tuple[list, list]:
        """Correctly classified examples: robust ones, and non-robust ones with their flip."""
        correct = self.result.clean_correct
        robust = np.flatnonzero(correct & self.result.robust)[:per_row]
        fragile = np.flatnonzero(correct & ~self.result.robust)[:per_row]
        names = self.class_names
        top = [(self.data.images[i], f"{names[self.data.labels[i]]} robust") for i in robust]
        bottom = [
            (
                self.data.images[i],
                f"{names[self.data.labels[i]]}→{names[self.result.flip_pred[i]]} @{self.result.steps_to_flip[i]}",
            )
            for i in fragile
        ]
        return top, bottom

    def figures(self) -> dict[str, bytes]:
        """The three PNG plots: robustness curve, robust fraction per class, example grid."""
        spec = f"{self.result.scheme}, max_steps={self.result.max_steps}"
        return {
            "robustness_curve": plot_curves(self.curves(), f"RPR robustness curve ({spec})"),
            "robust_fraction_per_class": plot_class_fractions(
                self.class_fractions(), self.class_names
            ),
            "examples": plot_examples(*self.examples()),
        }


def score_samples(
    samples: pa.Table,
    model: TrainedModel,
    model_sha256: str,
    options: RprOptions | None = None,
    splits: tuple[str, ...] = SPLITS,
    progress: bool = True,
    limit: int | None = None,
) -> RprScores:
    """Score the samples of ``splits`` with the engine and build the ``rpr_scores`` table.

    ``limit`` scores only the first N samples of ``splits``.

    Raises
    ------
    ValueError
        When no sample is in ``splits``, or for any bad input the engine rejects.
    """
    options = options or RprOptions()
    chosen = samples.filter(pc.is_in(samples.column("split"), pa.array(list(splits))))
    if limit is not None:
        chosen = chosen.slice(0, max(limit, 0))  # the class count still comes from all samples
    if chosen.num_rows == 0:
        raise ValueError(f"expected samples in splits {list(splits)}; found none")
    data = decode_samples(chosen)
    names = class_names(samples)
    result = score_rpr(
        model.model, data.images, data.labels, data.sample_ids, len(names), options, progress
    )
    params = {"splits": list(splits), "batch_size": options.batch_size}
    table = rpr_table(
        result,
        data.sample_ids,
        data.splits.tolist(),
        data.labels,
        model_sha256,
        "raw_samples",
        params,
    )
    return RprScores(table, result, data, names)
