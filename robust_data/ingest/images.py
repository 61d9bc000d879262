"""Image codecs: PNG bytes <-> uint8 pixel arrays, and the content hash of decoded pixels.

Pixel arrays inside the core are ``(H, W, C)`` uint8 with C in {1, 3}; batches for models are
``images`` (N, C, H, W) float32 in [0, 1] (see :func:`to_model_batch`).
"""

from __future__ import annotations

import hashlib
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from robust_data.errors import DatasetError

#: PNG compression level: 1 encodes ~1.2x faster than the default 6 for ~3% more bytes
#: (bench/png_encode.py).
PNG_COMPRESS_LEVEL = 1


class ImageDecodeError(DatasetError):
    """Bytes that are not a readable PNG/JPEG image; :attr:`reason` says why (a reject's reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__("a readable PNG or JPEG image", reason, "re-encode or remove the file")
        self.reason = reason


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


#: Note for 16-bit images (PNG "I;16", or 32-bit "I" holding 0..65535), which are scaled,
#: not clipped.
SCALED_16BIT_NOTE = "16-bit pixels scaled to 8-bit as round(v * 255 / 65535)"
#: Note for 16-bit colour images, which Pillow reduces to 8 bits by keeping the high byte.
HIGH_BYTE_16BIT_NOTE = "16-bit colour pixels reduced to 8-bit as v >> 8 (the high byte)"
#: Note for images whose transparency is dropped (the colour under it is kept as stored).
ALPHA_DROPPED_NOTE = "alpha channel dropped (colours kept as stored, not composited)"
_GRAY_MODES = ("L", "1", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_DEEP_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


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
        When the bytes are empty, truncated, not an image, a decompression bomb, or pixels
        that do not fit 8 bits without losing their meaning (see :func:`decode_image_noted`).
    """
    return decode_image_noted(data, channels)[0]


def decode_image_noted(data: bytes, channels: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode like :func:`decode_image`, and say how the stored pixels differ from the file's.

    16-bit grayscale images are scaled to 8 bits (``round(v * 255 / 65535)``), never
    clipped; 16-bit colour images keep Pillow's high byte (``v >> 8``); integer
    images outside 0..65535 and float images that are not whole numbers in 0..255 are refused.
    Images larger than ``PIL.Image.MAX_IMAGE_PIXELS`` are refused as decompression bombs.

    Parameters
    ----------
    data : bytes
        Encoded image.
    channels : int, optional
        As in :func:`decode_image`.

    Returns
    -------
    pixels : np.ndarray
        (H, W, C) uint8.
    notes : list of str
        ``SCALED_16BIT_NOTE``, ``HIGH_BYTE_16BIT_NOTE`` and/or ``ALPHA_DROPPED_NOTE`` when
        they apply; else empty.

    Raises
    ------
    ImageDecodeError
        As :func:`decode_image`.
    """
    if not data:
        raise ImageDecodeError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                deep_colour = image.mode not in _DEEP_MODES and _is_16bit_file(image)
                image.load()
                pixels, notes = _to_uint8(image, channels)
                notes += [HIGH_BYTE_16BIT_NOTE] if deep_colour else []
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(
            f"decompression bomb ({exc}); raise PIL.Image.MAX_IMAGE_PIXELS only for files you trust"
        ) from exc
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"not a readable image ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return pixels, notes


def _to_uint8(image: Image.Image, channels: int | None) -> tuple[np.ndarray, list[str]]:
    """(H, W) or (H, W, 3) uint8 pixels of an opened image, and the notes on what changed."""
    notes = [ALPHA_DROPPED_NOTE] if _has_transparency(image) else []
    gray = channels == 1 or (channels is None and image.mode in _GRAY_MODES)
    if image.mode in _DEEP_MODES:
        image = Image.fromarray(_scale_16bit(np.asarray(image)), "L")
        notes.append(SCALED_16BIT_NOTE)
    elif image.mode == "F":
        image = Image.fromarray(_whole_float_pixels(np.asarray(image)), "L")
    image = image.convert("L" if gray else "RGB")
    return np.asarray(image, dtype=np.uint8), notes


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """(H, W) integers in 0..65535 to uint8 as round(v * 255 / 65535); refuse other ranges."""
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or high > 65535:
        raise ImageDecodeError(
            f"integer pixels from {low} to {high} do not fit 16 bits; "
            "save the image as 8- or 16-bit"
        )
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _whole_float_pixels(values: np.ndarray) -> np.ndarray:
    """(H, W) float pixels that are whole numbers in 0..255, as uint8; refuse anything else."""
    if values.size and not (
        np.isfinite(values).all()
        and (values == np.rint(values)).all()
        and values.min() >= 0
        and values.max() <= 255
    ):
        raise ImageDecodeError(
            "floating-point pixels that are not whole numbers in 0..255 (their scale is "
            "unknown); save the image as 8-bit"
        )
    return values.astype(np.uint8)


def _is_16bit_file(image: Image.Image) -> bool:
    """Whether an opened, not yet loaded image is stored with 16 bits per sample (raw mode)."""
    return any(";16" in str(tile.args) for tile in getattr(image, "tile", None) or [])


def _has_transparency(image: Image.Image) -> bool:
    """Whether converting ``image`` drops transparency some pixel actually uses."""
    if "A" in image.getbands() or "a" in image.getbands():
        band = "A" if "A" in image.getbands() else "a"
        low, _high = image.getchannel(band).getextrema()  # one band: (min, max) numbers
        return bool(low < 255)  # type: ignore[operator]  # Pillow types it for many bands
    return "transparency" in image.info


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
