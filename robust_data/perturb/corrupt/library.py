"""The corruptions: MNIST-C's and ImageNet-C / CIFAR-10-C's, batched, seeded, any size >= 8x8.

Each corruption is ``fn(x, params, rand, scale) -> x'`` with ``x`` (N, C, H, W) in [0, 1],
``params`` one row of its severity table, ``rand`` its per-image uniform stream and ``scale``
the image size over the table's reference size (spatial parameters are multiplied by it).

Where the tables come from (each entry's ``source``):
- ``cifar10-c``: the severity tables of CIFAR-10-C (Hendrycks & Dietterich 2019,
  ``make_cifar_c.py``), made for 32x32 images; spatial values scale with min(H, W) / 32.
- ``mnist-c``: the tables of MNIST-C (Mu & Gilmer 2019, ``corruptions.py``), made for 28x28;
  spatial values scale with min(H, W) / 28. For MNIST-C's line corruptions, which have no
  severity there, severity is the number of lines (MNIST-C draws one).
The corruptions both sets share (shot and impulse noise, glass and motion blur, brightness,
fog) use the CIFAR-10-C table; MNIST-C's own values for them are heavier.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from robust_data.perturb.corrupt.ops import (
    Rand,
    affine_theta,
    disk_kernel,
    filter_per_image,
    gaussian_blur,
    gray,
    motion_kernels,
    normal,
    segment_intensity,
    value_noise,
    warp_affine,
    zoom_center,
)

Fn = Callable[[torch.Tensor, Any, Rand, float], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    """A corruption and its severity table.

    Attributes
    ----------
    name : str
    fn : callable
        ``fn(x, params, rand, scale)``.
    table : tuple
        Parameters per severity (1-based); a single entry means one severity only.
    source : str
        ``cifar10-c`` or ``mnist-c`` (whose table, at which reference size).
    note : str
        How it differs from the reference implementation, if it does.
    """

    name: str
    fn: Fn
    table: tuple[Any, ...]
    source: str
    note: str = ""

    @property
    def severities(self) -> int:
        return len(self.table)

    @property
    def reference_size(self) -> int:
        return 32 if self.source == "cifar10-c" else 28


def _sign(rand: Rand) -> torch.Tensor:
    return torch.where(rand(1)[:, 0] < 0.5, -1.0, 1.0)


# ------------------------------------------------------------------------------- noise


def gaussian_noise(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    return x + c * normal(rand, tuple(x.shape))


def shot_noise(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    # Poisson(x * c) / c through the Anscombe transform: mean and variance match to O(1/lambda)
    z = normal(rand, tuple(x.shape))
    counts = ((torch.sqrt(x * c + 3.0 / 8.0) + z / 2.0) ** 2 - 3.0 / 8.0).clamp_min(0.0)
    return counts / c


def impulse_noise(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    u = rand(x[0].numel()).view(x.shape)  # one stream: u < c hits, and half of the hits are salt
    return torch.where(u < c, (u < c / 2).to(x.dtype), x)


# ------------------------------------------------------------------------------- blur


def _kernel_scale(scale: float) -> int:
    """Integer-pixel kernels (disks, shuffles) scale by the rounded size ratio, at least 1.

    Scaling a 1-pixel disk radius by 28/32 would leave only its centre pixel.
    """
    return max(1, round(scale))


def defocus_blur(x: torch.Tensor, c: tuple, rand: Rand, scale: float) -> torch.Tensor:
    k = _kernel_scale(scale)
    kernel = disk_kernel(c[0] * k, c[1] * k, x.device)
    n = x.shape[0]
    return filter_per_image(x, kernel.expand(n, -1, -1))


def glass_blur(x: torch.Tensor, c: tuple, rand: Rand, scale: float) -> torch.Tensor:
    sigma, delta, iterations = c[0] * scale, c[1] * _kernel_scale(scale), c[2]
    x = gaussian_blur(x, sigma)
    n, ch, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    for _ in range(iterations):
        # local shuffle: each pixel, with probability 1/2, takes the value `delta` pixels away
        move = rand(h * w).view(n, h, w) < 0.5
        dy = (rand(h * w).view(n, h, w) * (2 * delta + 1)).long() - delta
        dx = (rand(h * w).view(n, h, w) * (2 * delta + 1)).long() - delta
        src_r = torch.where(move, (rows + dy).clamp(0, h - 1), rows.expand(n, h, w))
        src_c = torch.where(move, (cols + dx).clamp(0, w - 1), cols.expand(n, h, w))
        index = (src_r * w + src_c).view(n, 1, h * w).expand(n, ch, h * w)
        x = torch.gather(x.reshape(n, ch, h * w), 2, index).view(n, ch, h, w)
    return gaussian_blur(x, sigma)


def motion_blur(x: torch.Tensor, c: tuple, rand: Rand, scale: float) -> torch.Tensor:
    sigma = c[1] * scale
    radius = max(1, min(round(c[0] * scale), math.ceil(3 * sigma)))
    angles = rand(1)[:, 0] * 90 - 45
    return filter_per_image(x, motion_kernels(radius, sigma, angles))


def zoom_blur(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    factors = torch.arange(1.0, c + 1e-9, 0.01 if c <= 1.26 else 0.02).tolist()
    out = x.clone()
    for factor in factors[1:]:
        out += zoom_center(x, factor)
    return out / len(factors)


# ------------------------------------------------------------------------------- weather


def snow(x: torch.Tensor, c: tuple, rand: Rand, scale: float) -> torch.Tensor:
    loc, spread, zoom, threshold, radius, sigma, blend = c
    n, _, h, w = x.shape
    layer = normal(rand, (n, 1, h, w)) * spread + loc
    layer = zoom_center(layer, zoom)
    layer = torch.where(layer < threshold, 0.0, layer).clamp(0, 1)
    sig = sigma * scale
    rad = max(1, min(round(radius * scale), math.ceil(3 * sig)))
    angles = rand(1)[:, 0] * 90 - 135
    layer = filter_per_image(layer, motion_kernels(rad, sig, angles))
    lum = gray(x)
    x = blend * x + (1 - blend) * torch.maximum(x, lum * 1.5 + 0.5)
    return x + layer + torch.flip(layer, dims=(2, 3))


def frost(x: torch.Tensor, c: tuple, rand: Rand, scale: float) -> torch.Tensor:
    n, _, h, w = x.shape
    texture = value_noise(rand, n, (h, w), decay=1.3, device=x.device)
    crystals = ((texture - 0.35) * 1.8).clamp(0, 1)
    return c[0] * x + c[1] * crystals


def fog(x: torch.Tensor, c: tuple, rand: Rand, scale: float) -> torch.Tensor:
    n, _, h, w = x.shape
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    x = x + c[0] * value_noise(rand, n, (h, w), decay=c[1], device=x.device)
    return x * peak / (peak + c[0])


def brightness(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    # HSV value + c: RGB = V * f(hue, saturation), so scaling by (V + c) / V keeps hue and
    # saturation; a black pixel becomes grey c.
    value = x.amax(dim=1, keepdim=True)
    brighter = (value + c).clamp(max=1.0)
    return torch.where(value > 0, x * brighter / value.clamp_min(1e-8), brighter.expand_as(x))


def contrast(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * c + means


def spatter(x: torch.Tensor, c: tuple, rand: Rand, scale: float) -> torch.Tensor:
    loc, spread, sigma, threshold, mask_sigma, _ = c
    n, _, h, w = x.shape
    liquid = gaussian_blur(normal(rand, (n, 1, h, w)) * spread + loc, sigma * scale)
    liquid = torch.where(liquid < threshold, 0.0, liquid)
    mask = gaussian_blur((liquid > threshold).to(x.dtype), mask_sigma * scale)
    mask = torch.where(mask < 0.8, 0.0, mask)
    return x * (1 - mask) + 63 / 255 * mask  # mud


# ------------------------------------------------------------------------------- digital


def pixelate(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    h, w = x.shape[2:]
    small = F.interpolate(x, size=(max(1, int(h * c)), max(1, int(w * c))), mode="area")
    return F.interpolate(small, size=(h, w), mode="area")  # box filter both ways, like PIL's BOX


def jpeg(x: torch.Tensor, c: int, rand: Rand, scale: float) -> torch.Tensor:
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for image in pixels:  # libjpeg through Pillow, as ImageNet-C does
        buffer = io.BytesIO()
        Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(
            buffer, "JPEG", quality=int(c)
        )
        decoded = np.asarray(Image.open(buffer), dtype=np.uint8)
        out.append(decoded[:, :, None] if decoded.ndim == 2 else decoded)
    result = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return result.to(device=x.device, dtype=x.dtype) / 255.0


def elastic(x: torch.Tensor, c: tuple, rand: Rand, scale: float) -> torch.Tensor:
    n, _, h, w = x.shape
    size = min(h, w)
    alpha, sigma, affine = (v * size for v in c)  # the table is in fractions of the size
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], device=x.device).expand(n, 2, 3)
    jitter = (rand(6).view(n, 2, 3) * 2 - 1) * (2 * affine / size)
    grid = F.affine_grid(identity + jitter, list(x.shape), align_corners=False)
    if alpha > 0:
        # Gaussian-smoothed uniform noise times alpha, as in the reference; the smoothing is
        # done on the image but its amplitude is set to what an unbounded field would have
        # (std 0.577 / (2 sqrt(pi) sigma) per unit alpha), since sigma can exceed the image.
        field = gaussian_blur(rand(2 * h * w).view(n, 2, h, w) * 2 - 1, max(sigma, 0.5))
        spread = field.std(dim=(2, 3), keepdim=True).clamp_min(1e-8)
        target = alpha * 0.5774 / (2 * math.sqrt(math.pi) * max(sigma, 0.5))
        grid = grid + (field / spread * target * 2 / size).permute(0, 2, 3, 1)
    return F.grid_sample(
        x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    )


# ------------------------------------------------------------------------------ geometric (MNIST-C)


def shear(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    return warp_affine(x, affine_theta(x.shape[0], x.device, shear=c * _sign(rand)))


def rotate(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    return warp_affine(x, affine_theta(x.shape[0], x.device, rotation=c * _sign(rand)))


def scale_(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    return warp_affine(x, affine_theta(x.shape[0], x.device, scale=c))


def translate(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    n, _, h, w = x.shape
    shift = c * scale
    tx, ty = _sign(rand) * 2 * shift / w, _sign(rand) * 2 * shift / h
    return warp_affine(x, affine_theta(n, x.device, translate=(tx, ty)))


# ------------------------------------------------------------------------------- drawn (MNIST-C)


def stripe(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    w = x.shape[3]
    band = max(1, round(c * w))
    cols = torch.arange(w, device=x.device)
    inverted = (cols < band) | (cols >= w - band)
    return torch.where(inverted.view(1, 1, 1, w), 1 - x, x)


def dotted_line(x: torch.Tensor, c: int, rand: Rand, scale: float) -> torch.Tensor:
    n, _, h, w = x.shape
    period = max(2, round(2 * scale))
    dots = ((torch.arange(w, device=x.device) // period) % 2 == 1).view(1, 1, 1, w)
    for _ in range(int(c)):
        rows = rand(2) * (h - 1)
        p0 = torch.stack([torch.zeros(n, device=x.device), rows[:, 0]], -1)
        p1 = torch.stack([torch.full((n,), w - 1.0, device=x.device), rows[:, 1]], -1)
        x = x + segment_intensity((h, w), p0, p1, 2.3 * scale) * dots
    return x


def zigzag(x: torch.Tensor, c: int, rand: Rand, scale: float) -> torch.Tensor:
    h, w = x.shape[2:]
    a, b = 2.0 * scale, 2.0 * scale  # length and height of each zig
    for _ in range(int(c)):
        start = rand(2)
        r0 = start[:, 0] * (h - 1)
        r1 = r0 + (start[:, 1] * 10 - 5) * scale
        c0, c1 = 2 * scale, w - 3 * scale
        theta = torch.atan((r1 - r0) / (c1 - c0))
        length = (c1 - c0) / torch.cos(theta)
        steps = int(((c1 - c0) / math.cos(math.atan(5 * scale / (c1 - c0)))) // a) + 2
        along = torch.arange(steps, device=x.device, dtype=torch.float32) * a  # (S,)
        along = torch.minimum(along[None], length[:, None])
        across = torch.where(torch.arange(steps, device=x.device) % 2 == 1, b, 0.0)[None] * 1.0
        cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
        cols = c0 + along * cos - across * sin
        rows = r0[:, None] + along * sin + across * cos
        for i in range(1, steps):
            p0 = torch.stack([cols[:, i - 1], rows[:, i - 1]], -1)
            p1 = torch.stack([cols[:, i], rows[:, i]], -1)
            x = (x + segment_intensity((h, w), p0, p1, 2.3 * scale)).clamp(0, 1)
    return x


def canny_edges(x: torch.Tensor, c: float, rand: Rand, scale: float) -> torch.Tensor:
    lum = gaussian_blur(gray(x), c * scale)
    sobel = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]], device=x.device, dtype=x.dtype)
    padded = F.pad(lum, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, sobel.view(1, 1, 3, 3))
    gy = F.conv2d(padded, sobel.t().contiguous().view(1, 1, 3, 3))
    magnitude = torch.sqrt(gx**2 + gy**2)
    # non-maximum suppression along the gradient, quantised to 4 directions
    angle = (torch.rad2deg(torch.atan2(gy, gx)) + 180) % 180
    sector = ((angle + 22.5) // 45).long() % 4
    mp = F.pad(magnitude, (1, 1, 1, 1))
    h, w = magnitude.shape[2:]
    shifts = [((0, 1), (0, -1)), ((1, 1), (-1, -1)), ((1, 0), (-1, 0)), ((1, -1), (-1, 1))]
    keep = torch.zeros_like(magnitude, dtype=torch.bool)
    for k, ((dy1, dx1), (dy2, dx2)) in enumerate(shifts):
        n1 = mp[:, :, 1 + dy1 : 1 + dy1 + h, 1 + dx1 : 1 + dx1 + w]
        n2 = mp[:, :, 1 + dy2 : 1 + dy2 + h, 1 + dx2 : 1 + dx2 + w]
        keep |= (sector == k) & (magnitude >= n1) & (magnitude >= n2)
    thin = torch.where(keep, magnitude, 0.0)
    strong, weak = thin >= 0.8, thin >= 0.4  # skimage's 0.1 / 0.2 of the range, x4 for Sobel
    for _ in range(max(h, w)):
        grown = weak & (F.max_pool2d(strong.to(x.dtype), 3, 1, 1) > 0)
        if torch.equal(grown, strong):
            break
        strong = grown
    return strong.to(x.dtype).expand_as(x)


CIFAR = "cifar10-c"
MNIST = "mnist-c"

_ALL = [
    Corruption("gaussian_noise", gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10), CIFAR),
    Corruption(
        "shot_noise",
        shot_noise,
        (500, 250, 100, 75, 50),
        CIFAR,
        "Poisson drawn through the Anscombe transform (exact to O(1/lambda))",
    ),
    Corruption("impulse_noise", impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07), CIFAR),
    Corruption(
        "defocus_blur",
        defocus_blur,
        ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        CIFAR,
    ),
    Corruption(
        "glass_blur",
        glass_blur,
        ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        CIFAR,
        "the local shuffle is a random gather per pixel, not a raster of sequential swaps",
    ),
    Corruption(
        "motion_blur",
        motion_blur,
        ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
        CIFAR,
        "a one-sided Gaussian line kernel at a random angle in [-45, 45] instead of ImageMagick's",
    ),
    Corruption("zoom_blur", zoom_blur, (1.06, 1.11, 1.16, 1.21, 1.26), CIFAR),
    Corruption(
        "snow",
        snow,
        (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        CIFAR,
        "motion blur of the snow layer as in motion_blur",
    ),
    Corruption(
        "frost",
        frost,
        ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        CIFAR,
        "a synthetic frost texture (fractal noise) instead of ImageNet-C's frost photographs",
    ),
    Corruption(
        "fog",
        fog,
        ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        CIFAR,
        "fractal value noise instead of the diamond-square plasma",
    ),
    Corruption("brightness", brightness, (0.05, 0.1, 0.15, 0.2, 0.3), CIFAR),
    Corruption("contrast", contrast, (0.75, 0.5, 0.4, 0.3, 0.15), CIFAR),
    Corruption(
        "elastic",
        elastic,
        ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02)),
        MNIST,
        "ImageNet-C's and MNIST-C's table in fractions of the image size (alpha, sigma, affine); "
        "its severities are not ordered by how far pixels move",
    ),
    Corruption("pixelate", pixelate, (0.95, 0.9, 0.85, 0.75, 0.65), CIFAR),
    Corruption("jpeg", jpeg, (80, 65, 58, 50, 40), CIFAR, "libjpeg through Pillow"),
    Corruption("shear", shear, (0.2, 0.4, 0.6, 0.8, 1.0), MNIST),
    Corruption("scale", scale_, (0.9, 0.8, 0.7, 0.6, 0.5), MNIST),
    Corruption("rotate", rotate, (0.2, 0.4, 0.6, 0.8, 1.0), MNIST),
    Corruption("translate", translate, (1, 2, 3, 4, 5), MNIST),
    Corruption(
        "stripe",
        stripe,
        (0.1, 0.175, 0.25, 0.325, 0.4),
        MNIST,
        "severity 3 is MNIST-C's 7 of 28 columns on each side; the others are ours",
    ),
    Corruption(
        "spatter",
        spatter,
        (
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ),
        MNIST,
        "mud spatter",
    ),
    Corruption("dotted_line", dotted_line, (1, 2, 3, 4, 5), MNIST, "severity = number of lines"),
    Corruption("zigzag", zigzag, (1, 2, 3, 4, 5), MNIST, "severity = number of zigzags"),
    Corruption(
        "canny_edges", canny_edges, (1.0,), MNIST, "one severity: Gaussian sigma 1 (scaled)"
    ),
]

#: Every corruption by name.
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in _ALL}

#: The 15 MNIST-C corruptions and the 15 ImageNet-C / CIFAR-10-C corruptions.
MNIST_C = (
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
)
IMAGENET_C = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic",
    "pixelate",
    "jpeg",
)
