"""The batched RPR engine: exact semantics on hand-built models, invariances, cap, bad input."""

from __future__ import annotations

import math
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

from robust_data.scoring.device import release_memory, tune_allocator
from robust_data.scoring.models import ModelOptions, SimpleCNN, build_model
from robust_data.scoring.rpr.engine import ModelRunner, RprOptions, score_rpr, score_rpr_loop
from robust_data.scoring.rpr.table import robustness_curve, rpr_table

FP32 = {"precision": "fp32", "device": "cpu"}


class PixelWatcher(nn.Module):
    """Predicts class 0 while pixel (row, col) of channel 0 keeps ``value``, class 1 otherwise."""

    def __init__(self, row: int, col: int, value: float = 0.5):
        super().__init__()
        self.row, self.col, self.value = row, col, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = (x[:, 0, self.row, self.col] - self.value).abs() < 1e-6
        return torch.stack([kept, ~kept], dim=1).float()


class Constant(nn.Module):
    """Always predicts ``cls`` out of ``width`` classes."""

    def __init__(self, cls: int, width: int = 3):
        super().__init__()
        self.cls, self.width = cls, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.width, device=x.device)
        out[:, self.cls] = 1.0
        return out


def _flat(n: int, size: int = 8, channels: int = 1) -> torch.Tensor:
    return torch.full((n, channels, size, size), 0.5)


def _linear(seed: int, pixels: int, classes: int) -> nn.Module:
    """A random linear classifier whose predictions vary across random images."""
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(pixels, classes)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(classes, pixels, generator=generator))
        layer.bias.zero_()
    return nn.Sequential(nn.Flatten(), layer).eval()


def _ids(n: int, prefix: str = "s") -> list[str]:
    return [f"{prefix}:{i}" for i in range(n)]


def test_engine_equals_the_per_image_loop_on_a_pixel_watcher() -> None:
    n, model = 40, PixelWatcher(3, 5)
    images, labels, ids = _flat(n), torch.zeros(n, dtype=torch.int64), _ids(n)
    result = score_rpr(
        model, images, labels, ids, 2, RprOptions(max_steps=30, **FP32), progress=False
    )
    expected = [score_rpr_loop(model, images[i], 0, ids[i], "pixels", 0, 30) for i in range(n)]
    assert result.steps_to_flip.tolist() == [s for s, _ in expected]
    assert result.flip_pred.tolist() == [p for _, p in expected]
    assert result.clean_correct.all() and (result.clean_pred == 0).all()
    assert 0 < result.robust.sum() < n  # both outcomes occur, so the comparison means something
    flipped = ~result.robust
    assert result.tries == int(result.steps_to_flip[flipped].sum() + 30 * result.robust.sum())
    assert result.computed >= result.tries


def test_flip_rate_matches_the_known_probability_of_touching_the_pixel() -> None:
    # pixels on 8x8 alters k = 8 positions drawn with replacement: the watched pixel is hit
    # on a try with probability q = 1 - (63/64)**8, independently per try.
    n, max_steps = 3000, 10
    q = 1 - (63 / 64) ** 8
    result = score_rpr(
        PixelWatcher(2, 6),
        _flat(n),
        torch.zeros(n, dtype=torch.int64),
        _ids(n, "stat"),
        2,
        RprOptions(max_steps=max_steps, **FP32),
        progress=False,
    )
    first = float((result.steps_to_flip == 1).mean())
    survived = float(result.robust.mean())
    assert abs(first - q) < 4 * math.sqrt(q * (1 - q) / n)
    p_survive = (1 - q) ** max_steps
    assert abs(survived - p_survive) < 4 * math.sqrt(p_survive * (1 - p_survive) / n)
    curve = robustness_curve(result.steps_to_flip, max_steps)
    expected_curve = (1 - q) ** np.arange(1, max_steps + 1)
    assert np.abs(curve - expected_curve).max() < 0.04
    assert curve[-1] == pytest.approx(survived)


def test_constant_models_never_or_always_flip() -> None:
    images, ids = _flat(12), _ids(12)
    never = score_rpr(
        Constant(2), images, torch.full((12,), 2), ids, 3, RprOptions(max_steps=50), progress=False
    )
    assert never.robust.all() and (never.steps_to_flip == 0).all() and (never.flip_pred == -1).all()
    assert never.tries == 12 * 50
    always = score_rpr(Constant(1), images, torch.full((12,), 0), ids, 3, progress=False)
    assert (always.steps_to_flip == 1).all() and (always.flip_pred == 1).all()
    assert not always.clean_correct.any() and (always.clean_pred == 1).all()
    assert always.tries == 12


def test_misclassified_inputs_are_scored_by_the_same_definition() -> None:
    # The watcher predicts class 0 on the clean image: with label 1 every point "flips" at the
    # first try that leaves the pixel alone, which is try 1 almost always.
    n = 30
    result = score_rpr(
        PixelWatcher(0, 0),
        _flat(n),
        torch.ones(n, dtype=torch.int64),
        _ids(n),
        2,
        RprOptions(max_steps=20, **FP32),
        progress=False,
    )
    assert not result.clean_correct.any()
    expected = [
        score_rpr_loop(PixelWatcher(0, 0), _flat(1)[0], 1, i, "pixels", 0, 20) for i in _ids(n)
    ]
    assert result.steps_to_flip.tolist() == [s for s, _ in expected]


def test_the_cap_truncates_without_changing_earlier_flips() -> None:
    n, model = 200, PixelWatcher(4, 4)
    args = (model, _flat(n), torch.zeros(n, dtype=torch.int64), _ids(n), 2)
    long = score_rpr(*args, RprOptions(max_steps=60, **FP32), progress=False).steps_to_flip
    short = score_rpr(*args, RprOptions(max_steps=7, **FP32), progress=False)
    assert short.steps_to_flip.tolist() == np.where((long > 0) & (long <= 7), long, 0).tolist()
    assert short.steps_to_flip.max() <= 7 and short.max_steps == 7
    one = score_rpr(*args, RprOptions(max_steps=1, **FP32), progress=False).steps_to_flip
    assert set(one.tolist()) <= {0, 1}


def test_scores_do_not_depend_on_batch_size_window_or_order() -> None:
    n = 64
    model = _linear(3, 100, 3)
    images = torch.rand(n, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    labels = model(images).argmax(1)
    ids = _ids(n, "inv")
    options = {"scheme": "gaussian(sigma=0.3)", "max_steps": 40, **FP32}
    base = score_rpr(model, images, labels, ids, 3, RprOptions(**options), progress=False)
    small = score_rpr(
        model,
        images,
        labels,
        ids,
        3,
        RprOptions(batch_size=5, first_window=1, max_window=3, **options),
        progress=False,
    )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    shuffled = score_rpr(
        model,
        images[order],
        labels[order],
        [ids[i] for i in order],
        3,
        RprOptions(batch_size=37, **options),
        progress=False,
    )
    assert 0 < base.robust.sum() < n
    for other, index in ((small, torch.arange(n)), (shuffled, order)):
        assert other.steps_to_flip.tolist() == base.steps_to_flip[index].tolist()
        assert other.flip_pred.tolist() == base.flip_pred[index].tolist()
    loop = [
        score_rpr_loop(model, images[i], int(labels[i]), ids[i], options["scheme"], 0, 40)
        for i in range(8)
    ]
    assert [s for s, _ in loop] == base.steps_to_flip[:8].tolist()
    reseeded = score_rpr(
        model, images, labels, ids, 3, RprOptions(seed=1, **options), progress=False
    )
    assert reseeded.steps_to_flip.tolist() != base.steps_to_flip.tolist()


def test_compiled_engine_pads_batches_and_gives_the_same_scores() -> None:
    n = 50
    conv = nn.Conv2d(1, 4, 3)
    with torch.no_grad():  # seeded weights: the test must not depend on the global RNG
        conv.weight.copy_(torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(8)))
        conv.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), _linear(7, 4 * 10 * 10, 3)).eval()
    images = torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    labels = model(images).argmax(1)
    options = {"scheme": "gaussian(sigma=0.4)", "max_steps": 30, "batch_size": 256, **FP32}
    args = (model, images, labels, _ids(n), 3)
    eager = score_rpr(*args, RprOptions(compile="off", **options), progress=False)
    compiled = score_rpr(*args, RprOptions(compile="on", **options), progress=False)
    assert 0 < eager.robust.sum() < n
    assert compiled.steps_to_flip.tolist() == eager.steps_to_flip.tolist()
    assert compiled.flip_pred.tolist() == eager.flip_pred.tolist()
    assert compiled.tries == eager.tries
    # every perturbed pass ran padded to the forward slice (256 on the CPU)
    assert compiled.computed % 256 == 0 and compiled.computed > eager.computed
    sliced = score_rpr(*args, RprOptions(compile="off", forward_rows=7, **options), progress=False)
    assert sliced.steps_to_flip.tolist() == eager.steps_to_flip.tolist()
    assert sliced.tries == eager.tries


def test_a_closed_runner_leaves_no_compiled_code_behind() -> None:
    # Every compiled model adds a cache entry on its class's forward; at dynamo's recompile
    # limit (8) it falls back to eager for good, so a job that compiles many models in one
    # process must drop each one when done.
    model = build_model(ModelOptions(width=2), (1, 8, 8), 3).eval()
    runner = ModelRunner(model, RprOptions(forward_rows=8, **FP32), compiled=True)
    with torch.inference_mode():
        out = runner(torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (5, 3) and runner.padded == 3
    code = SimpleCNN.forward.__code__
    assert len(_debug_get_cache_entry_list(code)) == 1
    runner.close()
    assert _debug_get_cache_entry_list(code) == []


def test_bf16_autocast_runs_on_the_cpu_and_mostly_agrees_with_fp32() -> None:
    n = 48
    model = _linear(5, 144, 4)
    images = torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    labels = model(images).argmax(1)
    args = (model, images, labels, _ids(n), 4)
    fp32 = score_rpr(*args, RprOptions(max_steps=25, precision="fp32"), progress=False)
    bf16 = score_rpr(*args, RprOptions(max_steps=25, precision="bf16"), progress=False)
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    assert 0 < fp32.robust.sum() < n
    assert float((fp32.robust == bf16.robust).mean()) >= 0.8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_scores_equal_cpu_scores() -> None:
    n, model = 100, PixelWatcher(1, 2)
    args = (model, _flat(n), torch.zeros(n, dtype=torch.int64), _ids(n), 2)
    cpu = score_rpr(*args, RprOptions(max_steps=50, device="cpu"), progress=False)
    cuda = score_rpr(*args, RprOptions(max_steps=50, device="cuda"), progress=False)
    assert cpu.steps_to_flip.tolist() == cuda.steps_to_flip.tolist()


def test_robustness_curve_from_steps() -> None:
    curve = robustness_curve(np.array([1, 1, 3, 0]), 4)
    assert curve.tolist() == [0.5, 0.5, 0.25, 0.25]
    assert np.isnan(robustness_curve(np.array([], dtype=np.int64), 3)).all()


def test_table_has_nulls_for_survivors() -> None:
    result = score_rpr(
        Constant(0, 2), _flat(3), torch.tensor([0, 1, 0]), _ids(3), 2, progress=False
    )
    table = rpr_table(result, _ids(3), ["train", "test", "test"], np.array([0, 1, 0]), "abc")
    rows = table.to_pylist()
    assert [r["steps_to_flip"] for r in rows] == [None, 1, None]
    assert [r["flip_pred"] for r in rows] == [None, 0, None]
    assert [r["robust"] for r in rows] == [True, False, True]
    assert rows[0]["scheme"] == "pixels" and rows[0]["max_steps"] == 250


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"model": Constant(0, 4)},
            r"expected model output of width 3 \(the class count\); found shape \(1, 4\)",
        ),
        ({"labels": torch.tensor([0, 3, 1])}, r"expected labels in \[0, 3\); found 0..3"),
        ({"images": _flat(3) * 3}, r"expected image values in \[0, 1\]"),
        ({"images": torch.full((3, 8, 8), 0.5)}, r"expected images of shape \(N, C, H, W\)"),
        ({"sample_ids": ["a", "b"]}, "expected 3 labels and 3 sample ids"),
    ],
)
def test_bad_input_is_a_one_line_value_error(kwargs: dict, message: str) -> None:
    args = {
        "model": Constant(0, 3),
        "images": _flat(3),
        "labels": torch.tensor([0, 1, 2]),
        "sample_ids": _ids(3),
        "num_classes": 3,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message) as info:
        score_rpr(**args, progress=False)
    assert "\n" not in str(info.value)


def test_bad_options_and_wrong_image_size_are_value_errors() -> None:
    with pytest.raises(ValueError, match="expected max_steps >= 1; found 0"):
        RprOptions(max_steps=0)
    with pytest.raises(ValueError, match="unknown scheme 'rain'"):
        RprOptions(scheme="rain(severity=3)")
    model = build_model(ModelOptions(width=2), (1, 28, 28), 10)
    with pytest.raises(
        ValueError, match=r"expected images the model accepts; found shape \(1, 8, 8\)"
    ):
        score_rpr(model, _flat(2), torch.tensor([0, 1]), _ids(2), 10, progress=False)


def test_the_allocator_is_tuned_on_glibc() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert tune_allocator() is True  # both mallopt calls accepted


def _rss_mb() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if "VmRSS" in x)
    return int(line.split()[1]) / 1024


def test_released_memory_goes_back_to_the_os() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    tune_allocator()  # keeps up to 1 GB of freed heap: what release_memory hands back
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 256 MB in heap-sized blocks
    held = _rss_mb()
    del blocks
    freed = _rss_mb()
    assert release_memory() is True
    released = _rss_mb()
    assert freed - released > 150, (held, freed, released)


def test_released_memory_includes_what_arrow_kept_after_a_parquet_read(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = np.random.default_rng(0).integers(0, 255, (250_000, 784), dtype=np.uint8)
    offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32) * 784)
    pixels = pa.Array.from_buffers(
        pa.binary(), len(rows), [None, offsets.buffers()[1], pa.py_buffer(rows)]
    )
    pq.write_table(pa.table({"pixels": pixels}), tmp_path / "t.parquet", row_group_size=10_000)
    del rows, offsets, pixels
    table = pq.read_table(tmp_path / "t.parquet")  # ~200 MB from Arrow's pool (mimalloc)
    del table
    kept = _rss_mb()
    release_memory()
    released = _rss_mb()
    assert kept - released > 100, (kept, released)  # fails without release_unused
