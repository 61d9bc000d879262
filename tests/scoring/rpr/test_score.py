"""Sharded RPR scoring: two shards in parallel worker processes merge to the unsharded scores."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

from pipelines.cli import main, run_job
from robust_data import Store
from robust_data.scoring.reference import load_reference
from robust_data.scoring.rpr.engine import RprOptions
from robust_data.scoring.rpr.score import Shard, merge_shards, score_samples


def test_shard_bounds_cover_every_row_once() -> None:
    for n in (0, 1, 7, 10, 1797):
        for count in (1, 2, 3, 8):
            bounds = [Shard(i, count).bounds(n) for i in range(count)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    with pytest.raises(ValueError, match="expected a shard index"):
        Shard(2, 2)


def test_merge_refuses_no_shards() -> None:
    with pytest.raises(ValueError, match="expected at least one shard table"):
        merge_shards([], None)  # type: ignore[arg-type]


def _step_spans(instance: DagsterInstance, run_id: str) -> dict[str, dict[str, float | int]]:
    """Start and end time and process id of every shard step of a run."""
    spans: dict[str, dict[str, float | int]] = {}
    kinds = {DagsterEventType.STEP_START: "start", DagsterEventType.STEP_SUCCESS: "end"}
    records = instance.get_records_for_run(run_id, of_type=set(kinds), limit=1000).records
    for record in records:
        entry = record.event_log_entry
        step = entry.step_key or ""
        if "score_rpr_shard" in step:
            spans.setdefault(step, {})[kinds[entry.dagster_event.event_type]] = entry.timestamp
            spans[step]["pid"] = entry.dagster_event.pid
    return spans


@pytest.mark.slow
def test_two_shards_in_parallel_processes_equal_the_unsharded_run(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0
    capsys.readouterr()
    store = Store.open(isolated_home)
    # Enough work per shard (a 128-channel model, 200 tries, under the compile threshold: about
    # 10 s each) that the two shard steps overlap though their processes may start seconds
    # apart (seen: 3 s apart with 50 tries and 3 s of work each, and no overlap).
    ops = {
        "reference_model": {"epochs": 1, "width": 128},
        "rpr_scores": {"max_steps": 200, "shards": 2},
    }
    outcome = run_job(store, "scoring_job", "digits", {}, ops, workers=2)
    sharded = store.read("rpr_scores", "digits")
    # The same scoring in one call, in this process, with the model the job trained.
    samples = store.read("raw_samples", "digits")
    model, weights = load_reference(store.read("reference_model", "digits"))
    unsharded = score_samples(
        samples, model, weights.sha256, RprOptions(max_steps=200), progress=False
    )
    assert sharded.num_rows == unsharded.table.num_rows == 1797
    assert sharded.equals(unsharded.table)  # every column, every row, in order
    assert sharded.column("robust").to_pylist() == unsharded.table.column("robust").to_pylist()
    with DagsterInstance.get() as instance:
        spans = _step_spans(instance, outcome.run_id)
    assert sorted(spans) == [
        "rpr_scores.score_rpr_shard[shard_0]",
        "rpr_scores.score_rpr_shard[shard_1]",
    ]
    first, second = spans.values()
    assert first["pid"] != second["pid"]  # two worker processes
    # the shards' outputs are merged into the table, then removed with the run's success
    assert not (store.storage_root / "_steps" / outcome.run_id).exists()
    assert first["start"] < second["end"] and second["start"] < first["end"]  # at the same time
