"""Weight files: a trained model saved and loaded, named by the sha256 of its bytes.

A weight file is one ``torch.save`` of plain data (config, input shape, class count, metrics,
state dict), written atomically; its sha256 names the model in every table scored with it.
Loading uses ``torch.load(weights_only=True)`` and checks the sha256 when one is given.

A TorchScript model (your own, robust_data.scoring.spec) is saved as a TorchScript archive
(``torch.jit.save``) holding the same plain data, without the state dict, as the extra file
:data:`RECORD`; it loads without your file or code.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from robust_data.errors import DatasetError
from robust_data.io.files import file_exists, read_bytes, write_bytes
from robust_data.scoring.models import ModelOptions, TrainedModel, build_model, image_shape
from robust_data.scoring.spec import is_torchscript, scripted_from_bytes

FILE_FORMAT = "robust-data-model/1"
#: The extra file of a TorchScript weight file holding the record (format, config, ...).
RECORD = "robust_data.json"


@dataclass(frozen=True)
class ModelFile:
    """A weight file (a local path or an fsspec URL) and the sha256 of its bytes (its identity)."""

    path: str
    sha256: str


def save_model(trained: TrainedModel, path: str | Path) -> ModelFile:
    """Write the weight file atomically: config, input shape, class count, metrics, weights.

    ``path`` is a local path (temporary file, then rename) or an fsspec URL (one put).
    """
    data = model_bytes(trained)
    target = write_bytes(data, path)
    return ModelFile(target, hashlib.sha256(data).hexdigest())


def model_bytes(trained: TrainedModel) -> bytes:
    """The bytes of ``trained``'s weight file (:func:`save_model`); the same model, the same
    bytes."""
    record = {
        "format": FILE_FORMAT,
        "config": asdict(trained.config),
        "in_shape": list(trained.in_shape),
        "num_classes": trained.num_classes,
        "metrics": dict(trained.metrics),
    }
    buffer = io.BytesIO()
    if isinstance(trained.model, torch.jit.ScriptModule):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            extra = {RECORD: json.dumps(record, sort_keys=True)}
            torch.jit.save(trained.model.cpu(), buffer, _extra_files=extra)
    else:
        state = {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()}
        torch.save({**record, "state_dict": state}, buffer)
    return buffer.getvalue()


def is_weight_file(data: bytes) -> bool:
    """Whether ``data`` is a weight file written by :func:`save_model` (either form)."""
    if is_torchscript(data):
        extra: dict[str, Any] = {RECORD: ""}
        try:
            scripted_from_bytes(data, "", extra)
        except DatasetError:
            return False
        return b'"format": "' + FILE_FORMAT.encode() + b'"' in bytes(extra[RECORD])
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # torch raises several types for a file that is not its format
        return False
    return isinstance(payload, dict) and payload.get("format") == FILE_FORMAT


def load_model(path: str | Path, sha256: str | None = None) -> tuple[TrainedModel, ModelFile]:
    """Load a weight file written by :func:`save_model` (``weights_only=True``).

    Raises
    ------
    DatasetError
        When the file's sha256 differs from ``sha256`` or it is not a robust-data weight file.
    FileNotFoundError
        When ``path`` does not exist.
    """
    if not file_exists(path):
        raise FileNotFoundError(
            f"expected a model weight file at {path}; found none; train it first"
        )
    data = read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise DatasetError(
            f"model {path} to have sha256 {sha256[:12]}",
            digest[:12],
            "the file changed since it was recorded: re-materialize reference_model",
        )
    if is_torchscript(data):
        return _load_scripted(data, str(path)), ModelFile(str(path), digest)
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not its format
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(
            f"a {FILE_FORMAT} weight file at {path}",
            f"unreadable content ({first})",
            "pass a weight file written by robust-data",
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise DatasetError(
            f"a {FILE_FORMAT} weight file at {path}",
            "something else",
            "pass a weight file written by robust-data",
        )
    config = ModelOptions(**payload["config"])
    in_shape = image_shape(payload["in_shape"])
    model = build_model(config, in_shape, int(payload["num_classes"]))
    model.load_state_dict(payload["state_dict"])
    trained = TrainedModel(
        model.eval(), config, in_shape, int(payload["num_classes"]), payload["metrics"]
    )
    return trained, ModelFile(str(path), digest)


def _load_scripted(data: bytes, path: str) -> TrainedModel:
    """A TorchScript weight file written by :func:`save_model` (its :data:`RECORD` read)."""
    extra = {RECORD: ""}
    module = scripted_from_bytes(data, path, extra)
    try:
        record = json.loads(extra[RECORD] or "{}")
    except ValueError:
        record = {}
    if record.get("format") != FILE_FORMAT:
        raise DatasetError(
            f"a {FILE_FORMAT} weight file at {path}",
            "a TorchScript file without robust-data's record",
            "pass it as your own model (`model=PATH`), which checks it against the dataset",
        )
    config = ModelOptions(**record["config"])
    in_shape = image_shape(record["in_shape"])
    return TrainedModel(
        module.eval(), config, in_shape, int(record["num_classes"]), record["metrics"]
    )
