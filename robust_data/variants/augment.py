"""Augmentations from ``torchvision.transforms.v2``, with every random draw seeded per sample.

torchvision's random transforms draw from the global RNG. Here the same operations
(``torchvision.transforms.v2.functional``) run with parameters drawn from the counter-based
generator keyed by (seed, sample_id, augmentation), so a sample's augmented image is
reproducible whatever the batch or order, and no global RNG is read or seeded.

Policies follow torchvision's definitions: TrivialAugmentWide (one op, magnitude uniform over
31 bins of the wide space), RandAugment (``num_ops`` ops at ``magnitude`` of 31 bins), AugMix
(``width`` chains of depth 1..3 at ``severity``, mixed with Dirichlet weights and a
Beta(1, 1) skip). Basics: random affine, random resized crop, colour jitter, horizontal flip,
elastic transform, Gaussian noise.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robust_data.errors import RobustDataError
from robust_data.perturb.corrupt.ops import gaussian_blur, normal
from robust_data.perturb.rng import Stream, purpose_key, sample_keys

BINS = 31
Op = Callable[[torch.Tensor, float], torch.Tensor]  # (C, H, W) uint8, signed magnitude in [-1, 1]


class _Lazy:
    """A module imported on first use: ``import torchvision`` takes seconds (it imports its
    models), and every step process of a run imports this module without augmenting."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


TF: Any = _Lazy("torchvision.transforms.v2.functional")


def _affine(
    img: torch.Tensor,
    angle: float = 0.0,
    tx: float = 0.0,
    ty: float = 0.0,
    sx: float = 0.0,
    sy: float = 0.0,
) -> torch.Tensor:
    return TF.affine(img, angle=angle, translate=[tx, ty], scale=1.0, shear=[sx, sy])


def _ops(wide: bool, size: int) -> dict[str, tuple[Op, bool]]:
    """Name -> (op taking a magnitude in [-1, 1], whether the op uses the magnitude)."""
    shear = 0.99 if wide else 0.3
    translate = 32.0 * size / 32 if wide else 150.0 / 331.0 * size
    rotate = 135.0 if wide else 30.0
    enhance = 0.99 if wide else 0.9
    return {
        "identity": (lambda x, m: x, False),
        "shear_x": (lambda x, m: _affine(x, sx=math.degrees(math.atan(shear * m))), True),
        "shear_y": (lambda x, m: _affine(x, sy=math.degrees(math.atan(shear * m))), True),
        "translate_x": (lambda x, m: _affine(x, tx=translate * m), True),
        "translate_y": (lambda x, m: _affine(x, ty=translate * m), True),
        "rotate": (lambda x, m: TF.rotate(x, rotate * m), True),
        "brightness": (lambda x, m: TF.adjust_brightness(x, 1 + enhance * m), True),
        "color": (
            lambda x, m: TF.adjust_saturation(x, 1 + enhance * m) if x.shape[0] == 3 else x,
            True,
        ),
        "contrast": (lambda x, m: TF.adjust_contrast(x, 1 + enhance * m), True),
        "sharpness": (lambda x, m: TF.adjust_sharpness(x, 1 + enhance * m), True),
        "posterize": (
            lambda x, m: TF.posterize(x, int(8 - round((6 if wide else 4) * abs(m)))),
            True,
        ),
        "solarize": (lambda x, m: TF.solarize(x, 255.0 * (1 - abs(m))), True),
        "autocontrast": (lambda x, m: TF.autocontrast(x), False),
        "equalize": (lambda x, m: TF.equalize(x), False),
    }


@dataclass(frozen=True)
class Augmentation:
    """A parsed augmentation spec: ``name`` and its integer/float arguments."""

    name: str
    args: tuple[tuple[str, float], ...] = ()

    @property
    def spec(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={v:g}" for k, v in self.args) + ")"

    def arg(self, key: str) -> float:
        return dict(self.args)[key]


#: Augmentation names and their default arguments.
AUGMENTATIONS: dict[str, dict[str, float]] = {
    "trivial_augment": {},
    "rand_augment": {"num_ops": 2, "magnitude": 9},
    "augmix": {"severity": 3, "width": 3},
    "random_affine": {"degrees": 15, "translate": 0.1, "shear": 10},
    "random_resized_crop": {"scale": 0.6},
    "color_jitter": {"strength": 0.4},
    "hflip": {},
    "elastic_transform": {"alpha": 20.0, "sigma": 3.0},
    "gaussian_noise": {"sigma": 0.1},
}

_SPEC = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$")


def parse_augmentation(spec: str) -> Augmentation:
    """Parse ``name`` or ``name(key=value, ...)``.

    Raises
    ------
    RobustDataError
        For an unknown name or argument, one line.
    """
    match = _SPEC.match(spec)
    if not match or match.group(1) not in AUGMENTATIONS:
        raise RobustDataError(
            f"an augmentation in {sorted(AUGMENTATIONS)}", repr(spec), "pass one of those"
        )
    name, defaults = match.group(1), dict(AUGMENTATIONS[match.group(1)])
    for part in filter(None, (p.strip() for p in (match.group(2) or "").split(","))):
        key, sep, raw = part.partition("=")
        if not sep or key.strip() not in defaults:
            raise RobustDataError(
                f"arguments {sorted(defaults)} for {name}", repr(part), "name one of those"
            )
        try:
            defaults[key.strip()] = float(raw)
        except ValueError:
            raise RobustDataError(
                f"a number for {key.strip()} in {spec!r}", repr(raw), "write a number"
            ) from None
    return Augmentation(name, tuple(sorted(defaults.items())))


def _chain(
    img: torch.Tensor,
    ops: dict[str, tuple[Op, bool]],
    draw: Callable[[], float],
    count: int,
    magnitude: float | None,
) -> torch.Tensor:
    names = list(ops)
    for _ in range(count):
        op, signed = ops[names[min(int(draw() * len(names)), len(names) - 1)]]
        m = magnitude if magnitude is not None else min(int(draw() * BINS), BINS - 1) / (BINS - 1)
        img = op(img, m * (1 if draw() < 0.5 else -1) if signed else m)
    return img


Draw = Callable[[], float]  # one uniform number in [0, 1)
Bulk = Callable[[int], torch.Tensor]  # (n,) uniform numbers in [0, 1)


def _trivial_augment(img: torch.Tensor, aug: Augmentation, draw: Draw, bulk: Bulk) -> torch.Tensor:
    return _chain(img, _ops(True, min(img.shape[1:])), draw, 1, None)


def _rand_augment(img: torch.Tensor, aug: Augmentation, draw: Draw, bulk: Bulk) -> torch.Tensor:
    ops = _ops(False, min(img.shape[1:]))
    return _chain(img, ops, draw, int(aug.arg("num_ops")), aug.arg("magnitude") / (BINS - 1))


def _augmix(img: torch.Tensor, aug: Augmentation, draw: Draw, bulk: Bulk) -> torch.Tensor:
    width, level = int(aug.arg("width")), aug.arg("severity") / 10
    weights = torch.tensor([-math.log(1 - draw()) for _ in range(width)])
    weights = weights / weights.sum()  # Dirichlet(1, ..., 1)
    mixed = torch.zeros(img.shape, dtype=torch.float32)
    ops = _ops(False, min(img.shape[1:]))
    for w in weights.tolist():
        depth = 1 + min(int(draw() * 3), 2)
        mixed += w * _chain(img, ops, draw, depth, level).float()
    skip = draw()  # Beta(1, 1)
    return (skip * img.float() + (1 - skip) * mixed).round().clamp(0, 255).to(torch.uint8)


def _random_affine(img: torch.Tensor, aug: Augmentation, draw: Draw, bulk: Bulk) -> torch.Tensor:
    deg, tr, sh = aug.arg("degrees"), aug.arg("translate"), aug.arg("shear")
    return _affine(
        img,
        angle=(2 * draw() - 1) * deg,
        tx=(2 * draw() - 1) * tr * img.shape[2],
        ty=(2 * draw() - 1) * tr * img.shape[1],
        sx=(2 * draw() - 1) * sh,
    )


def _random_resized_crop(
    img: torch.Tensor, aug: Augmentation, draw: Draw, bulk: Bulk
) -> torch.Tensor:
    h, w = img.shape[1:]
    area = aug.arg("scale") + (1 - aug.arg("scale")) * draw()
    ch, cw = max(1, round(h * math.sqrt(area))), max(1, round(w * math.sqrt(area)))
    top, left = int(draw() * (h - ch + 1)), int(draw() * (w - cw + 1))
    return TF.resized_crop(img, top, left, ch, cw, [h, w], antialias=True)


def _color_jitter(img: torch.Tensor, aug: Augmentation, draw: Draw, bulk: Bulk) -> torch.Tensor:
    s = aug.arg("strength")
    img = TF.adjust_brightness(img, 1 + s * (2 * draw() - 1))
    img = TF.adjust_contrast(img, 1 + s * (2 * draw() - 1))
    return TF.adjust_saturation(img, 1 + s * (2 * draw() - 1)) if img.shape[0] == 3 else img


def _hflip(img: torch.Tensor, aug: Augmentation, draw: Draw, bulk: Bulk) -> torch.Tensor:
    return TF.horizontal_flip(img) if draw() < 0.5 else img


def _elastic_transform(
    img: torch.Tensor, aug: Augmentation, draw: Draw, bulk: Bulk
) -> torch.Tensor:
    h, w = img.shape[1:]
    field = gaussian_blur(bulk(2 * h * w).view(1, 2, h, w) * 2 - 1, aug.arg("sigma"))
    field = field * aug.arg("alpha") / torch.tensor([w, h]).view(1, 2, 1, 1)
    return TF.elastic(img, field.permute(0, 2, 3, 1), interpolation=TF.InterpolationMode.BILINEAR)


def _gaussian_noise(img: torch.Tensor, aug: Augmentation, draw: Draw, bulk: Bulk) -> torch.Tensor:
    noise = normal(lambda n: bulk(n)[None], (1, img.numel()))
    scaled = img.float() + 255 * aug.arg("sigma") * noise.view(img.shape)
    return scaled.round().clamp(0, 255).to(torch.uint8)


#: Augmentation name -> its operation on one (C, H, W) uint8 image, given ``draw()`` (one
#: uniform number) and ``bulk(n)`` (n of them); keys equal :data:`AUGMENTATIONS`'.
APPLY: dict[str, Callable[[torch.Tensor, Augmentation, Draw, Bulk], torch.Tensor]] = {
    "trivial_augment": _trivial_augment,
    "rand_augment": _rand_augment,
    "augmix": _augmix,
    "random_affine": _random_affine,
    "random_resized_crop": _random_resized_crop,
    "color_jitter": _color_jitter,
    "hflip": _hflip,
    "elastic_transform": _elastic_transform,
    "gaussian_noise": _gaussian_noise,
}


def augment(images: torch.Tensor, spec: str, seed: int, sample_ids: Sequence[str]) -> torch.Tensor:
    """Augment ``images`` (N, C, H, W) in [0, 1], each sample with its own seeded draw.

    Returns a new (N, C, H, W) tensor in [0, 1] on the input's device and dtype (the
    operations run on uint8 on the CPU, as torchvision's policies do).
    """
    aug = parse_augmentation(spec)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W); found shape {tuple(images.shape)}")
    keys = sample_keys(list(sample_ids)) ^ purpose_key(f"augment:{aug.spec}")
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    out = []
    for i in range(pixels.shape[0]):
        stream = Stream(seed, keys[i : i + 1], torch.zeros(1, dtype=torch.int64))
        buffer: list[float] = []

        def draw(stream: Stream = stream, buffer: list[float] = buffer) -> float:
            if not buffer:
                buffer.extend(stream(64)[0].tolist())
            return buffer.pop(0)

        def draws(n: int, stream: Stream = stream) -> torch.Tensor:
            return stream(n)[0]

        out.append(APPLY[aug.name](pixels[i], aug, draw, draws))
    result = torch.stack(out) if out else pixels.clone()
    return (result.float() / 255).to(device=images.device, dtype=images.dtype)
