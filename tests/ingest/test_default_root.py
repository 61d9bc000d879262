"""Fashion-MNIST without a root: Debian's folder, the variable that overrides it, the errors.

Tiny IDX files laid out as Debian's ``dataset-fashion-mnist`` ships them (four gzipped files
in one flat folder) stand in for the package; one slow test reads the real files.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from robust_data import DatasetError, ingest
from robust_data.ingest.sources import SOURCES, resolve_source
from robust_data.ingest.sources.base import DefaultRoot, LoadOptions
from robust_data.ingest.sources.idx import FASHION_DEFAULT, FASHION_NAMES, idx_source
from tests.fixtures import write_idx

ENV = FASHION_DEFAULT.env
INSTALL = "apt-get install dataset-fashion-mnist"


def make_debian_folder(folder: Path, n_train: int = 20, n_test: int = 10) -> Path:
    """The package's layout: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` in ``folder``."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10, True)
    return folder


def test_the_default_root_is_debians_folder() -> None:
    assert FASHION_DEFAULT.path == Path("/usr/share/datasets/fashion-mnist")
    assert FASHION_DEFAULT.install == INSTALL
    assert SOURCES["fashion-mnist"].default is FASHION_DEFAULT
    assert SOURCES["mnist"].default is None and SOURCES["kmnist"].default is None


def test_no_root_reads_the_folder_the_variable_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_debian_folder(tmp_path / "fashion")
    monkeypatch.setenv(ENV, str(folder))
    result = ingest("fashion-mnist")
    samples = result.samples
    assert Counter(samples.column("split").to_pylist()) == {"train": 20, "test": 10}
    assert samples.column("label_name")[6].as_py() == "Shirt"
    assert samples.column("sample_id")[0].as_py() == "fashion-mnist:train:0"
    assert resolve_source("fashion-mnist").root is None  # resolved when read, not registered
    available, why = SOURCES["fashion-mnist"].availability(None)
    assert available and str(folder) in why and ENV in why


def test_an_explicit_root_wins_over_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(make_debian_folder(tmp_path / "default", 20, 10)))
    explicit = make_debian_folder(tmp_path / "explicit", n_train=30, n_test=0)
    samples = ingest("fashion-mnist", root=str(explicit)).samples
    assert samples.num_rows == 30  # train only: split 80/20


def test_a_variable_naming_no_files_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "missing"))
    with pytest.raises(DatasetError) as info:
        ingest("fashion-mnist")
    message = str(info.value)
    assert f"${ENV}=" in message and "is not a folder" in message and "\n" not in message
    assert info.value.options == ("root",)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(ENV, str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="no complete split") as info:
        ingest("fashion-mnist")
    assert f"point ${ENV} at the dataset folder" in str(info.value)
    available, why = SOURCES["fashion-mnist"].availability(None)
    assert not available and "train-images-idx3-ubyte" in why


def test_without_the_package_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    absent = DefaultRoot(env=ENV, path=tmp_path / "not-installed", install=INSTALL)
    source = idx_source("fashion-mnist", "FashionMNIST", FASHION_NAMES, "test", default=absent)
    with pytest.raises(DatasetError) as info:
        source.load(None, LoadOptions())
    message = str(info.value)
    assert f"'{INSTALL}' (as root), or pass `root=DIR`" in message
    assert "not installed" in message and "\n" not in message
    assert info.value.options == ("root",)
    available, why = source.availability(None)
    assert not available and INSTALL in why and "t10k-images-idx3-ubyte" in why
    installed = DefaultRoot(env=ENV, path=make_debian_folder(tmp_path / "pkg"), install=INSTALL)
    assert installed.locate() == (installed.path, str(installed.path))
    monkeypatch.setenv(ENV, "  ")  # blank: as if unset
    assert installed.locate()[0] == installed.path


def test_sources_without_a_default_still_need_a_root() -> None:
    with pytest.raises(DatasetError, match="pass `root=DIR`"):
        ingest("kmnist")
    available, why = SOURCES["mnist"].availability(None)
    assert not available and why.startswith("needs `root=DIR`")


@pytest.mark.slow
@pytest.mark.timeout(1500)  # may apt-get update and install the package first (600 s each)
def test_the_debian_package_reads_as_60000_train_and_10000_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.pipelines.test_postgres_instance import apt_install

    monkeypatch.delenv(ENV, raising=False)
    if not FASHION_DEFAULT.path.is_dir():
        installed = apt_install("dataset-fashion-mnist")
        if not FASHION_DEFAULT.path.is_dir():
            pytest.skip(f"no {FASHION_DEFAULT.path}: {installed}")
    data = SOURCES["fashion-mnist"].load(None, LoadOptions())  # decoded, no PNG encoding
    assert data.params["root"] == str(FASHION_DEFAULT.path)
    assert np.asarray(data.pixels).shape == (70_000, 28, 28, 1)
    splits = np.asarray(data.splits)
    for split, per_class in (("train", 6_000), ("test", 1_000)):
        assert Counter(data.labels[splits == split].tolist()) == dict.fromkeys(range(10), per_class)
    assert data.label_names == FASHION_NAMES
