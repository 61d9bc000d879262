"""Compute device and precision: CUDA when present, else the CPU; bf16 where it is fast."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(requested: str = "auto") -> torch.device:
    """The device to compute on.

    Parameters
    ----------
    requested : str
        ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises
    ------
    ValueError
        For an unknown name, or ``cuda`` on a machine without a CUDA device.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise ValueError(f"expected a device in {DEVICES} (or cuda:N); found {requested!r}")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"expected a CUDA device for device={requested!r}; found none on this machine; "
            "use device='auto' or 'cpu'"
        )
    return torch.device(requested)


@cache
def cpu_has_bf16_units() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX or AVX512-BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def resolve_precision(requested: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``requested`` on ``device``.

    ``auto`` picks bf16 autocast where the hardware has bf16 matrix units (CUDA devices that
    support bf16, CPUs with AMX or AVX512-BF16) and fp32 otherwise.

    Raises
    ------
    ValueError
        For a name outside ``auto``, ``fp32``, ``bf16``.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"expected a precision in {PRECISIONS}; found {requested!r}")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16_units() else "fp32"


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """An autocast context for ``precision`` (disabled for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
