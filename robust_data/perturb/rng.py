"""Counter-based random numbers keyed by (seed, sample, step, index).

Every number is a pure function of its key, computed with 32-bit integer hashing done in
int64 tensors so that the result is bit-identical on CPU and CUDA, whatever the batch size
or the order of samples. No global RNG state is read or written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2**32 for x in [0, 2**32), without int64 overflow."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finalizer: a bijection on [0, 2**32) with full avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def sample_keys(sample_ids: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
    """Stable 32-bit keys of sample ids.

    Returns
    -------
    torch.Tensor
        (N,) int64 in [0, 2**32): the first 4 bytes of sha256(sample_id), big-endian.
    """
    keys = [int.from_bytes(hashlib.sha256(s.encode()).digest()[:4], "big") for s in sample_ids]
    return torch.tensor(keys, dtype=torch.int64, device=device)


def uniform(
    seed: int, keys: torch.Tensor, steps: torch.Tensor, count: int, start: int = 0
) -> torch.Tensor:
    """Uniform numbers in [0, 1) for every (sample, step, index).

    Parameters
    ----------
    seed : int
        Any integer; reduced mod 2**32.
    keys : torch.Tensor
        (N,) int64 sample keys from :func:`sample_keys`.
    steps : torch.Tensor
        (N, S) or (S,) int64 try numbers (1-based in RPR), on the device of ``keys``.
    count : int
        Numbers per (sample, step).
    start : int
        Index of the first number: ``uniform(..., count=a + b)[..., a:]`` equals
        ``uniform(..., count=b, start=a)``, so a consumer can draw in pieces.

    Returns
    -------
    torch.Tensor
        (N, S, count) float32 in [0, 1), with 24 random bits each, on ``keys.device``.
    """
    steps = steps.to(device=keys.device, dtype=torch.int64)
    if steps.dim() == 1:
        steps = steps.unsqueeze(0).expand(keys.shape[0], -1)
    state = _mix32((keys & _MASK32) ^ _mix32(torch.tensor(seed & _MASK32, device=keys.device)))
    state = _mix32(state[:, None] ^ _mul32(steps & _MASK32, _GOLDEN))  # (N, S)
    index = torch.arange(start, start + count, device=keys.device, dtype=torch.int64)
    # The bulk (N, S, count) work runs in int32, whose multiply wraps mod 2**32 on CPU and
    # CUDA, in place: bit-identical to the int64 formula and about 6x faster (tested).
    bits = _to_int32(state)[:, :, None] ^ _to_int32(_mul32(index + 1, 0x27D4EB2F))
    _mix32_int32_(_mix32_int32_(bits))
    return ((bits >> 8) & 0xFFFFFF).to(torch.float32) / float(1 << 24)


def _signed32(constant: int) -> int:
    return constant - (1 << 32) if constant >= 1 << 31 else constant


def _to_int32(x: torch.Tensor) -> torch.Tensor:
    """int64 values in [0, 2**32) as the int32 with the same 32 bits."""
    return torch.where(x >= 1 << 31, x - (1 << 32), x).to(torch.int32)


def _mix32_int32_(x: torch.Tensor) -> torch.Tensor:
    """:func:`_mix32` on int32 bit patterns, in place (logical shifts by masking)."""
    x ^= (x >> 16) & 0xFFFF
    x *= _signed32(0x85EBCA6B)
    x ^= (x >> 13) & 0x7FFFF
    x *= _signed32(0xC2B2AE35)
    x ^= (x >> 16) & 0xFFFF
    return x


def purpose_key(name: str) -> int:
    """A 32-bit key for one use of the noise (a corruption, an augmentation, an attack).

    XOR it into the sample keys so that each use draws its own numbers. (The ``corruption:``
    prefix is part of the formula for every use, so existing outputs stay the same.)
    """
    return int.from_bytes(hashlib.sha256(f"corruption:{name}".encode()).digest()[:4], "big")


class Stream:
    """Uniform numbers for M keyed items, drawn in consecutive pieces: fresh numbers per call.

    Parameters
    ----------
    seed : int
    keys : torch.Tensor
        (M,) int64 keys.
    steps : torch.Tensor
        (M,) int64 step of each item (RPR's try number; 0 otherwise).
    """

    def __init__(self, seed: int, keys: torch.Tensor, steps: torch.Tensor):
        self.seed, self.keys, self.steps, self.offset = seed, keys, steps[:, None], 0

    def __call__(self, count: int) -> torch.Tensor:
        """(M, count) float32 in [0, 1)."""
        out = uniform(self.seed, self.keys, self.steps, count, start=self.offset)[:, 0]
        self.offset += count
        return out
