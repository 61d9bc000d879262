"""Seeded training of a reference model: batch order and weights drawn from the recipe's seed.

No global random state is touched, so the same recipe and data train the same weights.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from robust_data.errors import DatasetError
from robust_data.present.progress import progress_bar
from robust_data.scoring.device import (
    autocast,
    onednn_training_guard,
    resolve_device,
    resolve_precision,
)
from robust_data.scoring.models import ModelOptions, TrainedModel, accuracy, build_model

#: Training batches between two readings of the loss for the progress bar (a host sync each).
POSTFIX_EVERY = 50


def _as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = np.require(images, np.float32, ["C", "W"])  # copies only if read-only
    return torch.from_numpy(pixels), torch.tensor(np.asarray(labels), dtype=torch.int64)


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
        desc=desc or f"train {config.spec.label}",
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
