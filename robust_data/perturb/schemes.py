"""Perturbation schemes, named by spec strings: ``pixels``, ``gaussian(sigma)``, ``salt_pepper(p)``.

A scheme perturbs the ORIGINAL images for many tries at once: draw the parameters from the
counter-based generator first, apply them deterministically second.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from robust_data.errors import RobustDataError
from robust_data.perturb.rng import uniform


class PerturbationScheme(Protocol):
    """What scoring needs of a scheme: a name, its canonical spec and ``apply``.

    :class:`Scheme` (pixels, gaussian, salt_pepper) and
    :class:`robust_data.perturb.corrupt.CorruptionScheme` (``fog(severity=3)``, ...) both
    provide it.
    """

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> str: ...

    def apply(
        self, images: torch.Tensor, seed: int, keys: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor: ...


_SPEC = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$")


@dataclass(frozen=True)
class Scheme:
    """A perturbation scheme.

    Attributes
    ----------
    name : str
        ``pixels``, ``gaussian`` or ``salt_pepper``.
    value : float or None
        ``k`` for pixels (None: floor(sqrt(H*W)), 28 on MNIST), ``sigma`` for gaussian,
        ``p`` for salt_pepper.
    """

    name: str
    value: float | None = None

    @property
    def spec(self) -> str:
        """The canonical spec string stored with the scores."""
        if self.name == "pixels":
            return "pixels" if self.value is None else f"pixels(k={int(self.value)})"
        key = "sigma" if self.name == "gaussian" else "p"
        return f"{self.name}({key}={self.value:g})"

    def _number(self) -> float:
        """``sigma`` or ``p``: the value a gaussian or salt_pepper scheme cannot lack."""
        if self.value is None:
            raise ValueError(f"expected a value for {self.name}; found None")
        return float(self.value)

    def apply(
        self, images: torch.Tensor, seed: int, keys: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor:
        """Perturb each original image once per try.

        Parameters
        ----------
        images : torch.Tensor
            (N, C, H, W) float in [0, 1], the originals (never modified).
        seed : int
        keys : torch.Tensor
            (N,) int64 sample keys on the device of ``images``.
        steps : torch.Tensor
            (N, S) or (S,) int64 try numbers.

        Returns
        -------
        torch.Tensor
            (N, S, C, H, W) perturbed images in [0, 1], dtype of ``images``.
        """
        n, c, h, w = images.shape
        s = steps.shape[-1]
        base = images[:, None].expand(n, s, c, h, w)
        if self.name == "gaussian":
            u = uniform(seed, keys, steps, 2 * c * h * w).view(n, s, 2, c, h, w)
            z = torch.sqrt(-2.0 * torch.log1p(-u[:, :, 0])) * torch.cos(2 * math.pi * u[:, :, 1])
            return (base + self._number() * z.to(images.dtype)).clamp(0.0, 1.0)
        if self.name == "salt_pepper":
            u = uniform(seed, keys, steps, 2 * h * w).view(n, s, 2, 1, h, w)
            hit = u[:, :, 0] < self._number()
            salt = (u[:, :, 1] < 0.5).to(images.dtype)
            return torch.where(hit, salt, base)
        k = int(self.value) if self.value is not None else math.isqrt(h * w)
        u = uniform(seed, keys, steps, k * (1 + c)).view(n, s, 1 + c, k)
        positions = (u[:, :, 0] * (h * w)).long().clamp_max(h * w - 1)  # (N, S, k), repeats allowed
        values = _last_writer_values(u[:, :, 1:].to(images.dtype), positions, h * w)
        flat = base.reshape(n, s, c, h * w).clone()
        flat.scatter_(3, positions[:, :, None, :].expand(n, s, c, k), values)
        return flat.view(n, s, c, h, w)


def _last_writer_values(values: torch.Tensor, positions: torch.Tensor, size: int) -> torch.Tensor:
    """The values to scatter so that a repeated position gets its last draw's value everywhere.

    ``scatter_`` with repeated indices keeps an unspecified one of the values: the last on the
    CPU, any on CUDA. Giving every draw of a position the value of its last draw makes the
    result the same on every device (and equal to the CPU's sequential result).

    Parameters
    ----------
    values : torch.Tensor
        (N, S, C, k) the drawn values.
    positions : torch.Tensor
        (N, S, k) int64 flat pixel positions in [0, size), repeats allowed.
    size : int
        H * W.

    Returns
    -------
    torch.Tensor
        (N, S, C, k) values, equal for draws that share a position.
    """
    n, s, c, k = values.shape
    order = torch.arange(k, device=positions.device, dtype=torch.int32).expand(n, s, k)
    last = torch.full((n, s, size), -1, device=positions.device, dtype=torch.int32)
    last.scatter_reduce_(2, positions, order, reduce="amax")  # max is order-independent
    winner = last.gather(2, positions).long()  # (N, S, k): the last draw at each position
    return values.gather(3, winner[:, :, None, :].expand(n, s, c, k))


def parse_scheme(spec: str) -> PerturbationScheme:
    """Parse a scheme spec string.

    Raises
    ------
    RobustDataError
        One line naming the accepted specs and what was found.
    """
    expected = (
        "a scheme spec (pixels, pixels(k=INT>=1), gaussian(sigma=FLOAT>0), salt_pepper(p=FLOAT "
        "in (0, 1]), or a corruption such as fog(severity=1..5))"
    )
    fix = "write one of those"
    match = _SPEC.match(spec)
    if not match:
        raise RobustDataError(expected, repr(spec), fix)
    name, args = match.group(1), (match.group(2) or "").strip()
    from robust_data.perturb.corrupt import CORRUPTIONS, CorruptionScheme  # imports this package

    if name in CORRUPTIONS:
        return _corruption_scheme(name, args, spec, CORRUPTIONS[name].severities, CorruptionScheme)
    keys = {"pixels": "k", "gaussian": "sigma", "salt_pepper": "p"}
    if name not in keys:
        raise RobustDataError(expected, f"unknown scheme {name!r}", fix)
    if not args:
        if name != "pixels":
            raise RobustDataError(
                f"{name}({keys[name]}=...)", f"{spec!r} without a value", "give it a value"
            )
        return Scheme("pixels")
    key, sep, raw = args.partition("=")
    if not sep:
        key, raw = keys[name], args
    try:
        value = float(raw)
    except ValueError:
        raise RobustDataError(
            f"a number for {key} in {spec!r}", repr(raw), "write a number"
        ) from None
    valid = {
        "pixels": value >= 1 and value == int(value),
        "gaussian": value > 0,
        "salt_pepper": 0 < value <= 1,
    }[name]
    if key.strip() != keys[name] or not valid:
        raise RobustDataError(expected, repr(spec), fix)
    return Scheme(name, value)


def _corruption_scheme(
    name: str, args: str, spec: str, levels: int, cls: Callable[[str, int], PerturbationScheme]
) -> PerturbationScheme:
    """``fog``, ``fog(3)`` or ``fog(severity=3)``; the default severity is 3 (or the only one)."""
    key, sep, raw = args.partition("=")
    if not sep:
        key, raw = "severity", key
    raw = raw.strip() or str(min(3, levels))
    whole = raw.isascii() and raw.isdigit()  # not isdigit alone: it takes '²', int() does not
    if key.strip() != "severity" or not whole or not 1 <= int(raw) <= levels:
        raise RobustDataError(
            f"{name}(severity=1..{levels})", repr(spec), f"pass a severity from 1 to {levels}"
        )
    return cls(name, int(raw))
