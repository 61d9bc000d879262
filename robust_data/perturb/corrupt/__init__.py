"""Corruptions as pure, seeded, batched functions; usable as RPR schemes by spec string.

``corrupt(images, name, severity, seed, sample_ids)`` draws each image's random parameters
from the counter-based generator keyed by (seed, sample, corruption name, step) first and
applies them deterministically second, so an image's corruption does not depend on the batch
it is in, the order of the batch or the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from robust_data.errors import DatasetError, RobustDataError
from robust_data.perturb.corrupt.library import CORRUPTIONS, IMAGENET_C, MNIST_C, Corruption
from robust_data.perturb.rng import Stream, purpose_key, sample_keys

__all__ = [
    "CORRUPTIONS",
    "IMAGENET_C",
    "MNIST_C",
    "Corruption",
    "CorruptionScheme",
    "corrupt",
    "corrupt_keyed",
]

MIN_SIZE = 8


def _check(images: torch.Tensor, name: str, severity: int) -> Corruption:
    if name not in CORRUPTIONS:
        raise RobustDataError(
            f"a corruption in {sorted(CORRUPTIONS)}", repr(name), "pass one of those"
        )
    corruption = CORRUPTIONS[name]
    if not 1 <= severity <= corruption.severities:
        raise RobustDataError(
            f"severity 1..{corruption.severities} for {name}",
            str(severity),
            f"pass a severity from 1 to {corruption.severities}",
        )
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W); found shape {tuple(images.shape)}")
    if min(images.shape[2:]) < MIN_SIZE:
        raise DatasetError(
            f"images of at least {MIN_SIZE}x{MIN_SIZE}",
            f"{images.shape[2]}x{images.shape[3]}",
            f"re-ingest with `resize={MIN_SIZE}x{MIN_SIZE}` or larger",
            options=("resize",),
        )
    return corruption


def corrupt_keyed(
    images: torch.Tensor,
    name: str,
    severity: int,
    seed: int,
    keys: torch.Tensor,
    steps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Corrupt ``images`` (N, C, H, W) in [0, 1] with per-image randomness from ``keys`` (N,).

    ``steps`` (N,) int64 (default zeros) selects independent draws for the same image: RPR
    passes the try number. Returns a new (N, C, H, W) tensor in [0, 1], dtype and device kept;
    the input is not modified.
    """
    corruption = _check(images, name, severity)
    if images.shape[0] == 0:
        return images.clone()
    steps = torch.zeros_like(keys) if steps is None else steps.to(keys.device)
    stream = Stream(seed, keys ^ purpose_key(name), steps)
    scale = min(images.shape[2:]) / corruption.reference_size
    x = images.float()
    out = corruption.fn(x, corruption.table[severity - 1], stream, scale)
    return out.clamp(0.0, 1.0).to(images.dtype)


def corrupt(
    images: torch.Tensor, name: str, severity: int, seed: int, sample_ids: Sequence[str]
) -> torch.Tensor:
    """Corrupt ``images`` (N, C, H, W) in [0, 1]; randomness keyed by (seed, sample_id).

    Raises
    ------
    RobustDataError
        Unknown name, severity out of range or images smaller than 8x8 (a DatasetError).
    ValueError
        Images of a shape other than (N, 1 or 3, H, W).
    """
    keys = sample_keys(list(sample_ids), device=images.device)
    return corrupt_keyed(images, name, severity, seed, keys)


@dataclass(frozen=True)
class CorruptionScheme:
    """A corruption at one severity as an RPR perturbation scheme (``fog(severity=3)``)."""

    name: str
    severity: int

    @property
    def spec(self) -> str:
        return f"{self.name}(severity={self.severity})"

    def apply(
        self, images: torch.Tensor, seed: int, keys: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor:
        """(N, C, H, W) originals -> (N, S, C, H, W): one corruption draw per try."""
        n, c, h, w = images.shape
        steps = steps.to(images.device)
        if steps.dim() == 1:
            steps = steps[None].expand(n, -1)
        s = steps.shape[1]
        flat = images[:, None].expand(n, s, c, h, w).reshape(n * s, c, h, w)
        out = corrupt_keyed(
            flat, self.name, self.severity, seed, keys.repeat_interleave(s), steps.reshape(-1)
        )
        return out.view(n, s, c, h, w)
