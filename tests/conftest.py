"""Shared fixtures: every test gets its own home folder and DAGSTER_HOME under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from robust_data.store import Store

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars off in test logs


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh robust-data home; the environment variables are restored after the test."""
    home = tmp_path / "home"
    monkeypatch.setenv("ROBUST_DATA_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.delenv("ROBUST_DATA_STORE", raising=False)
    Store.open(home).ensure()
    return home
