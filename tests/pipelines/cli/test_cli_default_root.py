"""``robust-data ingest fashion-mnist`` with no --root, and what ``robust-data datasets`` says."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from robust_data.ingest.sources import SOURCES
from robust_data.ingest.sources.base import DefaultRoot
from robust_data.ingest.sources.idx import FASHION_DEFAULT, FASHION_NAMES, idx_source
from robust_data.store.store import Store
from tests.ingest.test_default_root import INSTALL, make_debian_folder

ENV = FASHION_DEFAULT.env


def datasets_line(capsys: pytest.CaptureFixture[str], name: str) -> str:
    """The line ``robust-data datasets`` prints for ``name``."""
    assert main(["datasets"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return next(line for line in lines if line.split()[0] == name)


def without_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's fashion-mnist as on a machine without the Debian package."""
    monkeypatch.delenv(ENV, raising=False)
    absent = DefaultRoot(env=ENV, path=tmp_path / "not-installed", install=INSTALL)
    source = idx_source(
        "fashion-mnist", "FashionMNIST", FASHION_NAMES, "Fashion-MNIST", default=absent
    )
    monkeypatch.setitem(SOURCES, "fashion-mnist", source)


def test_ingest_finds_the_files_without_a_root(
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = make_debian_folder(tmp_path / "fashion", n_train=20, n_test=10)
    monkeypatch.setenv(ENV, str(folder))
    line = datasets_line(capsys, "fashion-mnist")
    assert line.split()[1] == "yes" and str(folder) in line
    assert main(["ingest", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert "30 rows, 10 classes" in out and "train 20" in out and "test 10" in out
    registration = Store.open(isolated_home).lookup("fashion-mnist")
    assert registration.root is None  # the default is found again at each run


def test_without_the_package_both_commands_say_how_to_install_it(
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    without_package(tmp_path, monkeypatch)
    line = datasets_line(capsys, "fashion-mnist")
    assert line.split()[1] == "no" and INSTALL in line and "--root DIR" in line
    assert main(["ingest", "fashion-mnist"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"'{INSTALL}' (as root), or pass --root DIR" in err
    assert not Store.open(isolated_home).table_path("raw_samples", "fashion-mnist").exists()
    assert INSTALL not in datasets_line(capsys, "mnist")  # no default: --root as before
