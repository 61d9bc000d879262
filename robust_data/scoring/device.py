"""Compute device and precision: CUDA when present, else the CPU; bf16 where it is fast.

Also the one place that knows which oneDNN CPU kernels run here, and routes training around
the one found faulty (:func:`onednn_training_guard`).
"""

from __future__ import annotations

import os
import platform
import threading
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import nn

from robust_data.errors import RobustDataError

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
    RobustDataError
        For an unknown name, or ``cuda`` on a machine without a CUDA device.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise RobustDataError(
            f"a device in {DEVICES} (or cuda:N)",
            repr(requested),
            "pass `device=auto`",
            options=("device",),
        )
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RobustDataError(
            f"a CUDA device for device={requested!r}",
            "none on this machine",
            "pass `device=auto` or `device=cpu`",
            options=("device",),
        )
    return torch.device(requested)


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (``flags`` in /proc/cpuinfo).

    Empty where there is no such line: another OS, or a CPU that is not x86 (Linux lists an
    ARM CPU's ``Features`` instead).
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def cpu_has_bf16_units(
    flags: Collection[str] | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX or AVX512-BF16) that oneDNN uses.

    A CPU that has them but whose oneDNN kernels are capped below AVX-512
    (``ONEDNN_MAX_CPU_ISA=AVX2``, see :func:`onednn_isa`) runs as an AVX2-only CPU would: no.
    """
    flags = cpu_flags() if flags is None else frozenset(flags)
    return bool({"amx_bf16", "avx512_bf16"} & flags) and onednn_isa(flags, environ) == "avx512"


#: Environment variables that cap the instruction set of oneDNN's CPU kernels, in the order
#: oneDNN reads them (the second is the old name); values as in oneDNN's documentation.
ONEDNN_ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
#: The CPU flags of oneDNN's ``avx512_core`` level, the first one above its AVX2 kernels.
AVX512_CORE_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
#: oneDNN kernel levels, lowest first (``other``: not an x86 CPU, no x86 kernels at all).
ONEDNN_ISAS = ("other", "older", "avx2", "avx512")


def _cpu_isa_level(flags: Collection[str]) -> str:
    """The oneDNN level of a CPU with ``flags`` (/proc/cpuinfo names)."""
    if AVX512_CORE_FLAGS <= set(flags):
        return "avx512"
    return "avx2" if "avx2" in flags else "older"


def _aten_isa_level() -> str:
    """The level from ATen's own CPU detection, where /proc/cpuinfo lists no flags."""
    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i386", "i686"):
        return "other"
    capability = torch.backends.cpu.get_cpu_capability()
    return {"AVX512": "avx512", "AVX2": "avx2"}.get(capability, "older")


def _isa_cap(value: str) -> str:
    """The level an ``ONEDNN_MAX_CPU_ISA`` value caps oneDNN at (``avx512``: no cap below it)."""
    value = value.strip().upper()
    if value.startswith("AVX2"):  # AVX2, AVX2_VNNI, AVX2_VNNI_2
        return "avx2"
    if value in ("SSE41", "AVX"):
        return "older"
    return "avx512"  # AVX512_*, AVX10_*, DEFAULT, or a value oneDNN ignores


def onednn_isa(
    flags: Collection[str] | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The level of the oneDNN CPU kernels this process runs.

    oneDNN (PyTorch's CPU convolutions) picks its JIT kernels by the best instruction set of
    the CPU, capped by ``ONEDNN_MAX_CPU_ISA`` (or its old name ``DNNL_MAX_CPU_ISA``) as it was
    when oneDNN first ran. PyTorch does not expose oneDNN's choice (``dnnl_get_effective_cpu_isa``
    is not exported), so it is worked out the same way: the CPU's flags, capped by the
    variable. ATen's own ``torch.backends.cpu.get_cpu_capability()`` is not it: it follows
    ``ATEN_CPU_CAPABILITY``, which oneDNN ignores (``ATEN_CPU_CAPABILITY=avx2`` alone keeps
    oneDNN on AVX-512). It is the fallback only where /proc/cpuinfo lists no flags (macOS,
    Windows); there a CPU that is not x86 is ``other``. The variable is read now: one changed
    after oneDNN first ran is not seen by oneDNN, but is by this function.

    Parameters
    ----------
    flags : collection of str, optional
        CPU flags (/proc/cpuinfo names); default: this CPU's.
    environ : mapping, optional
        The environment; default ``os.environ``.

    Returns
    -------
    str
        ``avx512`` (AVX-512 F, BW, VL and DQ: oneDNN's ``avx512_core`` kernels or better),
        ``avx2`` (its AVX2 kernels: AVX2 without those, or capped at ``AVX2``,
        ``AVX2_VNNI``, ``AVX2_VNNI_2``), ``older`` (AVX or SSE4.1 kernels) or ``other``
        (not an x86 CPU).
    """
    flags = cpu_flags() if flags is None else flags
    environ = os.environ if environ is None else environ
    level = _cpu_isa_level(flags) if flags else _aten_isa_level()
    value = next((environ[name] for name in ONEDNN_ISA_VARIABLES if environ.get(name)), "")
    return min(level, _isa_cap(value), key=ONEDNN_ISAS.index)


def trainable_1x1_convolutions(model: nn.Module) -> list[nn.Module]:
    """The convolutions of ``model`` with a 1x1 (1, 1x1x1) kernel whose weight trains."""
    convolutions = (
        nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d
    )  # fmt: skip
    return [
        module
        for module in model.modules()
        if isinstance(module, convolutions)
        and all(size == 1 for size in module.kernel_size)
        and module.weight.requires_grad
    ]


def onednn_faulty_for(model: nn.Module, device: torch.device) -> bool:
    """Whether training ``model`` on ``device`` would run oneDNN's faulty AVX2 kernel.

    oneDNN's weight gradient of a 1x1 convolution on its AVX2 level
    (``jit_avx2_1x1_convolution_bwd_weights_t``, oneDNN 3.12 in torch 2.14.1) hangs, crashes
    or corrupts the heap (silently wrong weights where it does not crash): a ResNet's 1x1
    shortcut hit it within three steps on an AVX2 CPU without AVX-512. True on the CPU, with
    oneDNN built in, at that level (:func:`onednn_isa`), for a model with a trainable 1x1
    convolution. Its other kernels there (3x3 convolutions, the 1x1 forward and input
    gradient) train correctly.
    """
    return (
        device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and onednn_isa() == "avx2"
        and bool(trainable_1x1_convolutions(model))
    )


def _plain_1x1(module: nn.Module) -> TypeGuard[nn.Conv2d]:
    """A 2-D 1x1 convolution without padding or groups: a matrix product over channels."""
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (1, 1)
        and module.padding == (0, 0)
        and module.groups == 1
        and "forward" not in vars(module)
    )


def pointwise_conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a 1x1 ``Conv2d`` without padding or groups, as a matrix product.

    The stride picks pixels; each output pixel is the weight matrix times the input's channels.
    Its gradients are matrix products too, so no convolution kernel runs, forward or backward.
    """
    rows, cols = conv.stride
    pixels = x[:, :, ::rows, ::cols].permute(0, 2, 3, 1)  # N, H, W, C_in
    out = torch.matmul(pixels, conv.weight.flatten(1).t()).permute(0, 3, 1, 2)
    return out if conv.bias is None else out + conv.bias[:, None, None]


class _OnednnSwitch:
    """Turns oneDNN off while at least one training needs it off, back as it was after."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self.was_enabled = True

    # torch._C's getter and setter are what ``torch.backends.mkldnn.enabled`` reads and sets
    # (that property is typed as a descriptor, so assigning it does not type-check).
    def acquire(self) -> None:
        with self.lock:
            if self.holders == 0:
                self.was_enabled = torch._C._get_mkldnn_enabled()
                torch._C._set_mkldnn_enabled(False)
            self.holders += 1

    def release(self) -> None:
        with self.lock:
            self.holders -= 1
            if self.holders == 0:
                torch._C._set_mkldnn_enabled(self.was_enabled)


_ONEDNN_SWITCH = _OnednnSwitch()


@contextmanager
def onednn_training_guard(model: nn.Module, device: torch.device) -> Iterator[str]:
    """A context to train ``model`` in that keeps it off oneDNN's faulty AVX2 kernel.

    Where :func:`onednn_faulty_for` holds, the model's trainable 1x1 convolutions run as
    matrix products (:func:`pointwise_conv2d`, their ``forward`` replaced for the context and
    restored after), so no oneDNN 1x1 weight gradient runs while every other layer keeps
    oneDNN. A model with a 1x1 convolution that is not a plain ``Conv2d`` (padded, grouped,
    1-D, 3-D, transposed) trains with oneDNN off instead (``torch.backends.mkldnn.enabled``,
    process-wide: off while any such training in any thread runs, then back as it was), 2-3x
    slower. bench/RESULTS.md has the costs. Elsewhere nothing changes.

    Yields
    ------
    str
        ``""`` (nothing changed), ``"matmul"`` (1x1 convolutions as matrix products) or
        ``"onednn off"``.
    """
    if not onednn_faulty_for(model, device):
        yield ""
        return
    convolutions = trainable_1x1_convolutions(model)
    plain = [conv for conv in convolutions if _plain_1x1(conv)]
    if len(plain) < len(convolutions):
        _ONEDNN_SWITCH.acquire()
        try:
            yield "onednn off"
        finally:
            _ONEDNN_SWITCH.release()
        return
    for conv in plain:
        conv.forward = partial(pointwise_conv2d, conv)  # type: ignore[method-assign]
    try:
        yield "matmul"
    finally:
        for conv in plain:
            del conv.forward


def resolve_precision(requested: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``requested`` on ``device``.

    ``auto`` picks bf16 autocast where the hardware has bf16 matrix units (CUDA devices that
    support bf16, CPUs with AMX or AVX512-BF16) and fp32 otherwise.

    Raises
    ------
    RobustDataError
        For a name outside ``auto``, ``fp32``, ``bf16``.
    """
    if requested not in PRECISIONS:
        raise RobustDataError(
            f"a precision in {PRECISIONS}",
            repr(requested),
            "pass `precision=auto`",
            options=("precision",),
        )
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
    return trim_heap()


def trim_heap() -> bool:
    """Hand the heap's free memory back to the operating system now (glibc ``malloc_trim``).

    For a step that frees much heap memory and goes on working: :func:`tune_allocator` keeps
    up to 1 GB of freed heap, and mining's thousands of small per-batch arrays, freed once
    copied into one array, would otherwise stay resident under the training that follows.

    Returns
    -------
    bool
        Whether the heap could be trimmed (False where the C library is not glibc).
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
