"""``--model`` / ``--arch`` on curate and score-model: checked up front, one line, no run.

No Dagster run here: curate's run plan (the run config it would launch) is read, and its
refusals happen before anything is written; score-model trains a factory in memory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pipelines.cli import main
from pipelines.cli.commands import run_plan
from pipelines.cli.parser import build_parser
from robust_data.ingest.build import ingest
from robust_data.store.store import Store
from tests.scoring.test_own_model import FACTORIES, MODULE


def _files(home: Path) -> set[Path]:
    return set(home.rglob("*"))


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_model_flags_are_checked_before_anything_runs(
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / f"{MODULE}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(64, 10))), "net.pt")
    capsys.readouterr()  # torch.jit's deprecation warnings
    before = _files(isolated_home)
    assert _refused(["curate", "--model", "net.pt", "--arch", "resnet"], capsys) == (
        "robust-data curate: error: expected --model or --arch, not both; found model "
        "'net.pt' and arch 'resnet'; drop one (--arch names a built-in, --model your own)\n"
    )
    assert "found 'vgg'" in _refused(["curate", "--arch", "vgg"], capsys)
    assert "found no such file" in _refused(["curate", "--model", "gone.pt"], capsys)
    assert "does not import" in _refused(["curate", "--model", "no_pkg.x:make"], capsys)
    assert "not both" in _refused(
        ["score-model", "digits", "--model", "a:b", "--arch", "resnet"], capsys
    )
    assert _files(isolated_home) == before  # nothing written

    store = Store.open(isolated_home)

    def ops(*flags: str) -> dict:
        args = build_parser().parse_args(["curate", "--dataset", "digits", *flags])
        return run_plan(store, args, "digits", "curation_job").ops

    assert "reference_model" not in ops()
    assert ops("--arch", "resnet")["reference_model"] == {"arch": "resnet"}
    assert ops("--model", "net.pt")["reference_model"] == {"model": str(tmp_path / "net.pt")}
    assert ops("--model", f"{MODULE}:mlp")["reference_model"] == {"model": f"{MODULE}:mlp"}

    # with the samples stored, the model also runs on two of them first
    store.write(ingest("digits", name="digits").samples, "raw_samples", "digits")
    assert "found (3, 11)" in _refused(
        ["curate", "--dataset", "digits", "--model", f"{MODULE}:too_wide"], capsys
    )
    assert (
        main(
            [
                "score-model",
                "digits",
                "--model",
                f"{MODULE}:mlp",
                "--limit",
                "8",
                "--max-steps",
                "5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "digits test: 8 images, model (trained in memory)" in out
    assert main(["score-model", "digits", "--model", "net.pt", "--limit", "8"]) == 0
    assert "model net.pt (sha256" in capsys.readouterr().out
