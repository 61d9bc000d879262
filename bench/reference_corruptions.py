"""Per-image numpy/scipy/PIL reference implementations, the way ImageNet-C and MNIST-C work.

Each function takes one (H, W, C) float image in [0, 1], a severity parameter and a numpy
Generator, and returns the corrupted image; used only by bench/corruption_speed.py as the
baseline. They follow the published corruption code's approach (scipy.ndimage for filters and
warps, PIL for JPEG and pixelation, a Python raster loop for glass blur's pixel swaps,
diamond-square plasma for fog); ImageMagick's motion blur is replaced by a line kernel.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage


def gaussian_noise(x, c, rng):
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1)


def shot_noise(x, c, rng):
    return np.clip(rng.poisson(x * c) / float(c), 0, 1)


def impulse_noise(x, c, rng):
    out = x.copy()
    hit = rng.random(x.shape) < c
    out[hit] = (rng.random(int(hit.sum())) < 0.5).astype(x.dtype)
    return out


def _disk(radius, alias_blur):
    size = 8 if radius <= 8 else int(np.ceil(radius))
    t = np.arange(-size, size + 1)
    xx, yy = np.meshgrid(t, t)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return ndimage.gaussian_filter(disk, alias_blur)


def defocus_blur(x, c, rng):
    kernel = _disk(*c)
    return np.clip(
        np.stack(
            [ndimage.convolve(x[:, :, k], kernel, mode="reflect") for k in range(x.shape[2])], -1
        ),
        0,
        1,
    )


def glass_blur(x, c, rng):
    sigma, delta, iterations = c
    img = ndimage.gaussian_filter(x, (sigma, sigma, 0))
    h, w = img.shape[:2]
    for _ in range(iterations):
        for r in range(h - delta, delta, -1):
            for col in range(w - delta, delta, -1):
                if rng.random() < 0.5:
                    dx, dy = rng.integers(-delta, delta, size=2)
                    r2, c2 = r + dy, col + dx
                    img[r, col], img[r2, c2] = img[r2, c2].copy(), img[r, col].copy()
    return np.clip(ndimage.gaussian_filter(img, (sigma, sigma, 0)), 0, 1)


def motion_blur(x, c, rng):
    radius, sigma = c
    angle = np.deg2rad(rng.uniform(-45, 45))
    k = 2 * radius + 1
    kernel = np.zeros((k, k), np.float32)
    for t in range(radius + 1):
        kernel[round(radius - t * np.sin(angle)), round(radius + t * np.cos(angle))] += np.exp(
            -0.5 * (t / sigma) ** 2
        )
    kernel /= kernel.sum()
    return np.clip(
        np.stack(
            [ndimage.convolve(x[:, :, i], kernel, mode="constant") for i in range(x.shape[2])], -1
        ),
        0,
        1,
    )


def _clipped_zoom(img, factor):
    h = img.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    out = ndimage.zoom(img[top : top + ch, top : top + ch], (factor, factor, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


def zoom_blur(x, c, rng):
    out = np.zeros_like(x)
    factors = np.arange(1, c + 1e-9, 0.01)
    for f in factors:
        out += _clipped_zoom(x, f)
    return np.clip((x + out) / (len(factors) + 1), 0, 1)


def _plasma(mapsize, decay, rng):
    grid = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0
    while step >= 2:
        corners = grid[0:mapsize:step, 0:mapsize:step]
        square = corners + np.roll(corners, -1, 0)
        square = square + np.roll(square, -1, 1)
        grid[step // 2 : mapsize : step, step // 2 : mapsize : step] = (
            square / 4 + wibble * rng.uniform(-wibble, wibble, square.shape)
        )
        dr = grid[step // 2 : mapsize : step, step // 2 : mapsize : step]
        ul = grid[0:mapsize:step, 0:mapsize:step]
        grid[0:mapsize:step, step // 2 : mapsize : step] = (
            dr + np.roll(dr, 1, 0) + ul + np.roll(ul, -1, 1)
        ) / 4 + wibble * rng.uniform(-wibble, wibble, ul.shape)
        grid[step // 2 : mapsize : step, 0:mapsize:step] = (
            dr + np.roll(dr, 1, 1) + ul + np.roll(ul, -1, 0)
        ) / 4 + wibble * rng.uniform(-wibble, wibble, ul.shape)
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def fog(x, c, rng):
    peak = x.max()
    h, w = x.shape[:2]
    x = x + c[0] * _plasma(256, c[1], rng)[:h, :w, None]
    return np.clip(x * peak / (peak + c[0]), 0, 1)


def brightness(x, c, rng):
    value = x.max(axis=2, keepdims=True)
    brighter = np.minimum(value + c, 1)
    return np.where(value > 0, x * brighter / np.maximum(value, 1e-8), brighter)


def contrast(x, c, rng):
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def _affine(x, matrix):
    h, w = x.shape[:2]
    center = np.array([(h - 1) / 2, (w - 1) / 2])
    offset = center - matrix @ center
    return np.stack(
        [
            ndimage.affine_transform(x[:, :, k], matrix, offset=offset, order=1)
            for k in range(x.shape[2])
        ],
        -1,
    )


def shear(x, c, rng):
    s = c * rng.choice([-1, 1])
    return np.clip(_affine(x, np.array([[1.0, 0], [s, 1.0]])), 0, 1)


def rotate(x, c, rng):
    r = c * rng.choice([-1, 1])
    return np.clip(_affine(x, np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])), 0, 1)


def scale(x, c, rng):
    return np.clip(_affine(x, np.eye(2) / c), 0, 1)


def translate(x, c, rng):
    shift = c * rng.choice([-1, 1], size=2)
    return np.clip(ndimage.shift(x, (shift[0], shift[1], 0), order=1), 0, 1)


def elastic(x, c, rng):
    h, w = x.shape[:2]
    size = min(h, w)
    alpha, sigma, affine = (v * size for v in c)
    center = np.array([h, w]) / 2
    matrix = np.eye(2) + rng.uniform(-affine, affine, (2, 2)) / size
    x = np.stack(
        [
            ndimage.affine_transform(x[:, :, k], matrix, offset=center - matrix @ center, order=1)
            for k in range(x.shape[2])
        ],
        -1,
    )
    dx = (
        ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="reflect", truncate=3)
        * alpha
    )
    dy = (
        ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="reflect", truncate=3)
        * alpha
    )
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = [yy + dy, xx + dx]
    return np.clip(
        np.stack(
            [ndimage.map_coordinates(x[:, :, k], coords, order=1) for k in range(x.shape[2])], -1
        ),
        0,
        1,
    )


def pixelate(x, c, rng):
    h, w = x.shape[:2]
    pixels = (x * 255).round().astype(np.uint8)
    img = Image.fromarray(pixels[:, :, 0] if x.shape[2] == 1 else pixels)
    img = img.resize((int(w * c), int(h * c)), Image.Resampling.BOX).resize(
        (w, h), Image.Resampling.BOX
    )
    out = np.asarray(img, np.float32) / 255
    return out[:, :, None] if out.ndim == 2 else out


def jpeg(x, c, rng):
    pixels = (x * 255).round().astype(np.uint8)
    img = Image.fromarray(pixels[:, :, 0] if x.shape[2] == 1 else pixels)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=c)
    out = np.asarray(Image.open(buffer), np.float32) / 255
    return out[:, :, None] if out.ndim == 2 else out


def stripe(x, c, rng):
    out = x.copy()
    band = max(1, round(c * x.shape[1]))
    out[:, :band] = 1 - out[:, :band]
    out[:, -band:] = 1 - out[:, -band:]
    return out


def spatter(x, c, rng):
    loc, spread, sigma, threshold, mask_sigma, _ = c
    liquid = ndimage.gaussian_filter(rng.normal(loc, spread, x.shape[:2]), sigma)
    liquid[liquid < threshold] = 0
    mask = ndimage.gaussian_filter((liquid > threshold).astype(np.float32), mask_sigma)
    mask[mask < 0.8] = 0
    mask = mask[:, :, None]
    return np.clip(x * (1 - mask) + 63 / 255 * mask, 0, 1)


REFERENCES = {
    name: fn
    for name, fn in globals().items()
    if callable(fn)
    and not name.startswith("_")
    and name not in {"annotations"}
    and fn.__module__ == __name__
}
