"""Score a samples table with a reference model: the ``rpr_scores`` asset's one core call."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robust_data.errors import DatasetError
from robust_data.ingest.arrays import SampleArrays, class_names, decode_samples
from robust_data.present.summary import ROW_COUNT, StageSummary, logged
from robust_data.scoring.models import TrainedModel
from robust_data.scoring.rpr.engine import RprOptions, RprResult, score_rpr
from robust_data.scoring.rpr.plots import plot_class_fractions, plot_curves, plot_examples
from robust_data.scoring.rpr.table import (
    class_robust_fraction,
    robust_fraction_by_split,
    robustness_curve,
    rpr_table,
)
from robust_data.store.schema import read_metadata, table_metadata

SPLITS = ("train", "test")

#: Keys of a shard table's params that differ between shards (left out of the merged table).
_SHARD_KEYS = ("shard", "tries", "computed", "seconds")


@dataclass(frozen=True)
class Shard:
    """One of ``count`` contiguous slices of the samples to score.

    Attributes
    ----------
    index : int
        0 .. count-1.
    count : int
        Number of shards, >= 1.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"expected a shard index in 0..count-1 and count >= 1; found index "
                f"{self.index} of {self.count}; number shards from 0"
            )

    def bounds(self, n: int) -> tuple[int, int]:
        """Row range [start, stop) of this shard among ``n`` rows; shards differ by <= 1 row."""
        return self.index * n // self.count, (self.index + 1) * n // self.count


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
                f"{names[self.data.labels[i]]}→{names[self.result.flip_pred[i]]} "
                f"@{self.result.steps_to_flip[i]}",
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

    def summary(self) -> RprSummary:
        """What was scored and how, for the asset's metadata and the CLI."""
        return RprSummary(
            robust_fraction={s: round(float(f), 4) for s, f in self.robust_fraction().items()},
            rows=self.table.num_rows,
            scheme=self.result.scheme,
            max_steps=self.result.max_steps,
            model_sha256=self.table.column("model_sha256")[0].as_py(),
            device=f"{self.result.device} ({self.result.precision})",
        )


@dataclass(frozen=True, kw_only=True)
class RprSummary(StageSummary):
    """The summary of RPR scores: robust fraction per split (4 decimals; higher is more
    robust), then how they were scored."""

    robust_fraction: dict[str, float] = field(metadata=logged(each="robust_fraction_"))
    rows: int = field(metadata=logged(key=ROW_COUNT))
    scheme: str
    max_steps: int
    model_sha256: str
    device: str  # where it ran and at what precision, e.g. "cuda (bf16)"


def score_samples(
    samples: pa.Table,
    model: TrainedModel,
    model_sha256: str,
    options: RprOptions | None = None,
    splits: tuple[str, ...] = SPLITS,
    progress: bool = True,
    limit: int | None = None,
    shard: Shard | None = None,
) -> RprScores:
    """Score the samples of ``splits`` with the engine and build the ``rpr_scores`` table.

    ``limit`` scores only the first N samples of ``splits``; ``shard`` scores only its slice
    of them (merge the shards' tables with :func:`merge_shards`). Scores depend only on the
    sample id, the seed and the model, so shards merge to exactly the unsharded table.

    Raises
    ------
    RobustDataError
        When no sample is in ``splits`` (a DatasetError), or for any bad input the engine
        rejects.
    """
    options = options or RprOptions()
    chosen = samples.filter(pc.is_in(samples.column("split"), pa.array(list(splits))))
    if limit is not None:
        chosen = chosen.slice(0, max(limit, 0))  # the class count still comes from all samples
    if chosen.num_rows == 0:
        raise DatasetError(
            f"samples in splits {list(splits)}", "none", "score a split the samples table has"
        )
    if shard is not None:
        start, stop = shard.bounds(chosen.num_rows)
        chosen = chosen.slice(start, stop - start)
    data = decode_samples(chosen)
    names = class_names(samples)
    result = score_rpr(
        model.model, data.images, data.labels, data.sample_ids, len(names), options, progress
    )
    params: dict[str, object] = {"splits": list(splits), "batch_size": options.batch_size}
    if shard is not None:
        params.update(
            shard=[shard.index, shard.count],
            tries=result.tries,
            computed=result.computed,
            seconds=result.seconds,
        )
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


@dataclass(frozen=True)
class ShardInfo:
    """What one shard table's metadata says.

    Attributes
    ----------
    index, count : int
        This shard is ``index`` of ``count`` (0-based).
    tries, computed : int
        Forward passes it needed and ran.
    seconds : float
        Its scoring time.
    scoring : dict
        Everything else in its metadata (scheme, seed, model_sha256, ...): equal in every
        shard of one scoring, except ``code_revision``.
    """

    index: int
    count: int
    tries: int
    computed: int
    seconds: float
    scoring: dict[str, Any]


def _shard_info(table: pa.Table) -> ShardInfo:
    meta = read_metadata(table.schema)
    params = json.loads(meta.get("params", "{}"))
    if "shard" not in params:
        raise DatasetError(
            "rpr_scores shard tables (from score_samples(..., shard=...))",
            "a table without shard metadata",
            "score with a Shard",
        )
    merged = {**{k: v for k, v in meta.items() if k != "params"}, **params}
    index, count = merged["shard"]
    return ShardInfo(
        index=int(index),
        count=int(count),
        tries=int(merged["tries"]),
        computed=int(merged["computed"]),
        seconds=float(merged["seconds"]),
        scoring={k: v for k, v in merged.items() if k not in _SHARD_KEYS},
    )


def merge_shards(tables: Sequence[pa.Table], samples: pa.Table) -> RprScores:
    """Merge the shard tables of one scoring into the table an unsharded run gives.

    Parameters
    ----------
    tables : sequence of pa.Table
        One ``rpr_scores`` table per shard, any order; together shards 0..count-1, each once,
        with the same model, scheme, seed and splits.
    samples : pa.Table
        The samples table that was scored (for the plots' images and class names).

    Raises
    ------
    DatasetError
        When shards are missing, repeated, or come from different scorings.
    """
    if not tables:
        raise DatasetError("at least one shard table", "none", "score the shards first")
    infos = [_shard_info(t) for t in tables]
    count = infos[0].count
    indices = sorted(i.index for i in infos)
    if indices != list(range(count)) or any(i.count != count for i in infos):
        raise DatasetError(
            f"shards 0..{count - 1} of {count}, each once",
            str([[i.index, i.count] for i in infos]),
            "rerun the missing shards",
        )
    same = infos[0].scoring
    for info in infos[1:]:
        differ = sorted(k for k in same if info.scoring.get(k) != same[k] and k != "code_revision")
        if differ:
            raise DatasetError("shards of one scoring", f"different {differ}", "rescore all shards")
    order = sorted(range(len(tables)), key=lambda i: infos[i].index)
    merged = pa.concat_tables([tables[i].replace_schema_metadata(None) for i in order])
    steps = merged.column("steps_to_flip").fill_null(0).to_numpy().astype(np.int64)
    flip = merged.column("flip_pred").fill_null(-1).to_numpy().astype(np.int64)
    clean_pred = merged.column("clean_pred").to_numpy().astype(np.int64)
    result = RprResult(
        clean_pred=clean_pred,
        clean_correct=merged.column("clean_correct").to_numpy(zero_copy_only=False).astype(bool),
        steps_to_flip=steps,
        flip_pred=flip,
        scheme=str(same["scheme"]),
        max_steps=int(same["max_steps"]),
        seed=int(same["seed"]),
        device=str(same["device"]),
        precision=str(same["precision"]),
        tries=sum(i.tries for i in infos),
        computed=sum(i.computed for i in infos),
        seconds=max(i.seconds for i in infos),
    )
    keep = ("scheme", "max_steps", "seed", "model_sha256", "device", "precision")
    meta = {k: same[k] for k in keep}
    meta.update({"splits": same["splits"], "batch_size": same["batch_size"], "shards": count})
    table = merged.replace_schema_metadata(table_metadata("rpr_scores", str(same["source"]), meta))
    position = {sid: i for i, sid in enumerate(samples.column("sample_id").to_pylist())}
    ids = merged.column("sample_id").to_pylist()
    missing = [sid for sid in ids if sid not in position]
    if missing:
        raise DatasetError(
            "every scored sample in the samples table",
            f"{len(missing)} missing (first {missing[0]!r})",
            "merge with the samples table that was scored",
        )
    data = decode_samples(samples.take(pa.array([position[sid] for sid in ids])))
    return RprScores(table, result, data, class_names(samples))
