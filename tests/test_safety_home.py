"""Faults and hostile input on a home: locks, dead runs, leftovers, bound names, bad names.

Each test is the regression test of one class of data loss or unhelpful failure: small
hand-made inputs, real commands, real Dagster runs.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from pipelines.cli import main
from robust_data.export.swap import owner_tag
from robust_data.store.lock import HomeLockedError, home_lock
from robust_data.store.store import Store
from tests.fixtures import png_bytes, write_parquet

SCRIPT = Path(sys.executable).parent / "robust-data"
PROJECT = Path(__file__).resolve().parents[1]


def parquet_dataset(path: Path, seed: int, train_labels: list[int] | None = None) -> Path:
    """A tiny Parquet dataset: 12 train and 6 test 8x8 grey images of two classes."""
    rng = np.random.default_rng(seed)
    train = train_labels if train_labels is not None else [0, 1] * 6
    labels = train + [0, 1] * 3
    images = [png_bytes(rng.integers(0, 256, (8, 8, 1), dtype=np.uint8)) for _ in labels]
    split = ["train"] * len(train) + ["test"] * 6
    return write_parquet(path, {"image": images, "label": labels, "split": split})


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error line on stderr"
    assert "Traceback" not in "\n".join(err)
    return err[-1]


# ---------------------------------------------------------------------------------------------
# two commands on one home


def hold_lock(home: Path, seconds: float) -> subprocess.Popen[str]:
    """A process that holds ``home``'s lock for ``seconds``, once it holds it."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from robust_data.store.lock import home_lock\n"
            "with home_lock(Path(sys.argv[1]), 'robust-data curate (test holder)'):\n"
            "    print('held', flush=True); time.sleep(float(sys.argv[2]))",
            str(home),
            str(seconds),
        ],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.slow
def test_a_second_writer_waits_for_the_lock_with_a_message(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = hold_lock(isolated_home, seconds=4)
    try:
        started = time.monotonic()
        assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    err = capsys.readouterr().err
    assert f"waiting for pid {holder.pid}: robust-data curate (test holder)" in err
    assert waited > 1.0  # it did wait for the holder
    with pytest.raises(HomeLockedError, match="locked by pid"):
        with home_lock(isolated_home, "first"):
            with home_lock(isolated_home, "second", timeout=0):
                pass


@pytest.mark.slow
def test_two_commands_on_a_fresh_home_at_once_leave_a_sound_instance(tmp_path: Path) -> None:
    home = tmp_path / "fresh"  # no dagster.yaml, no SQLite yet: both create the instance
    env = {**os.environ, "ROBUST_DATA_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    commands = [
        [str(SCRIPT), "ingest", "digits", "--home", str(home)],
        [str(SCRIPT), "ingest", "digits", "--name", "digits-b", "--home", str(home)],
    ]
    processes = [
        subprocess.Popen(c, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in commands
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
    with sqlite3.connect(home / "dagster" / "history" / "runs.db") as db:
        assert db.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and {r.status for r in runs} == {DagsterRunStatus.SUCCESS}


# ---------------------------------------------------------------------------------------------
# what a killed process leaves behind


@pytest.mark.slow
def test_a_killed_run_is_failed_and_its_leftovers_removed_by_the_next_command(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store.open(isolated_home)
    curate = subprocess.Popen(
        [str(SCRIPT), "curate", "--dataset", "digits", "--home", str(isolated_home)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while not store.has("raw_samples", "digits") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert store.has("raw_samples", "digits"), "the curate run never stored raw_samples"
    curate.send_signal(signal.SIGKILL)
    curate.wait()
    # What a killed writer leaves: an atomic write's temp file, a graph step's outputs.
    dead_tmp = store.storage_root / "rpr_scores" / f".digits.parquet.{curate.pid}.x1y2.tmp"
    dead_tmp.parent.mkdir(parents=True, exist_ok=True)
    dead_tmp.write_bytes(b"half a table")
    live_tmp = store.storage_root / "rpr_scores" / f".digits.parquet.{os.getpid()}.x1y2.tmp"
    live_tmp.write_bytes(b"a live writer's file")
    orphan_steps = store.storage_root / "_steps" / "0f0f0f0f-gone-run" / "shard" / "result.parquet"
    orphan_steps.parent.mkdir(parents=True)
    orphan_steps.write_bytes(b"x")
    host = owner_tag().rsplit("-", 1)[0]
    dead_export = isolated_home / "exports" / f".digits.{host}-{curate.pid}-ab12.tmp"
    dead_export.mkdir(parents=True)
    (dead_export / "train.parquet").write_bytes(b"half an export")
    # a user's own file in a folder of theirs in the home, named like a dead writer's temp file
    users = isolated_home / "notes" / f".report.{curate.pid}.final.tmp"
    users.parent.mkdir()
    users.write_bytes(b"mine")
    with DagsterInstance.get() as instance:
        (killed,) = instance.get_runs()
        assert killed.status == DagsterRunStatus.STARTED  # Dagster never heard of the kill

    assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0
    err = capsys.readouterr().err
    assert f"marked run {killed.run_id[:8]} failed: the process running it was killed" in err
    assert "removed the step outputs of finished run 0f0f0f0f" in err
    assert f"removed {dead_tmp}: a temporary file left by a killed write" in err
    assert f"removed {dead_export}: left by an export that was stopped" in err
    assert not dead_tmp.exists() and live_tmp.exists() and not dead_export.exists()
    assert users.read_bytes() == b"mine" and str(users) not in err  # not robust-data's to remove
    assert not (store.storage_root / "_steps" / "0f0f0f0f-gone-run").exists()
    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(killed.run_id).status == DagsterRunStatus.FAILURE


@pytest.mark.slow
def test_ui_starts_beside_a_writer_and_killed_outright_takes_its_servers_with_it(
    isolated_home: Path,
) -> None:
    from tests.pipelines.test_webserver import group_alive, group_ends, start_ui, stop_group

    assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0  # the instance exists
    holder = hold_lock(isolated_home, seconds=120)  # a long curate, say: the UI must not wait
    try:
        _, process = start_ui(isolated_home)
    finally:
        holder.kill()
        holder.wait()
    try:
        process.send_signal(signal.SIGKILL)  # no handler runs: only the kernel can pass it on
        process.wait()
        assert group_ends(process.pid, 60), "dagster dev outlived a SIGKILLed robust-data ui"
    finally:
        if group_alive(process.pid):
            stop_group(process)


# ---------------------------------------------------------------------------------------------
# a dataset name is bound to its source


def test_a_name_is_bound_to_its_source_and_replace_drops_the_old_tables(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = parquet_dataset(tmp_path / "first.parquet", seed=0)
    second = parquet_dataset(tmp_path / "second.parquet", seed=1)
    store = Store.open(isolated_home)
    assert main(["ingest", f"parquet:{first}", "--name", "pets"]) == 0
    before = store.read("raw_samples", "pets")
    stale = store.storage_root / "rpr_scores" / "pets.parquet"  # a downstream table of the old
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"scores of the first source")
    capsys.readouterr()

    assert main(["ingest", f"parquet:{second}", "--name", "pets"]) == 1
    line = one_line_error(capsys)
    assert f"dataset 'pets' from its registered source parquet:{first}" in line
    assert f"another source parquet:{second}" in line and "--replace" in line
    assert store.read("raw_samples", "pets").equals(before) and stale.exists()

    assert main(["ingest", f"parquet:{second}", "--name", "pets", "--replace"]) == 0
    assert not stale.exists()  # nothing of the old source is left to mix with the new
    after = store.read("raw_samples", "pets")
    assert set(after.column("content_sha256").to_pylist()).isdisjoint(
        before.column("content_sha256").to_pylist()
    )
    assert store.lookup("pets").source == f"parquet:{second}"


def test_a_refused_ingest_binds_nothing(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_class = parquet_dataset(tmp_path / "bad.parquet", seed=0, train_labels=[0] * 12)
    good = parquet_dataset(tmp_path / "good.parquet", seed=1)
    assert main(["ingest", f"parquet:{one_class}", "--name", "pets"]) == 1
    assert "pets" not in Store.open(isolated_home).registrations()
    assert main(["ingest", f"parquet:{good}", "--name", "pets"]) == 0  # the name is still free
    assert Store.open(isolated_home).lookup("pets").source == f"parquet:{good}"


def test_a_relative_source_path_is_stored_resolved(
    isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parquet_dataset(tmp_path / "data" / "rel.parquet", seed=0)
    monkeypatch.chdir(tmp_path / "data")
    assert main(["ingest", "parquet:rel.parquet", "--name", "rel"]) == 0
    registry = json.loads((isolated_home / "datasets.json").read_text())
    assert registry["rel"]["source"] == f"parquet:{tmp_path / 'data' / 'rel.parquet'}"
    monkeypatch.chdir(tmp_path)  # elsewhere, the registered name still finds its file
    assert main(["ingest", "rel"]) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "../../x"],
        ["export", "../other-home/x", "--out", "out"],
        ["score-model", "../x"],
    ],
)
def test_dataset_names_are_validated_by_every_command(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    line = one_line_error(capsys)
    assert "expected a dataset name of lower-case letters" in line and argv[1] in line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# one-line errors


def test_a_train_split_of_one_class_is_refused_before_anything_is_stored(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = parquet_dataset(tmp_path / "one-class.parquet", seed=0, train_labels=[0] * 12)
    assert main(["ingest", f"parquet:{source}", "--name", "oneclass"]) == 1
    line = one_line_error(capsys)
    assert "expected a train split with at least 2 classes" in line and "only class" in line
    assert not Store.open(isolated_home).has("raw_samples", "oneclass")
    assert main(["query", "SELECT count(*) FROM raw_samples"]) == 1  # no such view: not stored


def test_a_home_that_is_a_file_or_read_only_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "home-file"
    blocker.write_text("the user's notes\n")
    assert main(["ingest", "digits", "--home", str(blocker)]) == 1
    assert f"expected a folder; found a file at {blocker}" in one_line_error(capsys)
    assert blocker.read_text() == "the user's notes\n"
    # /sys is a read-only file system, for root too
    assert main(["ingest", "digits", "--home", "/sys/robust-data-home"]) == 1
    assert (
        "expected a writable folder; found cannot create /sys/robust-data-home"
        in one_line_error(capsys)
    )


def test_a_failed_blocking_check_is_named_with_its_whole_message() -> None:
    from dagster import AssetCheckResult, AssetCheckSpec, Output, asset, materialize

    from pipelines.cli.launch import _failure_message

    @asset(check_specs=[AssetCheckSpec("valid", asset="scores", blocking=True)])
    def scores():
        yield Output(1)
        yield AssetCheckResult(
            passed=False, description="3 labels out of range\n(first: 11, 12, 13)"
        )

    @asset(deps=[scores])
    def downstream() -> int:
        return 2

    result = materialize([scores, downstream], raise_on_error=False)
    assert not result.success
    message = _failure_message(result)
    assert "\n" not in message
    assert "failed check scores.valid: 3 labels out of range (first: 11, 12, 13)" in message
