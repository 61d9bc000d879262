"""Flip rates under common random numbers, on real digits and tiny trained models."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch import nn

from robust_data.errors import RobustDataError
from robust_data.report.flips import FlipOptions, flip_rate, flip_rates, perturbed_copies
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.rpr.engine import RprOptions, score_rpr
from robust_data.scoring.training import train_model

CPU = {"device": "cpu", "precision": "fp32"}


def _digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    return images, bunch.target.astype(np.int64), [f"digits:{i}" for i in range(len(images))]


@pytest.fixture(scope="module")
def digits_models() -> tuple[dict[str, nn.Module], np.ndarray, np.ndarray, list[str]]:
    """Two tiny CNNs (other seeds, widths) trained on 1,200 digits; 120 test digits."""
    images, labels, ids = _digits()
    models = {
        name: train_model(
            ModelOptions(width=width, epochs=8, seed=seed, precision="fp32"),
            images[:1200],
            labels[:1200],
            10,
            device="cpu",
            progress=False,
            evaluate=False,
        ).model
        for name, width, seed in (("a", 8, 0), ("b", 16, 1))
    }
    return models, images[-120:], labels[-120:], ids[-120:]


class Tape:
    """Records every batch a model sees; shared by the model's deep copies."""

    def __init__(self) -> None:
        self.rows: list[bytes] = []

    def __deepcopy__(self, memo: dict) -> Tape:
        return self


class Recording(nn.Module):
    """``inner``, writing a digest of every input row to ``tape``."""

    def __init__(self, inner: nn.Module, tape: Tape):
        super().__init__()
        self.inner, self.tape = inner, tape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.contiguous().float().cpu().numpy().reshape(len(x), -1)
        self.tape.rows.extend(hashlib.sha256(row.tobytes()).digest() for row in flat)
        return self.inner(x)


class Constant(nn.Module):
    """Predicts ``cls`` out of 10 whatever the input."""

    def __init__(self, cls: int):
        super().__init__()
        self.cls = cls
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 10, device=x.device)
        out[:, self.cls] = 1.0
        return out + 0 * self.dummy


def test_rates_are_the_same_for_any_batch_size_and_call(digits_models) -> None:
    models, images, labels, ids = digits_models
    base = FlipOptions(k=16, **CPU)
    first = flip_rates(models, images, labels, ids, 10, base)
    for batch in (1, 7, 64, 300):
        options = FlipOptions(k=16, batch_size=batch, **CPU)
        again = flip_rates(models, images, labels, ids, 10, options)
        for name in models:
            assert np.array_equal(again[name].flips, first[name].flips), (name, batch)
            assert np.array_equal(again[name].first_flip, first[name].first_flip)
    alone = flip_rate(models["b"], images, labels, ids, 10, base)  # a call without model a
    assert np.array_equal(alone.flip_rate, first["b"].flip_rate)
    result = first["a"]
    assert result.flip_rate.shape == (120,) and result.flip_rate.dtype == np.float64
    assert ((result.flip_rate >= 0) & (result.flip_rate <= 1)).all()
    assert np.array_equal(result.flip_rate, result.flips / 16)
    assert 0 < result.mean_flip_rate < 1 and result.clean_correct.mean() > 0.5
    # another seed draws other copies
    other = flip_rates(models, images, labels, ids, 10, FlipOptions(k=16, seed=1, **CPU))
    assert not np.array_equal(other["a"].flips, result.flips)


def test_two_models_see_the_same_perturbed_inputs(digits_models) -> None:
    models, images, labels, ids = digits_models
    options = FlipOptions(k=8, scheme="salt_pepper(p=0.05)", batch_size=50, **CPU)
    tapes = {name: Tape() for name in models}
    recorded = {name: Recording(m, tapes[name]) for name, m in models.items()}
    together = flip_rates(recorded, images, labels, ids, 10, options)
    tape_alone = Tape()
    flip_rate(Recording(models["b"], tape_alone), images, labels, ids, 10, options)
    assert tapes["a"].rows == tapes["b"].rows == tape_alone.rows
    # the rows are the clean images, then the copies image-major, exactly as regenerated
    copies = perturbed_copies(images, ids, options)
    assert copies.shape == (120, 8, 1, 8, 8)
    expected = np.concatenate([images, copies.numpy().reshape(-1, 1, 8, 8)]).reshape(960 + 120, -1)
    assert tapes["a"].rows == [hashlib.sha256(row.tobytes()).digest() for row in expected]
    # and the rates are the predictions on those copies
    with torch.no_grad():
        preds = models["a"](copies.reshape(-1, 1, 8, 8)).argmax(dim=1).view(120, 8).numpy()
    assert np.array_equal(together["a"].flips, (preds != labels[:, None]).sum(axis=1))


def test_copies_are_rpr_tries(digits_models) -> None:
    """Copy k is RPR's try k: the first flipping copy is steps_to_flip when it is <= K."""
    models, images, labels, ids = digits_models
    k = 32
    result = flip_rate(models["a"], images, labels, ids, 10, FlipOptions(k=k, **CPU))
    rpr = score_rpr(
        models["a"], images, labels, ids, 10, RprOptions(max_steps=k, **CPU), progress=False
    )
    assert np.array_equal(result.first_flip, rpr.steps_to_flip)
    assert np.array_equal(result.clean_pred, rpr.clean_pred)
    assert np.array_equal(result.flips > 0, ~rpr.robust)
    assert 0 < int((result.first_flip > 0).sum()) < len(labels)  # both outcomes occur


def test_a_model_blind_to_noise_never_flips() -> None:
    images, labels, ids = _digits()
    threes = labels == 3
    x, y, sid = images[threes][:40], labels[threes][:40], list(np.array(ids)[threes][:40])
    right = flip_rate(Constant(3), x, y, sid, 10, FlipOptions(k=64, **CPU))
    assert (right.flip_rate == 0).all() and right.clean_correct.all()
    assert (right.first_flip == 0).all() and right.k == 64 and right.scheme == "pixels"
    wrong = flip_rate(Constant(4), x, y, sid, 10, FlipOptions(k=5, **CPU))
    assert (wrong.flip_rate == 1).all() and (wrong.first_flip == 1).all()
    assert not wrong.clean_correct.any()


def test_bad_options_and_inputs_are_refused() -> None:
    images, labels, ids = _digits()
    with pytest.raises(RobustDataError, match="k >= 1"):
        FlipOptions(k=0)
    with pytest.raises(RobustDataError, match="scheme spec"):
        FlipOptions(scheme="nope")
    with pytest.raises(RobustDataError, match="labels in"):
        flip_rate(Constant(0), images[:4], labels[:4] + 10, ids[:4], 10, FlipOptions(**CPU))
    with pytest.raises(RobustDataError, match="image values in"):
        flip_rate(Constant(0), images[:4] * 16, labels[:4], ids[:4], 10, FlipOptions(**CPU))
    with pytest.raises(ValueError, match="expected 4 labels and 4 sample ids"):
        flip_rate(Constant(0), images[:4], labels[:4], ids[:3], 10, FlipOptions(**CPU))
    with pytest.raises(RobustDataError, match="width 3"):
        flip_rate(Constant(0), images[:4], labels[:4] % 3, ids[:4], 3, FlipOptions(**CPU))
