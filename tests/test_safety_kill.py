"""A killed command takes its whole run with it; a refused command creates nothing.

Regression tests of issue 28: ``kill -9`` of ``curate --workers 2`` left its step processes
running (re-parented to init, still writing while the next command held the lock), and a
refused command still created ``./.robust-data`` with a Dagster instance.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from pipelines.cli import main
from robust_data.store.store import Store
from tests.test_safety_export_query import snapshot
from tests.test_safety_home import PROJECT, SCRIPT, one_line_error, parquet_dataset

STEP_EVENTS = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}


def group_members(pgid: int) -> set[int]:
    """The live (not zombie) processes of process group ``pgid``, from ``/proc``."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.add(int(stat.parent.name))
    return members


def running_steps(instance: DagsterInstance) -> tuple[str | None, set[str]]:
    """(run id, steps started and not finished) of the home's only run (None: not yet)."""
    runs = instance.get_runs()
    if not runs:
        return None, set()
    started, done = set(), set()
    for record in instance.get_records_for_run(runs[0].run_id, of_type=STEP_EVENTS).records:
        event = record.event_log_entry.dagster_event
        assert event is not None
        (started if event.event_type == DagsterEventType.STEP_START else done).add(event.step_key)
    return runs[0].run_id, started - done


def workers_at_work(pgid: int, count: int, timeout: float = 240.0) -> str:
    """Wait until ``count`` worker processes live while a step runs; the run's id.

    Two steps are rarely at work at the same instant on digits (a step process spends most of
    its few seconds importing, and the graph is mostly a chain), so the test waits for what it
    needs: ``count`` step processes besides the command, and one step started and not
    finished. The instance is opened once worker processes exist, so after the command has
    created it: two processes creating one instance at once corrupt its schema.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(group_members(pgid)) > count:
            with DagsterInstance.get() as instance:
                run_id, running = running_steps(instance)
            if run_id is not None and running and len(group_members(pgid)) > count:
                return run_id
        time.sleep(0.1)
    raise AssertionError(f"no {count} worker processes with a step at work within {timeout:g} s")


def ends(pgid: int, pids: set[int], timeout: float) -> set[int]:
    """Wait up to ``timeout`` seconds for ``pids`` and group ``pgid`` to end; those running."""
    deadline = time.monotonic() + timeout
    left = pids | group_members(pgid)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {pid for pid in left if _alive(pid)} | group_members(pgid)
    return left


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_kill_9_of_a_multi_worker_curate_takes_its_workers_and_their_writes_with_it(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store.open(isolated_home)
    command = ["curate", "--dataset", "digits", "--workers", "2", "--shards", "2"]
    curate = subprocess.Popen(
        [str(SCRIPT), *command, "--home", str(isolated_home)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: every process of the run, found by it
    )
    try:
        run_id = workers_at_work(curate.pid, 2)
        workers = group_members(curate.pid) - {curate.pid}
        curate.send_signal(signal.SIGKILL)  # the command only, not its group
        curate.wait()
        killed_at = time.time()
        before = snapshot(store.storage_root)
        left = ends(curate.pid, workers, timeout=3.0)
        assert not left, f"worker processes {sorted(left)} outlived the killed command"

        other = parquet_dataset(tmp_path / "other.parquet", seed=1)
        assert main(["ingest", f"parquet:{other}", "--home", str(isolated_home)]) == 0
        err = capsys.readouterr().err
        assert f"marked run {run_id[:8]} failed: the process running it was killed" in err
        time.sleep(1.0)  # a worker that survived would write now, with the lock free again
        after = snapshot(store.storage_root)
    finally:
        if group_members(curate.pid):
            os.killpg(curate.pid, signal.SIGKILL)
    changed = {path for path, digest in after.items() if before.get(path) != digest}
    assert changed == {"ingest_rejects/other.parquet", "raw_samples/other.parquet"}
    assert all(Path(p).name.endswith(".tmp") for p in set(before) - set(after)), before
    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
        late = [
            record.event_log_entry.dagster_event_type
            for record in instance.get_records_for_run(run_id).records
            if record.event_log_entry.timestamp > killed_at
        ]
    assert late == [DagsterEventType.RUN_FAILURE]  # only the next command's verdict


def _ended_token() -> str:
    """The writer token of a process that has ended (its pid may be reused; its start is not)."""
    from robust_data.store.lock import writer_token

    process = subprocess.Popen(["sleep", "30"])
    token = writer_token(process.pid)
    process.kill()
    process.wait()
    return token


def _sleeper(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], env={**os.environ, **env})


#: A writer as a CLI run is one: its environment names it, and it starts a worker that binds
#: itself to it the way each step process does (pipelines.home.worker_job).
WRITER = """
import os, subprocess, sys
from robust_data.store.lock import WRITER_ENV, writer_token
os.environ[WRITER_ENV] = writer_token()
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(worker.pid, flush=True)
worker.wait()
"""
WORKER = """
import time
from robust_data.store.lock import bind_to_writer
bind_to_writer()
print("bound", flush=True)
time.sleep(60)
"""


def test_a_worker_dies_with_its_writer_and_never_starts_without_it() -> None:
    from robust_data.store.lock import WRITER_ENV

    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, WORKER], cwd=PROJECT, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    worker = int(writer.stdout.readline())
    assert writer.stdout.readline().strip() == "bound"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    deadline = time.monotonic() + 2.0
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), "the worker outlived its SIGKILLed writer"

    late = subprocess.run(  # a worker that starts after its writer is gone ends at once
        [sys.executable, "-c", WORKER],
        cwd=PROJECT,
        env={**os.environ, WRITER_ENV: _ended_token()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (late.returncode, late.stdout) == (-signal.SIGKILL, "")


def test_the_next_writer_kills_what_a_killed_writers_run_left_running(
    isolated_home: Path, tmp_path: Path
) -> None:
    from pipelines.home import writing_home
    from robust_data.store.lock import WRITER_ENV, writer_token

    home = str(isolated_home)
    leftover = _sleeper({WRITER_ENV: _ended_token(), "ROBUST_DATA_HOME": home})
    live = _sleeper({WRITER_ENV: writer_token(), "ROBUST_DATA_HOME": home})  # a live writer's
    elsewhere = _sleeper({WRITER_ENV: _ended_token(), "ROBUST_DATA_HOME": str(tmp_path / "b")})
    try:
        said: list[str] = []
        with writing_home(isolated_home, "robust-data ingest", say=said.append):
            assert leftover.wait(timeout=5) == -signal.SIGKILL  # gone before the block runs
        assert f"killed pid {leftover.pid}:" in "\n".join(said)
        assert live.poll() is None and elsewhere.poll() is None
    finally:
        for process in (leftover, live, elsewhere):
            process.kill()
            process.wait()


def test_a_refused_command_creates_no_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ROBUST_DATA_HOME")  # the default home: ./.robust-data
    monkeypatch.delenv("DAGSTER_HOME")
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (cwd / "notes.txt").write_text("the user's own file\n")
    refused = {
        ("export", "digits", "--format", "parquet", "--out", "out"): (
            "found 'digits', which is not in this home; run `robust-data curate --dataset digits`"
        ),
        ("ingest", f"imagefolder:{cwd / 'missing'}"): "does not exist",
        ("ingest", "digits", "--test-fraction", "1.5"): "expected test_fraction in (0, 1)",
        ("ingest", "mnist"): "no --root given",
        ("curate", "--dataset", "mnst-5k"): "did you mean 'mnist-5k'?",
        ("curate", "--dataset", "digits", "--workers", "0"): "expected --workers >= 1",
        ("curate", "--dataset", "digits", "--preset", "nope"): "expected --preset in",
        ("query", "SELECT * FROM no_such_table"): "no_such_table does not exist",
        (
            "review",
            "export",
            "nosuchset",
            "out.csv",
        ): "found 'nosuchset', which is not in this home",
    }
    for argv, message in refused.items():
        assert main(list(argv)) == 1, argv
        line = one_line_error(capsys)
        assert sorted(p.name for p in cwd.iterdir()) == ["notes.txt"], (argv, line)
        assert message in line, (argv, line)
    monkeypatch.setenv("ROBUST_DATA_EXECUTOR", "k8s")
    assert main(["curate", "--dataset", "digits"]) == 1
    assert "found k8s" in one_line_error(capsys)
    assert sorted(p.name for p in cwd.iterdir()) == ["notes.txt"]
