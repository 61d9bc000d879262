"""Reference models: the paper's simple CNN and a small ResNet, built seeded, run in batches.

:class:`ModelOptions` names an architecture and its training recipe; :func:`build_model`
initialises one from its seed; a :class:`TrainedModel` is what training
(robust_data.scoring.training) and weight files (robust_data.scoring.weights) give back;
:func:`predict_logits`, :func:`embed` and :func:`accuracy` run it over images in batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robust_data.errors import DatasetError, RobustDataError
from robust_data.scoring.device import autocast, resolve_device, resolve_precision
from robust_data.scoring.spec import ARCHS, ModelSpec, build_user_model

OPTIMIZERS = ("adam", "sgd")
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
        runs on any size of at least 8x8). Not used when ``model`` is set.
    width : int
        Channels of the first convolution (the second has twice as many); >= 1. Built-ins only.
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
    model : str
        Your own model instead of ``arch``: ``package.module:function`` (a factory called as
        ``function(num_classes, (C, H, W))`` returning an untrained torch.nn.Module, trained by
        this recipe) or the path of a TorchScript file (a trained model, used as is for the
        reference model). Empty: the built-in ``arch``. See robust_data.scoring.spec.
    """

    arch: str = "simple_cnn"
    width: int = 32
    epochs: int = 4
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    seed: int = 0
    precision: str = "auto"
    model: str = ""

    def __post_init__(self) -> None:
        if self.model and ModelSpec.parse(self.model).kind == "builtin":
            raise RobustDataError(
                "your own model in `model` (a factory or a TorchScript file)",
                repr(self.model),
                f"pass `arch={self.model}` for the built-in",
                options=("model",),
            )
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

    @property
    def spec(self) -> ModelSpec:
        """The model these options name: ``model`` when set, else the built-in ``arch``."""
        return ModelSpec.parse(self.model) if self.model else ModelSpec("builtin", self.arch)


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
    With ``config.model`` set, your factory's or TorchScript file's model
    (:func:`robust_data.scoring.spec.build_user_model`), also the same for the same seed.
    """
    if num_classes < 2:
        raise DatasetError("at least 2 classes", str(num_classes), "add images of another class")
    if config.model:
        return build_user_model(config.spec, image_shape(in_shape), num_classes, config.seed)
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
    """Penultimate-layer activations (the input of the last linear layer): the model's
    ``features`` (a method or submodule) when it has one, else its logits (your own model
    without ``features``).

    Returns
    -------
    np.ndarray
        (N, D) float32; D = 2 * width * ((H - 4) // 2) * ((W - 4) // 2) for simple_cnn,
        4 * width for resnet, num_classes for a model without ``features``.
    """
    layer = "features" if callable(getattr(model, "features", None)) else "forward"
    return _batched(model, images, layer, device, precision, batch_size)


def accuracy(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, device: str = "auto"
) -> float:
    """Share of ``images`` whose argmax prediction equals ``labels``, in [0, 1]; NaN if empty."""
    if len(labels) == 0:
        return float("nan")
    predictions = predict_logits(model, images, device=device).argmax(axis=1)
    return float(np.mean(predictions == np.asarray(labels)))
