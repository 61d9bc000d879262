"""The stored corrupted test set and the shared corruption suite, on tiny inputs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

from robust_data.io.parquet import read_parquet, write_parquet_atomic
from robust_data.report.corruption_suite import (
    SuiteOptions,
    corrupt_chunks,
    corruption_accuracy,
    evaluate_suite,
    suite_jobs,
)
from robust_data.report.testset import (
    CORRUPTED_SCHEMA,
    CorruptedTestOptions,
    check_corrupted_test,
    corrupted_jobs,
    make_corrupted_test,
    stored_chunks,
    to_uint8,
)
from robust_data.store.schema import read_metadata

NAMES = ("gaussian_noise", "contrast")


def _data(n: int = 7) -> tuple[np.ndarray, np.ndarray, list[str]]:
    g = torch.Generator().manual_seed(3)
    images = torch.rand(n, 1, 12, 12, generator=g).numpy()
    labels = np.arange(n) % 3
    return images, labels, [f"t:{i}" for i in range(n)]


def _model(seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def test_stored_set_holds_every_job_in_order_and_round_trips(tmp_path) -> None:
    images, labels, ids = _data()
    table = make_corrupted_test(
        images, labels, ids, CorruptedTestOptions(NAMES, seed=5, batch_size=3), progress=False
    )
    jobs = suite_jobs(NAMES)
    assert table.schema.equals(CORRUPTED_SCHEMA, check_metadata=False)
    assert table.num_rows == len(ids) * len(jobs) == 7 * 11
    assert corrupted_jobs(table) == jobs
    params = read_metadata(table.schema)
    assert (
        read_metadata(table.schema)["table"] == "corrupted_test" and '"seed": 5' in params["params"]
    )
    path = write_parquet_atomic(table, tmp_path / "c.parquet")
    stored = read_parquet(path)
    assert read_metadata(stored.schema) == read_metadata(table.schema)
    # Reading back gives the corruption quantized to uint8, whatever the chunk sizes.
    expected = {
        (j, start): to_uint8(chunk)
        for j, start, chunk in corrupt_chunks(images, ids, jobs, 5, batch_size=len(ids))
    }
    seen = 0
    for j, start, chunk in stored_chunks(stored, batch_size=4):
        want = expected[(j, 0)][start : start + len(chunk)]
        assert np.array_equal(to_uint8(chunk), want)
        assert np.allclose(chunk.numpy().reshape(len(chunk), -1), want / 255, atol=1e-7)
        seen += len(chunk)
    assert seen == table.num_rows
    assert stored.column("sample_id").to_pylist()[:7] == ids  # clean first, split order


def test_suite_shared_by_models_equals_each_model_alone() -> None:
    images, labels, ids = _data(9)
    models = {"a": _model(0), "b": _model(1)}
    jobs = suite_jobs(NAMES)
    options = SuiteOptions(seed=2, device="cpu", precision="fp32", batch_size=4, compile="off")
    shared = evaluate_suite(
        models, labels, jobs, corrupt_chunks(images, ids, jobs, 2, 4), options, False
    )
    for name, model in models.items():
        alone = corruption_accuracy(model, images, labels, ids, NAMES, 2, "cpu", 4, False)
        assert shared[name].to_pylist() == alone.to_pylist()
    assert shared["a"].to_pylist() != shared["b"].to_pylist()  # two different models
    # The caller's models are not moved or re-laid out.
    assert all(p.is_contiguous() for m in models.values() for p in m.parameters())


def test_suite_over_the_stored_set_matches_quantized_on_the_fly() -> None:
    images, labels, ids = _data(8)
    jobs = suite_jobs(NAMES)
    table = make_corrupted_test(images, labels, ids, CorruptedTestOptions(NAMES, 1), progress=False)
    options = SuiteOptions(seed=1, device="cpu", precision="fp32", batch_size=3, compile="off")
    model = {"m": _model(4)}
    stored = evaluate_suite(model, labels, jobs, stored_chunks(table, 3), options, False)["m"]
    quantized = (
        (j, s, torch.from_numpy(to_uint8(c)).reshape(c.shape).float() / 255)
        for j, s, c in corrupt_chunks(images, ids, jobs, 1, 5)
    )
    direct = evaluate_suite(model, labels, jobs, quantized, options, False)["m"]
    assert stored.to_pylist() == direct.to_pylist()


def test_unknown_corruptions_are_refused() -> None:
    images, labels, ids = _data(4)
    with pytest.raises(ValueError, match="expected corruptions from"):
        make_corrupted_test(images, labels, ids, CorruptedTestOptions(("rain",)), progress=False)


def test_check_finds_rows_that_do_not_match_the_test_split() -> None:
    images, labels, ids = _data(5)
    samples = pa.table(
        {
            "sample_id": [*ids, "x:0"],
            "split": ["test"] * 5 + ["train"],
            "label": [*list(labels), 0],
        }
    )
    table = make_corrupted_test(
        images, labels, ids, CorruptedTestOptions(("contrast",)), progress=False
    )
    assert check_corrupted_test(table, samples).passed
    shuffled = table.take(pa.array([1, 0, *range(2, table.num_rows)]))
    outcome = check_corrupted_test(shuffled, samples)
    assert not outcome.passed and "clean/0: ids or labels differ" in outcome.summary()
    short = table.slice(0, table.num_rows - 1)
    assert "expected 5 test images x 6 jobs" in check_corrupted_test(short, samples).summary()
