"""Image codecs: PNG bytes <-> uint8 pixel arrays, and the content hash of decoded pixels.

Pixel arrays inside the core are ``(H, W, C)`` uint8 with C in {1, 3}; batches for models are
``images`` (N, C, H, W) float32 in [0, 1] (see :func:`to_model_batch`).
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

#: PNG compression level: 1 encodes ~1.2x faster than the default 6 for ~3% more bytes (bench/png_encode.py).
PNG_COMPRESS_LEVEL = 1


class ImageDecodeError(ValueError):
    """Bytes that are not a readable PNG/JPEG image (the message says why)."""


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode one image as PNG.

    Parameters
    ----------
    pixels : np.ndarray
        (H, W, C) uint8, C in {1, 3}.

    Returns
    -------
    bytes
        A lossless PNG ("L" mode for C=1, "RGB" for C=3).
    """
    channels = pixels.shape[2]
    image = Image.fromarray(
        pixels[:, :, 0] if channels == 1 else pixels, "L" if channels == 1 else "RGB"
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def decode_image(data: bytes, channels: int | None = None) -> np.ndarray:
    """Decode PNG/JPEG (or any format Pillow reads) bytes to pixels.

    Parameters
    ----------
    data : bytes
        Encoded image.
    channels : int, optional
        Force 1 (grayscale) or 3 (RGB). By default grayscale images stay 1-channel and
        everything else (RGB, RGBA, palette, CMYK) becomes 3-channel RGB.

    Returns
    -------
    np.ndarray
        (H, W, C) uint8.

    Raises
    ------
    ImageDecodeError
        When the bytes are empty, truncated or not an image.
    """
    if not data:
        raise ImageDecodeError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            if channels == 1 or (channels is None and mode in ("L", "1", "I", "I;16", "F")):
                image = image.convert("L")
            else:
                image = image.convert("RGB")
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"not a readable image ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return pixels


def content_sha256(pixels: np.ndarray) -> str:
    """Hash decoded pixels, so that the same picture gets the same hash in any container.

    Parameters
    ----------
    pixels : np.ndarray
        (H, W, C) uint8.

    Returns
    -------
    str
        Hex sha256 of ``"HxWxC:"`` followed by the C-contiguous pixel bytes.
    """
    height, width, channels = pixels.shape
    digest = hashlib.sha256(f"{height}x{width}x{channels}:".encode())
    digest.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, C) uint8 pixels to ``size`` = (height, width) with bilinear filtering."""
    height, width = size
    channels = pixels.shape[2]
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
    out = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
    return out[:, :, None] if out.ndim == 2 else out


def to_model_batch(pixels: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Stack decoded images into a model batch.

    Parameters
    ----------
    pixels : list of np.ndarray or np.ndarray
        N arrays of (H, W, C) uint8, all the same shape, or one (N, H, W, C) uint8 array.

    Returns
    -------
    np.ndarray
        ``images`` (N, C, H, W) float32 in [0, 1].
    """
    stacked = np.stack(pixels) if isinstance(pixels, list) else pixels
    return np.ascontiguousarray(stacked.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
