"""Compute device and precision: CUDA when present, else the CPU; bf16 where it is fast."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

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


#: glibc mallopt parameters: M_TRIM_THRESHOLD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: glibc's largest mmap threshold on 64-bit: blocks up to this size come from the heap.
MMAP_THRESHOLD = 32 << 20
#: Free heap memory kept for reuse instead of being returned to the kernel.
TRIM_THRESHOLD = 1 << 30


@cache
def tune_allocator() -> bool:
    """Let glibc reuse freed tensor memory instead of unmapping and re-faulting it.

    By default glibc serves blocks above a few MB with ``mmap`` and trims the heap after each
    large ``free``, so every forward pass maps fresh pages and the kernel zeroes them: on the
    paper's CNN at 512 images per pass a third of the CPU time went to minor page faults.
    This raises the mmap threshold to its maximum (32 MB) and keeps up to 1 GB of freed heap
    for reuse. Process-wide, idempotent, a no-op where the C library is not glibc. Called by
    the pipelines and the benchmarks, not on import of the core library.

    Returns
    -------
    bool
        Whether the settings were applied.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


@cache
def _glibc() -> Any:
    """The C library when it is glibc (has ``mallopt`` and ``malloc_trim``), else None.

    Looked up once: ``ctypes.util.find_library`` runs ``ldconfig`` in a subprocess.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - AttributeError where not glibc
    except (OSError, AttributeError):
        return None
    return libc


def release_memory() -> bool:
    """Hand freed heap memory back to the operating system (``gc``, Arrow's memory pool, then
    glibc ``malloc_trim``).

    With :func:`tune_allocator` glibc keeps up to 1 GB of freed heap per process for reuse,
    and pyarrow's pool (mimalloc) keeps what Parquet reads and writes freed (1.2 GB after
    reading a 0.6 GB table and dropping it); when one process runs many steps in turn (the
    in-process executor), what each step freed stays resident and the process's RSS ratchets
    up to the sum of the steps' leftovers. Called between steps, this returns it: peak RSS is
    then the largest step's, not the sum.

    Returns
    -------
    bool
        Whether memory could be trimmed (False where the C library is not glibc).
    """
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
