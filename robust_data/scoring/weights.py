"""Weight files: a trained model saved and loaded, named by the sha256 of its bytes.

A weight file is one ``torch.save`` of plain data (config, input shape, class count, metrics,
state dict), written atomically; its sha256 names the model in every table scored with it.
Loading uses ``torch.load(weights_only=True)`` and checks the sha256 when one is given.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from robust_data.errors import DatasetError
from robust_data.io.files import file_exists, read_bytes, write_bytes
from robust_data.scoring.models import ModelOptions, TrainedModel, build_model, image_shape

FILE_FORMAT = "robust-data-model/1"


@dataclass(frozen=True)
class ModelFile:
    """A weight file (a local path or an fsspec URL) and the sha256 of its bytes (its identity)."""

    path: str
    sha256: str


def save_model(trained: TrainedModel, path: str | Path) -> ModelFile:
    """Write the weight file atomically: config, input shape, class count, metrics, weights.

    ``path`` is a local path (temporary file, then rename) or an fsspec URL (one put).
    """
    payload = {
        "format": FILE_FORMAT,
        "config": asdict(trained.config),
        "in_shape": list(trained.in_shape),
        "num_classes": trained.num_classes,
        "metrics": dict(trained.metrics),
        "state_dict": {
            k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()
        },
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    target = write_bytes(data, path)
    return ModelFile(target, hashlib.sha256(data).hexdigest())


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
