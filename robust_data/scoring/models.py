"""Reference models: the paper's simple CNN and a small ResNet; seeded training; weight files.

A weight file is one ``torch.save`` of plain data (config, input shape, class count, metrics,
state dict), written atomically; its sha256 names the model in every table scored with it.
Loading uses ``torch.load(weights_only=True)`` and checks the sha256 when one is given.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robust_data.errors import DatasetError, RobustDataError
from robust_data.io.files import file_exists, read_bytes, write_bytes
from robust_data.present.progress import progress_bar
from robust_data.scoring.device import (
    autocast,
    onednn_training_guard,
    resolve_device,
    resolve_precision,
)

ARCHS = ("simple_cnn", "resnet")
OPTIMIZERS = ("adam", "sgd")
FILE_FORMAT = "robust-data-model/1"
#: Training batches between two readings of the loss for the progress bar (a host sync each).
POSTFIX_EVERY = 50
#: Images per forward pass of predict_logits / embed: fp32 activations of the paper's CNN stay
#: under glibc's largest mmap threshold (32 MB), so the allocator reuses them.
EVAL_ROWS = 128


@dataclass(frozen=True)
class ModelOptions:
    """Architecture and training recipe of a reference model.

    Attributes
    ----------
    arch : str
        ``simple_cnn`` (the paper's: two 3x3 convolutions, one 2x2 max-pool, one fully
        connected layer; any input of at least 6x6) or ``resnet`` (a ResNet-8 for 32x32 RGB,
        runs on any size of at least 8x8).
    width : int
        Channels of the first convolution (the second has twice as many); >= 1.
    epochs : int
        Passes over the training data; >= 1.
    batch_size : int
        Training batch size; >= 1.
    optimizer : str
        ``adam`` (the paper's, default settings) or ``sgd`` (momentum 0.9, cosine schedule).
    lr : float
        Learning rate; Adam's default 1e-3.
    seed : int
        Seeds weight initialisation and batch order (no global RNG is touched).
    precision : str
        ``auto`` (bf16 autocast where the hardware has bf16 matrix units), ``fp32`` or ``bf16``.
    """

    arch: str = "simple_cnn"
    width: int = 32
    epochs: int = 4
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise RobustDataError(
                f"arch in {ARCHS}", repr(self.arch), "pass one of those", options=("arch",)
            )
        if self.optimizer not in OPTIMIZERS:
            raise RobustDataError(
                f"optimizer in {OPTIMIZERS}",
                repr(self.optimizer),
                "pass one of those",
                options=("optimizer",),
            )
        for name in ("width", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise RobustDataError(
                    f"{name} >= 1", str(getattr(self, name)), "pass 1 or more", options=(name,)
                )
        if not self.lr > 0:
            raise RobustDataError("lr > 0", str(self.lr), "pass e.g. 0.001", options=("lr",))


class SimpleCNN(nn.Module):
    """The paper's CNN: conv3x3-ReLU, conv3x3-ReLU, maxpool 2x2, fully connected (logits).

    The softmax of the paper is applied by the loss and by whoever wants probabilities; the
    predicted class is the argmax of the logits either way.
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: int = 32):
        super().__init__()
        channels, height, width_px = in_shape
        if min(height, width_px) < 6:
            raise DatasetError(
                "images of at least 6x6 for simple_cnn",
                f"{height}x{width_px}",
                "re-ingest with a larger `resize`",
                options=("resize",),
            )
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = 2 * width * ((height - 4) // 2) * ((width_px - 4) // 2)
        self.head = nn.Linear(flat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


class SmallResNet(nn.Module):
    """ResNet-8 for 32x32 RGB: a 3x3 stem, three stages of one basic block, global pooling."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: int = 16):
        super().__init__()
        channels, height, width_px = in_shape
        if min(height, width_px) < 8:
            raise DatasetError(
                "images of at least 8x8 for resnet",
                f"{height}x{width_px}",
                "re-ingest with a larger `resize`",
                options=("resize",),
            )
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.stages = nn.Sequential(
            _Block(width, width, 1), _Block(width, 2 * width, 2), _Block(2 * width, 4 * width, 2)
        )
        self.features = nn.Sequential(self.stem, self.stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def image_shape(values: Sequence[int]) -> tuple[int, int, int]:
    """``values`` as a (C, H, W) triple of ints; ValueError when it has another length."""
    if len(values) != 3:
        raise ValueError(f"expected an image shape (C, H, W); found {tuple(values)}")
    channels, height, width = (int(v) for v in values)
    return channels, height, width


def build_model(
    config: ModelOptions, in_shape: tuple[int, int, int], num_classes: int
) -> nn.Module:
    """An initialised model for images of ``in_shape`` = (C, H, W) and ``num_classes`` classes.

    Weights are drawn from a generator seeded with ``config.seed`` (PyTorch's default init
    distributions), so the same config gives the same weights; the global RNG is untouched.
    """
    if num_classes < 2:
        raise DatasetError("at least 2 classes", str(num_classes), "add images of another class")
    cls = SimpleCNN if config.arch == "simple_cnn" else SmallResNet
    model = cls(image_shape(in_shape), num_classes, config.width)
    generator = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    bound = 1 / math.sqrt(module.weight[0].numel())
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return model


@dataclass
class TrainedModel:
    """A trained reference model and what is known about it.

    Attributes
    ----------
    model : nn.Module
        In eval mode, on the CPU.
    config : ModelOptions
    in_shape : tuple of int
        (C, H, W) of its inputs.
    num_classes : int
    metrics : dict
        ``train_accuracy`` and ``test_accuracy`` in [0, 1] (higher is better; test is NaN
        without a test split), ``device``, ``precision``. Saved in the weight file.
    train_seconds : float
        Wall time of training (not saved: the file depends only on config and data).
    """

    model: nn.Module
    config: ModelOptions
    in_shape: tuple[int, int, int]
    num_classes: int
    metrics: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = float("nan")


def _as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = np.require(images, np.float32, ["C", "W"])  # copies only if read-only
    return torch.from_numpy(pixels), torch.tensor(np.asarray(labels), dtype=torch.int64)


def _batched(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    layer: str,
    device: str,
    precision: str,
    batch_size: int,
) -> np.ndarray:
    """Run ``model`` (``layer`` = ``forward`` or ``features``) over ``images`` in batches."""
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    model = model.to(dev).eval()
    call = getattr(model, layer)
    data = torch.as_tensor(images, dtype=torch.float32)
    # One preallocated output: small per-batch results kept between the large freed
    # activations fragment glibc's heap (RSS grew by up to 3.4 GB over 50,000 images).
    out: torch.Tensor | None = None
    with torch.inference_mode(), autocast(dev, prec):
        for start in range(0, len(data), batch_size):
            result = call(data[start : start + batch_size].to(dev)).float().cpu()
            if out is None:
                out = torch.empty((len(data), *result.shape[1:]), dtype=torch.float32)
            out[start : start + len(result)] = result
    model.cpu()
    return out.numpy() if out is not None else np.zeros((0, 0), np.float32)


def predict_logits(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = EVAL_ROWS,
) -> np.ndarray:
    """Logits of ``model`` for ``images`` (N, C, H, W) in [0, 1].

    Returns
    -------
    np.ndarray
        (N, num_classes) float32.
    """
    return _batched(model, images, "forward", device, precision, batch_size)


def embed(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = EVAL_ROWS,
) -> np.ndarray:
    """Penultimate-layer activations (the input of the last linear layer).

    Returns
    -------
    np.ndarray
        (N, D) float32; D = 2 * width * ((H - 4) // 2) * ((W - 4) // 2) for simple_cnn,
        4 * width for resnet.
    """
    return _batched(model, images, "features", device, precision, batch_size)


def accuracy(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, device: str = "auto"
) -> float:
    """Share of ``images`` whose argmax prediction equals ``labels``, in [0, 1]; NaN if empty."""
    if len(labels) == 0:
        return float("nan")
    predictions = predict_logits(model, images, device=device).argmax(axis=1)
    return float(np.mean(predictions == np.asarray(labels)))


def train_model(
    config: ModelOptions,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    num_classes: int,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    device: str = "auto",
    progress: bool = True,
    desc: str = "",
    evaluate: bool = True,
    class_weights: np.ndarray | None = None,
) -> TrainedModel:
    """Train a reference model with a seeded recipe.

    Parameters
    ----------
    config : ModelOptions
    train_images : np.ndarray
        (N, C, H, W) float32 in [0, 1].
    train_labels : np.ndarray
        (N,) int in [0, num_classes).
    num_classes : int
    test_images, test_labels : np.ndarray, optional
        Held-out data for the reported test accuracy.
    device : str
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    progress : bool
        Show a progress bar (one step per batch).
    desc : str
        The progress bar's label (default ``train <arch>``).
    evaluate : bool
        Measure train (and test) accuracy after training; off, they are NaN.
    class_weights : np.ndarray, optional
        (num_classes,) float loss weight per class (e.g. inverse frequency, to balance classes
        without dropping samples); default: every class 1.

    Returns
    -------
    TrainedModel
        On the CPU, in eval mode, with train/test accuracy in ``metrics``.

    Notes
    -----
    On a CPU where oneDNN runs its AVX2 kernels (no AVX-512, or ``ONEDNN_MAX_CPU_ISA=AVX2``),
    the 1x1 convolutions of a model (the ResNet's shortcuts) train as matrix products: oneDNN's
    1x1 weight gradient there hangs or corrupts memory
    (:func:`robust_data.scoring.device.onednn_training_guard`).
    """
    if len(train_labels) == 0:
        raise DatasetError("at least one training sample", "none", "add images to the train split")
    labels = np.asarray(train_labels)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"expected labels in [0, {num_classes}); found {labels.min()}..{labels.max()}"
        )
    dev = resolve_device(device)
    precision = resolve_precision(config.precision, dev)
    x, y = _as_tensors(train_images, labels)
    in_shape = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
    model = build_model(config, in_shape, num_classes).to(dev)
    model = model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(config.seed)
    batches = math.ceil(len(x) / config.batch_size)
    optimizer: torch.optim.Optimizer
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        schedule = None
    else:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=0.9, weight_decay=5e-4
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * batches)
    weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    if weight is not None and weight.shape != (num_classes,):
        raise ValueError(
            f"expected class_weights of shape ({num_classes},); found {tuple(weight.shape)}"
        )
    loss_fn = nn.CrossEntropyLoss(weight=None if weight is None else weight.to(dev))
    started = time.perf_counter()
    bar = progress_bar(
        total=config.epochs * batches,
        desc=desc or f"train {config.arch}",
        unit="batch",
        mininterval=0.5,
        disable=not progress,
    )
    model.train()
    with onednn_training_guard(model, dev):  # not oneDNN's faulty AVX2 1x1 weight gradient
        for epoch in range(config.epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), config.batch_size):
                index = order[start : start + config.batch_size]
                xb = x[index].to(dev).contiguous(memory_format=torch.channels_last)
                with autocast(dev, precision):
                    loss = loss_fn(model(xb), y[index].to(dev))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                bar.update(1)
                if bar.n % POSTFIX_EVERY == 0:  # reading the loss waits for the device
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - started
    model = model.cpu().eval().to(memory_format=torch.contiguous_format)
    test_acc = (
        accuracy(model, test_images, test_labels, device)
        if evaluate and test_images is not None and test_labels is not None
        else float("nan")
    )
    metrics = {
        "train_accuracy": accuracy(model, x.numpy(), labels, device) if evaluate else float("nan"),
        "test_accuracy": test_acc,
        "device": str(dev),
        "precision": precision,
    }
    return TrainedModel(model, config, in_shape, num_classes, metrics, seconds)


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
