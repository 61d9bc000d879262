"""Your own model: a factory module on sys.path and a TorchScript file, scored and retrained.

The factory module is written into tmp_path and put on sys.path; the TorchScript file is a
factory model trained for one epoch on sklearn's digits and scripted. Both score a few digits
with the real RPR engine on the CPU, seeded.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

from robust_data.curation.presets import PRESETS
from robust_data.errors import DatasetError, RobustDataError
from robust_data.ingest.arrays import decode_samples
from robust_data.ingest.build import ingest
from robust_data.report.retrain import RetrainOptions, StoredModel, retrain_models
from robust_data.scoring.models import ModelOptions, build_model, embed, predict_logits
from robust_data.scoring.reference import load_reference, scoring_model, train_reference
from robust_data.scoring.rpr.engine import RprOptions
from robust_data.scoring.rpr.score import score_samples
from robust_data.scoring.spec import ModelSpec
from robust_data.scoring.training import train_model
from robust_data.scoring.weights import load_model

MODULE = "rd_own_models"
FACTORIES = textwrap.dedent(
    """
    from torch import nn

    def mlp(num_classes, in_shape):
        channels, height, width = in_shape
        return nn.Sequential(
            nn.Flatten(), nn.Linear(channels * height * width, 32), nn.ReLU(),
            nn.Linear(32, num_classes),
        )

    def conv(num_classes, in_shape):
        channels, height, width = in_shape
        return nn.Sequential(
            nn.Conv2d(channels, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
            nn.Linear(4 * (height - 2) * (width - 2), num_classes),
        )

    def not_a_module(num_classes, in_shape):
        return "a string"

    def too_wide(num_classes, in_shape):
        return mlp(num_classes + 1, in_shape)

    def broken(num_classes, in_shape):
        raise KeyError("no such layer")

    def nan_model(num_classes, in_shape):
        model = mlp(num_classes, in_shape)
        nn.init.constant_(model[-1].bias, float("nan"))
        return model

    class _Liar(nn.Module):
        def __init__(self, num_classes, in_shape):
            super().__init__()
            self.inner = mlp(num_classes, in_shape)

        def forward(self, x):
            out = self.inner(x)
            return out if len(x) == 2 else out[:, :-1]  # right only for a batch of 2

    def liar(num_classes, in_shape):
        return _Liar(num_classes, in_shape)

    NOT_CALLABLE = 3
    """
)
SCORING = RprOptions(max_steps=20, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def digits() -> pa.Table:
    return ingest("digits", name="digits").samples


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The factory module, importable as :data:`MODULE`."""
    folder = tmp_path / "factories"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(__import__("sys").modules, MODULE, raising=False)
    return MODULE


@pytest.fixture
def scripted(digits: pa.Table, factories: str, tmp_path: Path) -> Path:
    """A trained model as a TorchScript file: the conv factory, one epoch on digits."""
    data = decode_samples(digits)
    train = data.where(data.splits == "train")
    options = ModelOptions(model=f"{factories}:conv", epochs=2, seed=3, lr=0.01)
    trained = train_model(options, train.images, train.labels, 10, device="cpu", progress=False)
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(trained.model), str(path))
    return path


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(error.value)
    assert "\n" not in text and text.startswith("expected "), text
    return text


def _scores(samples: pa.Table, reference: pa.Table) -> pa.Table:
    model, weights = load_reference(reference)
    scored = score_samples(samples, model, weights.sha256, SCORING, ("test",), False, limit=24)
    return scored.table


def test_parse_and_flags() -> None:
    assert ModelSpec.parse("resnet") == ModelSpec("builtin", "resnet")
    assert ModelSpec.parse("my_pkg.models:make") == ModelSpec("factory", "my_pkg.models:make")
    assert ModelSpec.parse("models/net.pt") == ModelSpec("torchscript", "models/net.pt")
    assert ModelSpec.from_flags(None, None) is None
    assert ModelSpec.from_flags(None, "resnet") == ModelSpec("builtin", "resnet")
    assert ModelOptions(model="m:f").spec == ModelSpec("factory", "m:f")
    assert ModelOptions(arch="resnet").spec == ModelSpec("builtin", "resnet")
    assert ModelOptions(**ModelSpec.parse("m:f").fields()).spec == ModelSpec("factory", "m:f")
    assert ModelSpec.parse("resnet").fields() == {"arch": "resnet"}
    with pytest.raises(RobustDataError) as both:
        ModelSpec.from_flags("m:f", "resnet")
    assert _one_line(both).startswith("expected `model` or `arch`, not both; found model 'm:f'")
    with pytest.raises(RobustDataError) as arch:
        ModelSpec.from_flags(None, "vgg")
    assert "found 'vgg'" in _one_line(arch)
    with pytest.raises(RobustDataError) as empty:
        ModelSpec.parse(" ")
    assert "found an empty string" in _one_line(empty)
    with pytest.raises(RobustDataError) as builtin:
        ModelOptions(model="resnet")
    assert _one_line(builtin).endswith("pass `arch=resnet` for the built-in")


def test_factory_reference_is_trained_seeded_and_scores(
    digits: pa.Table, factories: str, tmp_path: Path
) -> None:
    options = ModelOptions(model=f"{factories}:mlp", epochs=2, seed=1, lr=0.01)
    first = train_reference(digits, options, tmp_path / "a.pt", device="cpu", progress=False)
    again = train_reference(digits, options, tmp_path / "b.pt", device="cpu", progress=False)
    row = first.to_pylist()[0]
    assert row["model_kind"] == "factory" and row["model_source"] == f"{factories}:mlp"
    assert row["model_sha256"] is None and row["arch"] == "factory"
    assert row["train_samples"] > 1000 and row["test_accuracy"] > 0.5  # chance is 0.1
    assert row["sha256"] == again.to_pylist()[0]["sha256"]  # same seed, same weights
    scores = _scores(digits, first)
    assert scores.num_rows == 24
    assert scores.equals(_scores(digits, again))  # same seed, same scores
    model, _ = load_reference(first)
    assert embed(model.model, np.zeros((3, 1, 8, 8), np.float32), "cpu").shape == (3, 10)
    other = ModelOptions(model=f"{factories}:mlp", epochs=2, seed=2, lr=0.01)
    third = train_reference(digits, other, tmp_path / "c.pt", device="cpu", progress=False)
    assert third.to_pylist()[0]["sha256"] != row["sha256"]


def test_torchscript_reference_is_used_as_is(
    digits: pa.Table, scripted: Path, tmp_path: Path
) -> None:
    table = train_reference(
        digits, ModelOptions(model=str(scripted)), tmp_path / "ref.pt", "cpu", False
    )
    row = table.to_pylist()[0]
    file_sha = hashlib.sha256(scripted.read_bytes()).hexdigest()
    assert (row["model_kind"], row["model_source"]) == ("torchscript", str(scripted))
    assert row["model_sha256"] == file_sha and row["train_samples"] == 0
    assert row["test_accuracy"] > 0.5
    assert '"model_sha256": "' + file_sha in table.schema.metadata[b"robust_data.params"].decode()
    stored, weights = load_reference(table)  # the store's copy, loadable without the file
    assert isinstance(stored.model, torch.jit.ScriptModule) and stored.num_classes == 10
    original = torch.jit.load(str(scripted))
    images = decode_samples(digits).images[:16]
    np.testing.assert_array_equal(
        predict_logits(stored.model, images, "cpu"), predict_logits(original, images, "cpu")
    )
    scores = _scores(digits, table)
    assert scores.num_rows == 24 and scores.equals(_scores(digits, table))
    assert set(scores.column("model_sha256").to_pylist()) == {weights.sha256}
    # score-model's path: your file as is, or the store's weight file (its record read)
    as_is, file = scoring_model(ModelSpec.parse(str(scripted)), digits)
    assert file.sha256 == file_sha and as_is.config.model == str(scripted)
    again, _ = scoring_model(ModelSpec.parse(row["path"]), digits)
    assert again.metrics["test_accuracy"] == row["test_accuracy"]


def test_retraining_with_a_factory_and_a_reinitialised_torchscript(
    digits: pa.Table, factories: str, scripted: Path, tmp_path: Path
) -> None:
    data = decode_samples(digits)
    train, test = data.where(data.splits == "train"), data.where(data.splits == "test")
    kept = np.arange(len(train)) % 3 != 0
    steps = np.zeros(len(train), np.int64)
    options = RetrainOptions(seeds=1, names=("reference", "curated"), device="cpu")

    def retrain(recipe: ModelOptions, folder: str, reference: StoredModel | None) -> pa.Table:
        return retrain_models(
            train,
            test,
            kept,
            steps,
            PRESETS["paper"],
            recipe,
            10,
            lambda name, seed: tmp_path / folder / f"{name}-{seed}.pt",
            reference,
            options,
            progress=False,
        )

    recipe = ModelOptions(model=f"{factories}:mlp", epochs=2, lr=0.01)
    table = retrain(recipe, "factory", None)
    assert table.column("model").to_pylist() == ["reference", "curated"]
    assert table.column("originals").to_pylist() == [len(train), int(kept.sum())]
    assert min(table.column("test_accuracy").to_pylist()) > 0.5
    again = retrain(recipe, "factory-again", None)
    assert again.column("sha256").equals(table.column("sha256"))  # same seeds, same weights
    loaded, _ = load_model(table.column("path")[1].as_py())
    assert loaded.config.model == f"{factories}:mlp"

    # TorchScript: a re-initialised copy is trained, the stored reference is not reused
    script_recipe = ModelOptions(model=str(scripted), epochs=2, lr=0.01)
    reference, _ = scoring_model(ModelSpec.parse(str(scripted)), digits)
    stored = StoredModel(reference, str(scripted), "f" * 64)
    retrained = retrain(script_recipe, "script", stored)
    assert retrained.column("path")[0].as_py() != str(scripted)
    assert min(retrained.column("test_accuracy").to_pylist()) > 0.5
    first = build_model(script_recipe, (1, 8, 8), 10)
    second = build_model(script_recipe, (1, 8, 8), 10)
    file_weights = torch.jit.load(str(scripted)).state_dict()
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name])  # seeded
    assert not torch.equal(first.state_dict()["0.weight"], file_weights["0.weight"])
    assert torch.equal(first.state_dict()["1.running_var"], torch.ones(4))


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x) * self.scale


def test_bad_models_are_one_line_errors_and_write_nothing(
    digits: pa.Table, factories: str, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    odd = tmp_path / "odd.pt"
    torch.jit.save(torch.jit.script(_Scaled()), str(odd))
    weights = tmp_path / "store" / "ref.pt"
    cases = {
        str(tmp_path / "missing.pt"): "expected a TorchScript file at .*missing.pt; found no such",
        str(junk): "a TorchScript file .* at .*junk.pt; found a file starting with b'not '",
        "no_such_pkg.models:make": "found module 'no_such_pkg.models' does not import",
        f"{factories}:nothing": f"expected a function 'nothing' in module '{factories}'",
        f"{factories}:NOT_CALLABLE": "found a value of type int of that name",
        f"{factories}:not_a_module": "to return a torch.nn.Module; found a str; return",
        f"{factories}:too_wide": r"to output \(3, 10\) logits .*; found \(3, 11\); give its last",
        f"{factories}:broken": r"found KeyError: 'no such layer'; fix the factory",
        f"{factories}:nan_model": r"finite logits; found NaN or infinite logits for 3 of 3",
        f"{factories}:liar": r"to output \(3, 10\) logits .*; found \(3, 9\)",
        "/dev/zero": "expected a TorchScript file at /dev/zero; found not a regular file",
    }
    for model, message in cases.items():
        with pytest.raises(DatasetError, match=message) as error:
            train_reference(digits, ModelOptions(model=model), weights, "cpu", False)
        _one_line(error)
        assert not weights.parent.exists(), model
    with pytest.raises(DatasetError, match=r"found parameters \['scale'\] in the top module"):
        build_model(ModelOptions(model=str(odd)), (1, 8, 8), 10)  # retraining it: a factory
    assert ModelSpec.parse(str(odd)).check() == hashlib.sha256(odd.read_bytes()).hexdigest()
