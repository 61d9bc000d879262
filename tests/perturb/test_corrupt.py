"""Corruptions: the checks torchvision applies to its kernels, plus severity order and RPR use."""

from __future__ import annotations

import itertools

import pytest
import torch

from robust_data.perturb.corrupt import CORRUPTIONS, IMAGENET_C, MNIST_C, corrupt
from robust_data.perturb.schemes import parse_scheme
from robust_data.scoring.rpr.engine import RprOptions, score_rpr, score_rpr_loop

#: No random draw: the output depends on the image only.
DETERMINISTIC = {
    "defocus_blur",
    "zoom_blur",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg",
    "scale",
    "stripe",
    "canny_edges",
}
#: Published tables whose severities are not ordered by pixel change (see their notes).
UNORDERED = {"elastic", "spatter"}
SHAPES = [(1, 28, 28), (3, 32, 32), (1, 17, 11)]


def _images(shape: tuple[int, int, int], n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, *shape, generator=g) * 0.3
    base[:, :, shape[1] // 4 : 3 * shape[1] // 4, shape[2] // 3 : 2 * shape[2] // 3] += (
        0.6  # a bright blob
    )
    return base.clamp(0, 1)


def test_the_two_sets_have_fifteen_each() -> None:
    assert len(MNIST_C) == 15 and len(IMAGENET_C) == 15
    assert set(MNIST_C) | set(IMAGENET_C) == set(CORRUPTIONS)


@pytest.mark.parametrize("shape", SHAPES, ids=["gray28", "rgb32", "odd17x11"])
@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_kernel_contract(name: str, shape: tuple[int, int, int]) -> None:
    x = _images(shape)
    before = x.clone()
    ids = [f"img:{i}" for i in range(len(x))]
    severity = CORRUPTIONS[name].severities
    out = corrupt(x, name, severity, 7, ids)
    assert torch.equal(x, before)  # input not modified
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x)
    single = torch.cat(
        [corrupt(x[i : i + 1], name, severity, 7, ids[i : i + 1]) for i in range(len(x))]
    )
    torch.testing.assert_close(single, out, rtol=0, atol=1e-5)  # batched equals per sample
    order = [2, 0, 3, 1]
    torch.testing.assert_close(
        corrupt(x[order], name, severity, 7, [ids[i] for i in order]), out[order], rtol=0, atol=1e-5
    )
    assert torch.equal(corrupt(x, name, severity, 7, ids), out)  # same seed, same output
    if name not in DETERMINISTIC:
        assert not torch.equal(corrupt(x, name, severity, 8, ids), out)
    doubled = corrupt(x.double(), name, severity, 7, ids)
    assert doubled.dtype == torch.float64


@pytest.mark.parametrize(
    "name", sorted(n for n, c in CORRUPTIONS.items() if c.severities == 5 and n not in UNORDERED)
)
def test_severity_moves_the_image_further(name: str) -> None:
    x = _images((1, 28, 28), n=16)
    ids = [f"m:{i}" for i in range(16)]
    change = [float((corrupt(x, name, s, 0, ids) - x).abs().mean()) for s in range(1, 6)]
    assert change[4] > change[0], change
    for low, high in itertools.pairwise(change):
        assert high >= 0.85 * low, change


def test_bad_calls_are_value_errors() -> None:
    x = _images((1, 28, 28))
    ids = [str(i) for i in range(4)]
    with pytest.raises(ValueError, match="expected a corruption in"):
        corrupt(x, "rain", 1, 0, ids)
    with pytest.raises(ValueError, match=r"expected severity 1\.\.5 for fog; found 6"):
        corrupt(x, "fog", 6, 0, ids)
    with pytest.raises(ValueError, match="expected images of at least 8x8; found 6x6"):
        corrupt(torch.zeros(1, 1, 6, 6), "fog", 1, 0, ["a"])
    with pytest.raises(ValueError, match=r"expected images \(N, 1 or 3, H, W\)"):
        corrupt(torch.zeros(1, 2, 9, 9), "fog", 1, 0, ["a"])


def test_corruptions_are_rpr_schemes() -> None:
    scheme = parse_scheme("fog(severity=2)")
    assert scheme.spec == "fog(severity=2)" and parse_scheme("fog").spec == "fog(severity=3)"
    assert parse_scheme("canny_edges").spec == "canny_edges(severity=1)"
    with pytest.raises(
        ValueError, match=r"expected fog\(severity=1..5\); found 'fog\(severity=9\)'"
    ):
        parse_scheme("fog(severity=9)")
    n = 12
    g = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(3, 256, generator=g))
        model[1].bias.zero_()
    images = torch.rand(n, 1, 16, 16, generator=g)
    labels = model(images).argmax(1)
    ids = [f"r:{i}" for i in range(n)]
    options = RprOptions(
        scheme="gaussian_noise(severity=5)", max_steps=15, precision="fp32", device="cpu"
    )
    result = score_rpr(model, images, labels, ids, 3, options, progress=False)
    assert result.scheme == "gaussian_noise(severity=5)"
    loop = [
        score_rpr_loop(model, images[i], int(labels[i]), ids[i], options.scheme, 0, 15)[0]
        for i in range(n)
    ]
    assert result.steps_to_flip.tolist() == loop
    assert 0 < result.robust.sum() < n


@pytest.mark.slow
def test_gallery_command_draws_every_corruption(tmp_path) -> None:
    from PIL import Image

    from pipelines.cli import main

    assert main(["gallery", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "README.md").read_text()
    assert all(f"`{name}`" in page for name in CORRUPTIONS)
    for name in ("mnist.png", "rgb32.png"):
        with Image.open(tmp_path / name) as image:
            assert image.height > 20 * image.width / 6  # one row per corruption, six columns
