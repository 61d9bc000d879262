"""Flip rates under common random numbers: every model sees the same K perturbations.

The primary robustness metric of issue 30. For each test image, K perturbed copies are drawn
from a scheme (the RPR scoring scheme ``pixels``, or a held-out family such as
``salt_pepper(p=0.05)``), copy k keyed by (seed, sample id, k) exactly as RPR keys its try k:
so copy k of an image is the image RPR scoring fed the model at try k under the same seed
and scheme, and every model, batch size, order and device sees the same K images. The flip
rate of an image is the fraction of its K copies whose prediction is not the true label.

Comparing two models image by image on the same copies removes the noise of the draws from
their difference (common random numbers), which the 250-try robust fraction, drawn until the
first flip, cannot do as cheaply: K forward passes per image and model, always.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robust_data.errors import RobustDataError
from robust_data.perturb.rng import sample_keys
from robust_data.perturb.schemes import PerturbationScheme, parse_scheme
from robust_data.present.progress import progress_bar
from robust_data.scoring.device import autocast, resolve_device, resolve_precision
from robust_data.scoring.rpr.engine import (
    ModelRunner,
    RprOptions,
    working_copy,
)

#: Perturbed copies per image by default.
FLIP_K = 64


#: ``auto`` compiles the models from this many copies on: the report's 1,000 test images x
#: K = 64 ran in 8.8-13.2 s compiled against 24.5 s eager on this 2-core CPU (same flip rates).
FLIP_COMPILE_MIN = 32_000


@dataclass(frozen=True)
class FlipOptions:
    """How flip rates are measured.

    Attributes
    ----------
    k : int
        Perturbed copies per image (>= 1); copy k is RPR's try k (1-based).
    scheme : str
        Perturbation spec (``pixels``, ``salt_pepper(p=0.05)``, ``gaussian(sigma=0.2)``, a
        corruption such as ``fog(severity=3)``).
    seed : int
        Seed of the perturbations (the RPR scoring seed gives RPR's first k tries).
    batch_size : int
        Perturbed images made and run per round; bounds memory (about
        ``batch_size * C * H * W * 4`` bytes). The rates do not depend on it.
    device, precision : str
        ``auto``/``cpu``/``cuda`` and ``auto``/``fp32``/``bf16`` (``auto``: bf16 where the
        hardware has bf16 matrix units), as for RPR scoring.
    compile : str
        ``on``, ``off`` or ``auto`` (default: compile when N * k >= :data:`FLIP_COMPILE_MIN`).
    """

    k: int = FLIP_K
    scheme: str = "pixels"
    seed: int = 0
    batch_size: int = 4096
    device: str = "auto"
    precision: str = "auto"
    compile: str = "auto"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise RobustDataError("k >= 1", str(self.k), "pass 1 or more", options=("k",))
        self.runner_options()  # the engine's own checks: batch_size, compile, scheme

    def runner_options(self) -> RprOptions:
        """The engine options the model runner reads (slicing, layout, compile)."""
        return RprOptions(
            scheme=self.scheme,
            max_steps=self.k,
            seed=self.seed,
            device=self.device,
            precision=self.precision,
            batch_size=self.batch_size,
            compile=self.compile,
        )


@dataclass
class FlipResult:
    """One model's flip rates on N images, row-aligned with the input.

    Attributes
    ----------
    flip_rate : np.ndarray
        (N,) float64 in [0, 1]: the fraction of the K copies predicted other than the label.
        Higher is worse (more fragile, or wrong).
    flips : np.ndarray
        (N,) int64 in [0, K]: how many copies flipped.
    first_flip : np.ndarray
        (N,) int64 in 1..K, the first copy that flipped (RPR's ``steps_to_flip`` capped at
        K, under the same seed and scheme); 0 where none did.
    clean_pred : np.ndarray
        (N,) int64, the prediction on the unperturbed image.
    clean_correct : np.ndarray
        (N,) bool, ``clean_pred == label``.
    scheme : str
        Canonical spec.
    k, seed : int
    device, precision : str
        Where and how it ran.
    seconds : float
        Wall time of this model's forward passes (clean included); the perturbations, made
        once for all models of a call, are not in it.
    """

    flip_rate: np.ndarray
    flips: np.ndarray
    first_flip: np.ndarray
    clean_pred: np.ndarray
    clean_correct: np.ndarray
    scheme: str
    k: int
    seed: int
    device: str
    precision: str
    seconds: float

    @property
    def mean_flip_rate(self) -> float:
        """The mean per-image flip rate in [0, 1] (NaN for no images); higher is worse."""
        return float(self.flip_rate.mean()) if len(self.flip_rate) else float("nan")


def perturbed_copies(
    images: np.ndarray | torch.Tensor,
    sample_ids: Sequence[str],
    options: FlipOptions = FlipOptions(),
) -> torch.Tensor:
    """The K copies every model sees, regenerated (for checks and figures; memory N * K).

    Parameters
    ----------
    images : array or tensor
        (N, C, H, W) float in [0, 1].
    sample_ids : sequence of str
        (N,) ids keying the noise.

    Returns
    -------
    torch.Tensor
        (N, K, C, H, W) float32 in [0, 1] on the CPU; ``[:, k - 1]`` is copy k.
    """
    scheme = parse_scheme(options.scheme)
    x = torch.as_tensor(images, dtype=torch.float32)
    keys = sample_keys(list(sample_ids))
    steps = torch.arange(1, options.k + 1, dtype=torch.int64)
    return scheme.apply(x, options.seed, keys, steps)


def flip_rates(
    models: Mapping[str, nn.Module],
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    sample_ids: Sequence[str],
    num_classes: int,
    options: FlipOptions = FlipOptions(),
    progress: bool = False,
) -> dict[str, FlipResult]:
    """Every model's per-image flip rate on the same K perturbed copies of each image.

    Each round's perturbed images are made once and run through every model, so the models
    see identical inputs (and a model measured alone, in another call, sees them too).

    Parameters
    ----------
    models : mapping of str to nn.Module
        Each maps (B, C, H, W) to (B, num_classes) scores. Not modified (each runs as a copy).
    images : array or tensor
        (N, C, H, W) float in [0, 1], e.g. the test split.
    labels : array or tensor
        (N,) int in [0, num_classes), the true labels.
    sample_ids : sequence of str
        (N,) ids; each keys its own noise.
    num_classes : int
    options : FlipOptions
    progress : bool
        Show a progress bar over perturbed images.

    Returns
    -------
    dict of str to FlipResult
        In the order of ``models``.

    Raises
    ------
    RobustDataError
        Values outside [0, 1], labels out of range, a model that refuses the images or
        outputs other than ``num_classes`` scores, or an unknown scheme.
    ValueError
        Images, labels and ids of shapes that do not match.
    """
    scheme = parse_scheme(options.scheme)
    x = torch.as_tensor(images, dtype=torch.float32)
    y = torch.tensor(np.asarray(labels), dtype=torch.int64)
    _check(x, y, sample_ids, num_classes)
    device = resolve_device(options.device)
    precision = resolve_precision(options.precision, device)
    run_options = options.runner_options()
    n = x.shape[0]
    compiled = options.compile == "on" or (
        options.compile == "auto" and n * options.k >= FLIP_COMPILE_MIN
    )
    runners = {
        name: ModelRunner(working_copy(m, device, run_options.channels_last), run_options, compiled)
        for name, m in models.items()
    }
    counts = {name: _Counts(n, device) for name in models}
    keys, y_d = sample_keys(list(sample_ids), device=device), y.to(device)
    bar = progress_bar(
        total=n * options.k, desc=f"flips {scheme.spec}", unit="img", disable=not progress
    )
    try:
        with torch.inference_mode(), autocast(device, precision):
            for name, runner in runners.items():
                counts[name].clean(runner, x, y_d, num_classes)
            for owner, steps, batch in _rounds(scheme, x, keys, options, device):
                for name, runner in runners.items():
                    counts[name].add(runner, batch, owner, steps, y_d)
                bar.update(len(owner))
    finally:
        bar.close()
        for runner in runners.values():
            runner.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {
        name: c.result(y_d, scheme.spec, options, str(device), precision)
        for name, c in counts.items()
    }


def flip_rate(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    sample_ids: Sequence[str],
    num_classes: int,
    options: FlipOptions = FlipOptions(),
    progress: bool = False,
) -> FlipResult:
    """One model's :func:`flip_rates`."""
    return flip_rates({"model": model}, images, labels, sample_ids, num_classes, options, progress)[
        "model"
    ]


def _rounds(
    scheme: PerturbationScheme,
    x: torch.Tensor,
    keys: torch.Tensor,
    options: FlipOptions,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (owner (M,), copy number (M,), perturbed (M, C, H, W)) over all N * K copies.

    The (image, copy) pairs are laid out image-major and cut every ``batch_size`` rows; a
    row's noise depends only on (seed, its image's key, its copy number).
    """
    total = x.shape[0] * options.k
    for start in range(0, total, options.batch_size):
        flat = torch.arange(start, min(start + options.batch_size, total), device=device)
        owner, steps = flat // options.k, flat % options.k + 1
        originals = x[owner.cpu()].to(device)
        perturbed = scheme.apply(originals, options.seed, keys[owner], steps[:, None])
        yield owner, steps, perturbed.squeeze(1)


class _Counts:
    """One model's running tally: clean predictions, flips and the first flip per image."""

    def __init__(self, n: int, device: torch.device):
        self.flips = torch.zeros(n, dtype=torch.int64, device=device)
        big = torch.iinfo(torch.int64).max
        self.first = torch.full((n,), big, dtype=torch.int64, device=device)
        self.clean_pred = torch.zeros(n, dtype=torch.int64, device=device)
        self.seconds = 0.0

    def clean(self, run: ModelRunner, x: torch.Tensor, y: torch.Tensor, classes: int) -> None:
        started = time.perf_counter()
        preds = []
        for start in range(0, x.shape[0], run.rows):
            try:
                logits = run.eager(x[start : start + run.rows].to(y.device))
            except RuntimeError as exc:
                raise RobustDataError(
                    "images the model accepts",
                    f"shape {tuple(x.shape[1:])} rejected ({str(exc).splitlines()[0]})",
                    "measure with a model trained on images of this dataset",
                ) from None
            if logits.dim() != 2 or logits.shape[1] != classes:
                raise RobustDataError(
                    f"model output of width {classes} (the class count)",
                    f"shape {tuple(logits.shape)}",
                    "measure with a model trained on the classes of this dataset",
                )
            preds.append(logits.argmax(dim=1))
        if preds:
            self.clean_pred = torch.cat(preds)
        self.seconds += time.perf_counter() - started

    def add(
        self,
        run: ModelRunner,
        batch: torch.Tensor,
        owner: torch.Tensor,
        steps: torch.Tensor,
        y: torch.Tensor,
    ) -> None:
        started = time.perf_counter()
        flipped = run(batch).argmax(dim=1) != y[owner]
        self.flips.index_add_(0, owner, flipped.long())
        big = torch.iinfo(torch.int64).max
        self.first.scatter_reduce_(0, owner, torch.where(flipped, steps, big), reduce="amin")
        self.seconds += time.perf_counter() - started

    def result(
        self, y: torch.Tensor, spec: str, options: FlipOptions, device: str, precision: str
    ) -> FlipResult:
        flips = self.flips.cpu().numpy()
        first = self.first.cpu().numpy()
        return FlipResult(
            flip_rate=flips.astype(np.float64) / options.k,
            flips=flips,
            first_flip=np.where(first == np.iinfo(np.int64).max, 0, first),
            clean_pred=self.clean_pred.cpu().numpy(),
            clean_correct=(self.clean_pred == y).cpu().numpy(),
            scheme=spec,
            k=options.k,
            seed=options.seed,
            device=device,
            precision=precision,
            seconds=self.seconds,
        )


def _check(x: torch.Tensor, y: torch.Tensor, sample_ids: Sequence[str], classes: int) -> None:
    """Shapes, value range and label range of the inputs."""
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W); found {tuple(x.shape)}")
    n = x.shape[0]
    if y.shape != (n,) or len(sample_ids) != n:
        raise ValueError(
            f"expected {n} labels and {n} sample ids for {n} images; found "
            f"{tuple(y.shape)} labels and {len(sample_ids)} ids"
        )
    if n and bool(torch.isnan(x).any() or x.min() < 0 or x.max() > 1):
        raise RobustDataError(
            "image values in [0, 1]",
            f"{float(x.nan_to_num(-1.0).min()):g}..{float(x.nan_to_num(2.0).max()):g}",
            "divide uint8 pixels by 255",
        )
    if n and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise RobustDataError(
            f"labels in [0, {classes})",
            f"{int(y.min())}..{int(y.max())}",
            "pass the class count the labels need",
        )
