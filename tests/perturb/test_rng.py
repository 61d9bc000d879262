"""Counter-based noise and perturbation schemes: keyed, order- and batch-independent, in range."""

from __future__ import annotations

import math

import pytest
import torch

from robust_data.perturb.rng import sample_keys, uniform
from robust_data.perturb.schemes import parse_scheme

IDS = [f"digits:train:{i}" for i in range(6)]


def test_uniform_is_a_function_of_the_key_only() -> None:
    keys = sample_keys(IDS)
    steps = torch.arange(1, 9)
    full = uniform(7, keys, steps, 5)  # (6, 8, 5)
    assert full.shape == (6, 8, 5) and full.dtype == torch.float32
    assert float(full.min()) >= 0.0 and float(full.max()) < 1.0
    order = torch.tensor([4, 0, 5, 2, 1, 3])
    torch.testing.assert_close(uniform(7, keys[order], steps, 5), full[order], rtol=0, atol=0)
    torch.testing.assert_close(uniform(7, keys[2:3], steps[3:6], 5), full[2:3, 3:6], rtol=0, atol=0)
    assert not torch.equal(uniform(8, keys, steps, 5), full)


def test_uniform_is_close_to_uniform() -> None:
    u = uniform(0, sample_keys([str(i) for i in range(200)]), torch.arange(1, 51), 10).flatten()
    assert abs(float(u.mean()) - 0.5) < 0.01
    histogram = torch.histc(u, bins=10, min=0, max=1) / u.numel()
    assert float((histogram - 0.1).abs().max()) < 0.01


def test_sample_keys_are_stable() -> None:
    assert sample_keys(["a"]).tolist() == [int.from_bytes(bytes.fromhex("ca978112"), "big")]


@pytest.mark.parametrize(
    "spec", ["pixels", "pixels(k=5)", "gaussian(sigma=0.3)", "salt_pepper(p=0.1)"]
)
def test_schemes_keep_range_shape_and_originals(spec: str) -> None:
    torch.manual_seed(0)  # test data only
    images = torch.rand(3, 1, 17, 11)
    before = images.clone()
    scheme = parse_scheme(spec)
    out = scheme.apply(images, 3, sample_keys(IDS[:3]), torch.arange(1, 5))
    assert out.shape == (3, 4, 1, 17, 11)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    torch.testing.assert_close(images, before, rtol=0, atol=0)
    assert parse_scheme(scheme.spec) == scheme
    again = scheme.apply(images[1:2], 3, sample_keys(IDS[1:2]), torch.arange(3, 5))
    torch.testing.assert_close(again, out[1:2, 2:4], rtol=0, atol=0)


def test_pixels_alters_at_most_sqrt_hw_positions() -> None:
    images = torch.full((2, 3, 28, 28), 0.5)
    out = parse_scheme("pixels").apply(images, 0, sample_keys(IDS[:2]), torch.arange(1, 21))
    changed = (out != 0.5).any(dim=2).flatten(2).sum(-1)  # positions changed per (sample, try)
    assert int(changed.max()) <= math.isqrt(28 * 28) == 28
    assert int(changed.min()) >= 20  # 28 draws with replacement over 784 positions


def test_bad_specs_are_one_line_value_errors() -> None:
    for bad in [
        "rain",
        "fog(severity=7)",
        "gaussian",
        "gaussian(sigma=-1)",
        "pixels(k=0)",
        "salt_pepper(p=2)",
        "pixels(q=3)",
    ]:
        with pytest.raises(ValueError, match="expected") as info:
            parse_scheme(bad)
        assert "\n" not in str(info.value)


def test_int32_fast_path_equals_the_int64_formula() -> None:
    from robust_data.perturb.rng import _mix32, _mul32

    keys = sample_keys([f"k{i}" for i in range(50)])
    steps = torch.arange(1, 4)
    fast = uniform(11, keys, steps, 300, start=7)
    state = _mix32((keys & 0xFFFFFFFF) ^ _mix32(torch.tensor(11)))
    state = _mix32(state[:, None] ^ _mul32(steps[None].expand(50, -1) & 0xFFFFFFFF, 0x9E3779B9))
    index = torch.arange(7, 307, dtype=torch.int64)
    bits = _mix32(_mix32(state[:, :, None] ^ _mul32(index + 1, 0x27D4EB2F)))
    assert torch.equal(fast, (bits >> 8).to(torch.float32) / float(1 << 24))


def test_repeated_pixel_positions_get_the_last_draw_on_every_device() -> None:
    """scatter_ keeps an unspecified value at a repeated index on CUDA (found on an H100:
    perturbed images differed from the CPU's); the scheme must not depend on that."""
    scheme = parse_scheme("pixels(k=20)")  # 20 draws on 8x8 = 64 positions: repeats are common
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    keys = sample_keys([f"s{i}" for i in range(6)])
    steps = torch.arange(1, 41)
    perturbed = scheme.apply(images, 3, keys, steps)
    u = uniform(3, keys, steps, 20 * 2).view(6, 40, 2, 20)
    repeats = 0
    for i in range(6):
        for t in range(40):
            expected = images[i, 0].flatten().clone()
            positions = (u[i, t, 0] * 64).long().clamp_max(63).tolist()
            repeats += len(positions) - len(set(positions))
            for j, position in enumerate(positions):  # one draw after another: the last wins
                expected[position] = u[i, t, 1, j]
            assert torch.equal(perturbed[i, t, 0].flatten(), expected)
    assert repeats > 50  # the case under test did occur
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices[1:]:
        on_device = scheme.apply(images.to(device), 3, keys.to(device), steps.to(device))
        assert torch.equal(on_device.cpu(), perturbed)
