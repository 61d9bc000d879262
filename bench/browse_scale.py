"""Benchmark: the browser's paging at 5,000 and 60,000 samples.

The index is robust_data.explore.sample_index.SampleIndex.

Samples are the real digits images tiled to size with fresh ids; the scores are seeded,
made-up values (tests.fixtures.synthetic_scores): paging cost depends on row counts, not on
what the scores mean. For each size: the time to build the index once (read the tables, join
them in DuckDB), then the median time of count + one 60-row page for four requests. Baseline
in the same run: the same request answered the notebook way, reading the stored tables with
pandas, merging and filtering per request. Prints and appends to bench/RESULTS.md.
Run: .venv/bin/python bench/browse_scale.py [--sizes 5000,60000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

import pandas as pd
import pyarrow as pa
from results import record

from robust_data import Store, ingest
from robust_data.explore.filters import SampleFilter
from robust_data.explore.sample_index import PAGE_SIZE, SampleIndex
from tests.fixtures import synthetic_scores

REQUESTS = {
    "first page, by id": (SampleFilter(), "sample_id", False, 0),
    "fragile train, by steps_to_flip": (
        SampleFilter(split="train", robust=False),
        "steps_to_flip",
        False,
        0,
    ),
    "label issues, by label_quality": (SampleFilter(label_issue=True), "label_quality", False, 0),
    "last page, by id": (SampleFilter(), "sample_id", False, -PAGE_SIZE),
}


def tiled_samples(n: int) -> pa.Table:
    """``n`` digits samples (images repeated) with unique ids, 5 of 6 in train."""
    digits = ingest("digits").samples
    rows = pa.concat_tables([digits] * (n // digits.num_rows + 1)).slice(0, n)
    split = ["test" if i % 6 == 5 else "train" for i in range(n)]
    ids = [f"tiled:{s}:{i:06d}" for i, s in enumerate(split)]
    rows = rows.set_column(rows.column_names.index("sample_id"), "sample_id", pa.array(ids))
    rows = rows.set_column(rows.column_names.index("split"), "split", pa.array(split))
    return rows.set_column(rows.column_names.index("dataset"), "dataset", pa.array(["tiled"] * n))


def pandas_page(store: Store, where: SampleFilter, sort: str, offset: int) -> tuple[int, list]:
    """The baseline: read, merge and filter with pandas for each request."""
    frame = store.read("raw_samples", "tiled").drop_columns(["image"]).to_pandas()
    for table in ("rpr_scores", "label_quality", "curation_ledger"):
        other = store.read(table, "tiled").to_pandas()
        other = other.drop(columns=[c for c in other.columns if c in frame and c != "sample_id"])
        frame = frame.merge(other, on="sample_id", how="left")
    mask = pd.Series(True, index=frame.index)
    if where.split is not None:
        mask &= frame["split"] == where.split
    if where.robust is not None:
        mask &= frame["robust"] == where.robust
    if where.label_issue is not None:
        mask &= frame["is_label_issue"] == where.label_issue
    chosen = frame[mask].sort_values([sort, "sample_id"], na_position="last")
    start = offset if offset >= 0 else max(0, len(chosen) + offset)
    return len(chosen), chosen.iloc[start : start + PAGE_SIZE]["sample_id"].tolist()


def median_ms(call, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def run_size(n: int, root: Path) -> list[list[str]]:
    store = Store.open(root / f"home-{n}").ensure()
    samples = tiled_samples(n)
    store.write(samples, "raw_samples", "tiled")
    for name, table in synthetic_scores(samples).items():
        store.write(table, name, "tiled")
    start = time.perf_counter()
    index = SampleIndex(store, "tiled")
    build = time.perf_counter() - start
    rows = [[f"{n:,}", "build the index", f"{build * 1000:,.0f}", "", ""]]
    for name, (where, sort, descending, offset) in REQUESTS.items():
        total = index.count(where)
        start_row = offset if offset >= 0 else max(0, total + offset)

        def ours(where=where, sort=sort, descending=descending, start_row=start_row):
            found = index.page(where, sort, descending, start_row, PAGE_SIZE)
            return index.count(where), [r["sample_id"] for r in found]

        ms, got = median_ms(ours, 20)
        base_ms, expected = median_ms(
            lambda w=where, s=sort, o=offset: pandas_page(store, w, s, o), 3
        )
        assert got == expected, f"{name}: the index and pandas disagree"
        rows.append([f"{n:,}", name, f"{ms:.1f}", f"{base_ms:,.0f}", f"{base_ms / ms:,.0f}x"])
        print(f"{n:>7,} {name:<34} {ms:8.1f} ms  pandas {base_ms:8,.0f} ms", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,60000")
    args = parser.parse_args()
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            rows += run_size(n, Path(tmp))
    pages = [r for r in rows if r[1] != "build the index"]
    worst = max(float(r[2]) for r in pages)
    record(
        "Browser paging (SampleIndex)",
        "`python bench/browse_scale.py`: count + one 60-row page, median of 20 (pandas baseline: "
        "median of 3, read + merge + filter per request); same results asserted.",
        ["samples", "request", "index ms", "pandas ms", "speed-up"],
        rows,
        f"slowest page request {worst:.1f} ms at the largest size",
    )


if __name__ == "__main__":
    main()
