"""Shared fixtures: every test gets its own home folder and DAGSTER_HOME under tmp_path."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.home import prepare_home
from robust_data.store.store import Store

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars off in test logs


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh robust-data home; the environment variables are restored after the test."""
    home = tmp_path / "home"
    monkeypatch.setenv("ROBUST_DATA_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.delenv("ROBUST_DATA_STORE", raising=False)
    prepare_home(Store.open(home))
    return home


@dataclass(frozen=True)
class CuratedHome:
    """A home where ``robust-data curate --dataset digits --seeds 2`` ran, and what it printed."""

    home: Path
    out: str


@pytest.fixture(scope="session")
def curated_digits(tmp_path_factory: pytest.TempPathFactory) -> CuratedHome:
    """The main job on digits, run once per session (about 100 s on 2 cores).

    Tests that use it only read the home (queries, exports to their own folders, a
    webserver); anything that changes it needs its own home.
    """
    from pipelines.cli import main

    home = tmp_path_factory.mktemp("curated-digits") / "home"
    buffer = io.StringIO()
    # The command sets the home's environment for its run only (pipelines.home.scoped_environ).
    with contextlib.redirect_stdout(buffer):
        code = main(["curate", "--dataset", "digits", "--home", str(home), "--seeds", "2"])
    assert code == 0, buffer.getvalue()[-2000:]
    assert os.environ.get("DAGSTER_HOME") != str(home / "dagster")  # nothing leaked
    return CuratedHome(home, buffer.getvalue())
