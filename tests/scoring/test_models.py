"""Reference models: architectures, seeded training, weight files with config and sha256."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robust_data.ingest.arrays import decode_samples
from robust_data.ingest.build import ingest
from robust_data.scoring.models import ModelOptions, build_model, predict_logits
from robust_data.scoring.reference import load_reference, train_reference
from robust_data.scoring.training import train_model
from robust_data.scoring.weights import load_model, save_model


@pytest.fixture(scope="module")
def digits():
    data = decode_samples(ingest("digits", name="digits").samples)
    return data.where(data.splits == "train"), data.where(data.splits == "test")


def test_training_is_seeded_and_learns(digits, tmp_path: Path) -> None:
    train, test = digits
    config = ModelOptions(epochs=3, seed=1)
    first = train_model(
        config, train.images, train.labels, 10, test.images, test.labels, progress=False
    )
    again = train_model(
        config, train.images, train.labels, 10, test.images, test.labels, progress=False
    )
    other = train_model(
        ModelOptions(epochs=3, seed=2), train.images, train.labels, 10, progress=False
    )
    a, b = save_model(first, tmp_path / "a.pt"), save_model(again, tmp_path / "b.pt")
    assert a.sha256 == b.sha256
    assert save_model(other, tmp_path / "c.pt").sha256 != a.sha256
    assert first.metrics["test_accuracy"] > 0.6  # ten classes: chance is 0.1
    assert 0.6 < first.metrics["train_accuracy"] <= 1.0


def test_weight_file_round_trip_checks_sha256(digits, tmp_path: Path) -> None:
    train, test = digits
    trained = train_model(
        ModelOptions(epochs=1), train.images[:200], train.labels[:200], 10, progress=False
    )
    saved = save_model(trained, tmp_path / "m.pt")
    loaded, file = load_model(saved.path, saved.sha256)
    assert file.sha256 == saved.sha256 and loaded.config == trained.config
    np.testing.assert_array_equal(
        predict_logits(loaded.model, test.images, device="cpu"),
        predict_logits(trained.model, test.images, device="cpu"),
    )
    with pytest.raises(ValueError, match=r"expected model .* to have sha256 000000000000"):
        load_model(saved.path, "0" * 64)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"weight file at .*junk\.pt; found unreadable content"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="expected a model weight file"):
        load_model(tmp_path / "missing.pt")


def test_resnet_and_simple_cnn_fit_any_shape() -> None:
    images = np.random.default_rng(0).random((24, 3, 32, 32), dtype=np.float32)
    labels = np.arange(24) % 4
    trained = train_model(
        ModelOptions(arch="resnet", width=4, epochs=1, batch_size=8),
        images,
        labels,
        4,
        progress=False,
    )
    assert predict_logits(trained.model, images, device="cpu").shape == (24, 4)
    cnn = build_model(ModelOptions(width=3), (3, 10, 14), 5)
    assert cnn(torch.zeros(2, 3, 10, 14)).shape == (2, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "vgg"}, "expected arch in"),
        ({"epochs": 0}, "expected epochs >= 1; found 0"),
        ({"optimizer": "lbfgs"}, "expected optimizer in"),
        ({"lr": 0.0}, "expected lr > 0"),
    ],
)
def test_bad_model_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelOptions(**kwargs)


def test_too_small_images_and_bad_labels_are_refused() -> None:
    with pytest.raises(
        ValueError, match="expected images of at least 6x6 for simple_cnn; found 4x4"
    ):
        build_model(ModelOptions(), (1, 4, 4), 2)
    with pytest.raises(ValueError, match=r"expected labels in \[0, 2\); found 0..5"):
        train_model(
            ModelOptions(),
            np.zeros((3, 1, 8, 8), np.float32),
            np.array([0, 1, 5]),
            2,
            progress=False,
        )


def test_train_reference_writes_a_row_naming_the_weights(tmp_path: Path) -> None:
    samples = ingest("digits", name="digits").samples
    table = train_reference(samples, ModelOptions(epochs=1), tmp_path / "ref.pt", progress=False)
    row = table.to_pylist()[0]
    assert row["path"] == str(tmp_path / "ref.pt") and row["train_samples"] == 1438
    assert row["num_classes"] == 10 and 0 <= row["test_accuracy"] <= 1
    model, file = load_reference(table)
    assert file.sha256 == row["sha256"] and model.in_shape == (1, 8, 8)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file
