"""Batched image operations in torch for the corruptions: blurs, warps, noise, drawing.

Every function takes ``x`` (N, C, H, W) float in [0, 1] on any device and per-image
parameters as (N,) tensors or Python numbers, and returns a new tensor of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: A source of uniform numbers: ``rand(count)`` -> (N, count) in [0, 1), a fresh stream per call.
Rand = Callable[[int], torch.Tensor]


def normal(rand: Rand, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal numbers of ``shape`` = (N, ...): the inverse normal CDF of one stream.

    The uniforms are k / 2**24; shifting them by half a step keeps them inside (0, 1), so the
    normals are finite (|z| < 5.5).
    """
    count = math.prod(shape[1:])
    return torch.special.ndtri(rand(count) + 2.0**-25).view(shape)


def gaussian_kernel1d(sigma: float, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ceil(3 sigma) (at least 1)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def _reflect(index: torch.Tensor, n: int) -> torch.Tensor:
    """Indices reflected into [0, n) about the edges without repeating them (torch's reflect)."""
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    index = index.remainder(period)
    return torch.where(index >= n, period - index, index)


def blur_matrix(n: int, sigma: float, device: torch.device) -> torch.Tensor:
    """(n, n) matrix of a 1-D Gaussian blur with reflected borders: ``x @ B.T`` blurs rows."""
    k = gaussian_kernel1d(sigma, device)
    r = k.numel() // 2
    rows = torch.arange(n, device=device).repeat_interleave(k.numel())
    taps = torch.arange(-r, r + 1, device=device).repeat(n)
    matrix = torch.zeros(n, n, device=device)
    matrix.index_put_((rows, _reflect(rows + taps, n)), k.repeat(n), accumulate=True)
    return matrix


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders (same sigma for every image).

    Done as two small matrix products per image (H x H and W x W banded matrices), which is
    several times faster on a CPU than a single-channel convolution over N * C planes.
    """
    if sigma <= 0:
        return x
    h, w = x.shape[2:]
    rows = blur_matrix(h, sigma, x.device).to(x.dtype)
    cols = blur_matrix(w, sigma, x.device).to(x.dtype)
    return rows @ x @ cols.t()


def filter_per_image(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image with its own (N, k, k) kernel (odd k), zero-padded borders."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    weight = kernels[:, None].repeat_interleave(c, dim=0).to(x.dtype)  # (N*C, 1, k, k)
    out = F.conv2d(x.reshape(1, n * c, h, w), weight, padding=k // 2, groups=n * c)
    return out.view(n, c, h, w)


def disk_kernel(radius: float, alias_blur: float, device: torch.device) -> torch.Tensor:
    """A normalised disk of ``radius`` pixels, anti-aliased by a Gaussian of ``alias_blur``."""
    size = max(1, math.ceil(radius))
    t = torch.arange(-size, size + 1, device=device, dtype=torch.float32)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).float()
    disk = disk / disk.sum()
    if alias_blur > 0:
        disk = gaussian_blur(disk[None, None], alias_blur)[0, 0]
    return disk / disk.sum()


def motion_kernels(radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """(N, k, k) one-sided motion-blur kernels along ``angles`` (degrees), Gaussian weights."""
    k = 2 * radius + 1
    device = angles.device
    t = torch.arange(0, radius + 1, device=device, dtype=torch.float32)  # distance along the path
    weights = torch.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    rad = torch.deg2rad(angles.float())[:, None]
    cols = torch.round(radius + t[None] * torch.cos(rad)).long().clamp(0, k - 1)
    rows = torch.round(radius - t[None] * torch.sin(rad)).long().clamp(0, k - 1)
    kernels = torch.zeros(angles.shape[0], k * k, device=device)
    kernels.scatter_add_(1, rows * k + cols, weights.expand(angles.shape[0], -1))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    return kernels.view(-1, k, k)


def warp_affine(x: torch.Tensor, theta: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Sample ``x`` at ``theta`` (N, 2, 3) applied to output coordinates (normalised, centred).

    ``theta`` maps each output pixel to the input pixel it reads, as in ``F.affine_grid``.
    """
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def affine_theta(
    n: int,
    device: torch.device,
    rotation: torch.Tensor | float = 0.0,
    shear: torch.Tensor | float = 0.0,
    scale: torch.Tensor | float = 1.0,
    translate: tuple[torch.Tensor | float, torch.Tensor | float] = (0.0, 0.0),
) -> torch.Tensor:
    """(N, 2, 3) inverse maps about the image centre.

    ``rotation`` and ``shear`` in radians, ``scale`` > 1 enlarges the content, ``translate``
    in normalised units (2 = the whole width) moves the content right and down.
    """

    def col(v: torch.Tensor | float) -> torch.Tensor:
        return torch.as_tensor(v, dtype=torch.float32, device=device).expand(n).clone()

    r, s, z = col(rotation), col(shear), col(scale)
    tx, ty = col(translate[0]), col(translate[1])
    cos, sin = torch.cos(r), torch.sin(r)
    # forward map: rotate, then shear along x, then scale; inverse is what grid_sample wants
    a, b = cos - s * sin, -sin + s * cos
    c, d = sin, cos
    forward = torch.stack([torch.stack([a * z, b * z], -1), torch.stack([c * z, d * z], -1)], -2)
    inverse = torch.linalg.inv(forward)
    shift = -(inverse @ torch.stack([tx, ty], -1)[..., None])[..., 0]
    return torch.cat([inverse, shift[..., None]], dim=-1)


def zoom_matrix(size: int, factor: float, device: torch.device) -> torch.Tensor:
    """(size, size) linear interpolation matrix that enlarges a 1-D signal about its centre.

    Output pixel i reads source position (i + 0.5 - size / 2) / factor + size / 2 - 0.5 with
    linear weights, clamped to the border (grid_sample's bilinear, border padding).
    """
    i = torch.arange(size, device=device, dtype=torch.float32)
    src = ((i + 0.5 - size / 2) / factor + size / 2 - 0.5).clamp(0, size - 1)
    low = src.floor().long()
    high = (low + 1).clamp(max=size - 1)
    frac = src - low
    matrix = torch.zeros(size, size, device=device)
    matrix[i.long(), low] += 1 - frac
    matrix[i.long(), high] += frac
    return matrix


def zoom_center(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Enlarge the centre by ``factor`` (>= 1) and crop to the original size (bilinear).

    Separable, so it is two small matrix products per image instead of a sampling grid.
    """
    h, w = x.shape[2:]
    rows = zoom_matrix(h, float(factor), x.device).to(x.dtype)
    cols = zoom_matrix(w, float(factor), x.device).to(x.dtype)
    return rows @ x @ cols.t()


def value_noise(
    rand: Rand, n: int, size: tuple[int, int], decay: float, device: torch.device
) -> torch.Tensor:
    """(N, 1, H, W) fractal value noise in [0, 1]: octaves of upsampled random grids.

    Amplitude falls by ``decay`` per octave (higher decay: smoother), like the
    diamond-square plasma of ImageNet-C's fog with its ``wibbledecay``.
    """
    h, w = size
    octaves = max(1, math.ceil(math.log2(max(h, w))))
    total = torch.zeros(n, 1, h, w, device=device)
    for o in range(octaves):
        cells = 2 ** (o + 1) + 1
        grid = rand(cells * cells).view(n, 1, cells, cells) * 2 - 1
        total += F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=True) / decay**o
    low = total.amin(dim=(1, 2, 3), keepdim=True)
    high = total.amax(dim=(1, 2, 3), keepdim=True)
    return (total - low) / (high - low).clamp_min(1e-6)


def gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luminance (ITU-R 601) of RGB, or the single channel."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def segment_intensity(
    size: tuple[int, int], p0: torch.Tensor, p1: torch.Tensor, width: float
) -> torch.Tensor:
    """(N, 1, H, W) intensity of segments p0 -> p1 ((N, 2) as (col, row) pixels).

    Falls from 1 on the segment to 0 at ``width`` pixels away (MNIST-C's log(1 - d/w) + 1).
    """
    h, w = size
    device = p0.device
    rows = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    d = (p1 - p0).float()
    length2 = (d**2).sum(-1).clamp_min(1e-6).view(-1, 1, 1)
    t = (cols - p0[:, 0, None, None]) * d[:, 0, None, None] + (rows - p0[:, 1, None, None]) * d[
        :, 1, None, None
    ]
    t = (t / length2).clamp(0, 1)
    dc = cols - (p0[:, 0, None, None] + t * d[:, 0, None, None])
    dr = rows - (p0[:, 1, None, None] + t * d[:, 1, None, None])
    dist = torch.sqrt(dc**2 + dr**2).clamp(max=width * (1 - 1e-6))
    return (torch.log1p(-dist / width) + 1).clamp(0, 1)[:, None]
