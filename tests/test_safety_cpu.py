"""No crash and no hang when training on a CPU without AVX-512 (oneDNN's AVX2 kernels).

There oneDNN's weight gradient of a 1x1 convolution (``jit_avx2_1x1_convolution_bwd_weights_t``)
hung or corrupted the heap: the ResNet's shortcut hit it within three steps. Each run below is
a fresh process on that path (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``: emulated on
an AVX-512 machine, native on an AVX2 one) with a timeout: idle, on one thread, and with every
core busy. The product routes the ResNet's training around the kernel
(``robust_data.scoring.device.onednn_training_guard``); these tests hold it to that.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from robust_data.scoring import device
from robust_data.scoring.models import ModelOptions, build_model, predict_logits
from robust_data.scoring.rpr.engine import RprOptions, score_rpr
from robust_data.scoring.weights import load_model

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
#: A run takes 4-8 s (most of it importing torch; 3x that on a loaded machine); a hung one is
#: killed at this.
RUN_TIMEOUT_S = 120
RPR = RprOptions(device="cpu", precision="fp32", max_steps=20, compile="off")

#: Trains one architecture (argv[1]) the way the product does and reports on stdout: the kernel
#: oneDNN runs a 1x1 convolution with (its verbose lines), then one JSON line.
CHILD = """
import json, sys
import numpy as np, torch
from robust_data.scoring.models import ModelOptions, build_model
from robust_data.scoring.weights import save_model
from robust_data.scoring.training import train_model
from robust_data.scoring.rpr.engine import RprOptions, score_rpr

arch, data, weights = sys.argv[1], np.load(sys.argv[2]), sys.argv[3]
images, labels = data["images"], data["labels"]
conv = torch.nn.Conv2d(4, 8, 1, 2, bias=False)  # strided: oneDNN's on any thread count
probe = torch.zeros(2, 4, 8, 8)
with torch.no_grad(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
    conv(probe)

def loss(model):
    model.train()  # batch statistics: comparable before and after a few steps
    with torch.no_grad():
        logits = model(torch.from_numpy(images))
    return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)))

config = ModelOptions(arch=arch, width=4, epochs=3, batch_size=8, lr=0.01, precision="fp32")
initial = build_model(config, (3, 32, 32), 4)
trained = train_model(config, images, labels, 4, device="cpu", progress=False, evaluate=False)
from robust_data.scoring.device import onednn_faulty_for, onednn_isa  # after training

report = {
    "isa": onednn_isa(),
    "guarded": onednn_faulty_for(initial, torch.device("cpu")),
    "onednn_after": torch.backends.mkldnn.enabled,
    "finite": all(bool(torch.isfinite(p).all()) for p in trained.model.state_dict().values()),
    "loss_before": loss(initial),
    "loss_after": loss(trained.model),
}
if arch == "resnet":
    trained.model.eval()
    save_model(trained, weights)
    options = RprOptions(device="cpu", precision="fp32", max_steps=20, compile="off")
    ids = [str(i) for i in range(8)]
    result = score_rpr(trained.model, images[:8], labels[:8], ids, 4, options, progress=False)
    report["steps_to_flip"] = np.nan_to_num(result.steps_to_flip.astype(float), nan=-1).tolist()
    report["clean_pred"] = result.clean_pred.tolist()
print(json.dumps(report))
"""


def learnable_images() -> tuple[np.ndarray, np.ndarray]:
    """64 seeded RGB 32x32 images of 4 classes, each a bright quadrant: a few steps learn it."""
    rng = np.random.default_rng(0)
    images = rng.random((64, 3, 32, 32), dtype=np.float32) * 0.5
    labels = np.arange(64) % 4
    for k in range(4):
        row, col = divmod(k, 2)
        images[labels == k, :, 16 * row : 16 * row + 16, 16 * col : 16 * col + 16] += 0.5
    return images, labels


def kernel_isa(verbose: str) -> str:
    """The level of the kernel oneDNN's verbose lines show for a forward convolution.

    Its implementation names end in the instruction set (``brgconv_1x1:avx512_core``,
    ``brgconv_1x1:avx2``, ``jit_1x1:avx``); mapped to :func:`onednn_isa`'s levels.
    """
    lines = [line.split(",") for line in verbose.splitlines() if line.startswith("onednn_verbose")]
    names = [fields[6] for fields in lines if len(fields) > 7 and fields[5] == "convolution"]
    assert names, f"expected oneDNN's verbose line of a convolution; found {verbose[-500:]!r}"
    isa = names[0].rpartition(":")[2]
    if isa.startswith(("avx512", "avx10", "amx")):
        return "avx512"
    return "avx2" if isa.startswith("avx2") else "older"


#: Spins until its parent is gone (so a test killed outright leaves no spinner behind).
SPINNER = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    sum(range(10**5))"


@pytest.fixture
def busy_cores() -> Iterator[int]:
    """A busy-looping process at nice 19 on every core this process may run on."""
    cores = len(os.sched_getaffinity(0))
    spinners = [
        subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", SPINNER]) for _ in range(cores)
    ]
    try:
        yield cores
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def train_in_fresh_process(
    arch: str, load: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[dict, str]:
    """Run CHILD for ``arch`` under ``load`` on the AVX2 path: its report and stdout.

    Fails saying how the process ended when it hung (killed at RUN_TIMEOUT_S) or crashed.
    """
    images, labels = learnable_images()
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    env = {**os.environ, **AVX2_ENV}
    if load == "one thread":
        env["OMP_NUM_THREADS"] = "1"
    if load == "every core busy":
        request.getfixturevalue("busy_cores")
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, arch, str(tmp_path / "data.npz"), str(tmp_path / "m.pt")],
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"training {arch} ({load}) hung: no exit in {RUN_TIMEOUT_S} s")
    if done.returncode != 0:
        code = done.returncode
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        pytest.fail(f"training {arch} ({load}) ended with {how}: {done.stderr[-1500:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report, done.stdout


@pytest.mark.parametrize("load", ["idle", "one thread", "every core busy"])
@pytest.mark.parametrize("arch", ["resnet", "simple_cnn"])
def test_training_on_the_avx2_path_finishes_and_learns(
    arch: str, load: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    report, stdout = train_in_fresh_process(arch, load, tmp_path, request)
    # The process's own oneDNN ran its 1x1 convolution at the level the product worked out.
    assert report["isa"] == kernel_isa(stdout)
    # Guarded exactly where the faulty kernel would run: the ResNet on oneDNN's AVX2 level.
    assert report["guarded"] == (arch == "resnet" and report["isa"] == "avx2")
    assert report["onednn_after"] is True  # the switch is back as it was
    assert report["finite"], "a weight or statistic is not finite"
    assert report["loss_after"] < report["loss_before"] - 0.05, report
    if arch == "resnet":
        # RPR on the AVX2 path agrees with this (native) process on the same weights.
        trained, _ = load_model(tmp_path / "m.pt")
        images, labels = learnable_images()
        here = score_rpr(trained.model, images[:8], labels[:8], list(map(str, range(8))), 4, RPR)
        assert report["clean_pred"] == here.clean_pred.tolist()
        assert report["clean_pred"] == predict_logits(trained.model, images[:8]).argmax(1).tolist()
        steps = np.nan_to_num(here.steps_to_flip.astype(float), nan=-1).tolist()
        assert sum(a == b for a, b in zip(report["steps_to_flip"], steps, strict=True)) >= 7


def test_onednn_isa_names_the_kernels_onednn_runs_here(capfd: pytest.CaptureFixture[str]) -> None:
    conv = torch.nn.Conv2d(4, 8, 1, 2, bias=False)  # strided: oneDNN's on any thread count
    probe = torch.zeros(2, 4, 8, 8)
    capfd.readouterr()
    with torch.no_grad(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        conv(probe)
    assert device.onednn_isa() == kernel_isa(capfd.readouterr().out)


AVX512 = {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"}
AVX2_ONLY = {"avx", "avx2", "fma"}  # e.g. AMD EPYC before Zen 4


@pytest.mark.parametrize(
    ("flags", "environ", "level"),
    [
        (AVX512, {}, "avx512"),
        (AVX512, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "avx2"),
        (AVX512, {"ONEDNN_MAX_CPU_ISA": "avx2_vnni"}, "avx2"),
        (AVX512, {"DNNL_MAX_CPU_ISA": "AVX2"}, "avx2"),
        (AVX512, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "DNNL_MAX_CPU_ISA": "AVX2"}, "avx512"),
        (AVX512, {"ONEDNN_MAX_CPU_ISA": "AVX"}, "older"),
        (AVX512, {"ATEN_CPU_CAPABILITY": "avx2"}, "avx512"),  # ATen's, not oneDNN's
        (AVX2_ONLY, {}, "avx2"),
        (AVX2_ONLY, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "avx2"),  # a cap cannot raise
        (AVX2_ONLY, {"ONEDNN_MAX_CPU_ISA": "SSE41"}, "older"),
        (AVX2_ONLY | {"avx512f", "avx512cd"}, {}, "avx2"),  # no BW/VL/DQ: not avx512_core
        ({"sse4_1", "avx"}, {}, "older"),
    ],
)
def test_onednn_isa_is_the_cpu_capped_by_onednns_variable(
    flags: set[str], environ: dict[str, str], level: str
) -> None:
    assert device.onednn_isa(flags, environ) == level


def test_auto_precision_is_fp32_where_onednn_is_capped_below_avx512() -> None:
    # An AVX2-only CPU, and this one run as one (the emulation the README's AVX2 figures use).
    assert device.cpu_has_bf16_units(AVX512, {})
    assert not device.cpu_has_bf16_units(AVX512, {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert not device.cpu_has_bf16_units(AVX2_ONLY, {})
    assert not device.cpu_has_bf16_units(AVX512 - {"avx512_bf16"}, {})  # AVX-512, no bf16


def backward_nodes(tensor: torch.Tensor) -> set[str]:
    """The names of every node in ``tensor``'s backward graph (what its gradient runs)."""
    names, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            todo.extend(next_node for next_node, _ in node.next_functions)
    return names


def test_the_guard_routes_only_trainable_1x1_convolutions_on_avx2_around_onednn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = torch.device("cpu")
    resnet = build_model(ModelOptions(arch="resnet", width=4), (3, 32, 32), 4)
    cnn = build_model(ModelOptions(width=4), (3, 32, 32), 4)
    shortcuts = device.trainable_1x1_convolutions(resnet)
    assert len(shortcuts) == 2 and device.trainable_1x1_convolutions(cnn) == []
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # what this process's oneDNN is told
    if device.onednn_isa() != "avx2":
        pytest.skip(f"this CPU has no AVX2 (oneDNN level {device.onednn_isa()})")
    assert device.onednn_faulty_for(resnet, cpu) and not device.onednn_faulty_for(cnn, cpu)
    assert not device.onednn_faulty_for(resnet, torch.device("cuda"))
    with device.onednn_training_guard(cnn, cpu) as route:
        assert route == "" and torch.backends.mkldnn.enabled
    x = torch.rand(2, 4, 8, 8, requires_grad=True)
    conv = shortcuts[0]  # 4 -> 8 channels, stride 2
    expected = torch.nn.functional.conv2d(x, conv.weight, stride=conv.stride)
    with device.onednn_training_guard(resnet, cpu) as route:
        assert route == "matmul" and torch.backends.mkldnn.enabled  # oneDNN stays on
        out = conv(x)
        assert not any("Convolution" in name for name in backward_nodes(out))
        torch.testing.assert_close(out, expected)
    assert "forward" not in vars(conv)  # the module's own forward again
    # A 1x1 convolution that is no plain matrix product: oneDNN off while any such training
    # runs, back as it was after the last.
    padded = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, padding=1))
    with device.onednn_training_guard(padded, cpu) as route:
        assert route == "onednn off" and not torch.backends.mkldnn.enabled
        with device.onednn_training_guard(padded, cpu):  # a second training at the same time
            pass
        assert not torch.backends.mkldnn.enabled  # still off while the first one runs
    assert torch.backends.mkldnn.enabled
    for module in shortcuts:
        module.weight.requires_grad_(False)
    assert not device.onednn_faulty_for(resnet, cpu)  # a frozen 1x1 kernel needs no gradient
