"""A CLI command's hold on a home: the lock, the Dagster instance, and cleanup after faults.

Every command that writes a home enters :func:`writing_home`: it checks the command's
inputs before anything is created (a refused command leaves no home behind), checks the home
is a writable folder, takes the home's lock (a second writer waits with a message), creates
the Dagster instance once under the lock (two fresh instances created at once corrupted
SQLite's migration table), and cleans up what killed processes left behind:

- processes of a killed writer's run that still run (its step processes, should their death
  signal have missed) are killed, and waited for, before anything else;
- runs that this CLI started, whose process is gone while the run still says STARTED, are
  marked failed (Dagster never hears of a SIGKILL);
- step outputs (``<tables>/_steps/<run id>``) of runs that have succeeded or no longer exist;
- temporary files of atomic writes and exports whose writing process is gone.

Each cleanup prints one line saying what it did.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from robust_data.io.atomic import pid_alive, remove_stale_temps, write_text_atomic
from robust_data.store.home import HOME_ENV, ensure_folder
from robust_data.store.lock import bind_to_writer, home_lock, leftover_processes, stop_processes
from robust_data.store.store import Store
from robust_data.store.targets import HOME_MARKER

#: The Dagster instance's ``dagster.yaml`` in a home: local SQLite storage, no telemetry. Its
#: first line is what tells a home by its layout (:func:`robust_data.store.targets.is_home`).
DAGSTER_YAML = f"""\
{HOME_MARKER} Local SQLite storage under this folder.
telemetry:
  enabled: false
nux:
  enabled: false  # no "Join the Dagster community" dialog over the UI
"""

#: Run tags that say which process on which machine runs a CLI-launched run.
PID_TAG = "robust_data/pid"
HOST_TAG = "robust_data/host"


def prepare_home(store: Store) -> Store:
    """Create the home, its storage root and its Dagster instance folder if they are missing,
    with a ``dagster.yaml`` (:data:`DAGSTER_YAML`) when the instance has none.

    Raises
    ------
    DatasetError
        When the home (or a folder in it) is a file, or cannot be written.
    """
    store.ensure()
    ensure_folder(store.dagster_home)
    config = store.dagster_home / "dagster.yaml"
    if not config.exists():
        write_text_atomic(DAGSTER_YAML, config)
    return store


def run_tags() -> dict[str, str]:
    """Tags for a run this process executes: its pid and host, for dead-run detection."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def dagster_environment(store: Store) -> dict[str, str]:
    """The environment variables that point Dagster and the assets at this home."""
    return {HOME_ENV: str(store.home), "DAGSTER_HOME": str(store.dagster_home)}


def worker_job(name: str) -> Any:
    """Job ``name`` as each process of a CLI run in workers loads it: tied to the command first.

    The CLI runs ``--workers`` jobs through this function (``build_reconstructable_job``).
    Each step process of the multiprocess executor is spawned by the command's main thread
    (``execute_job`` runs the executor there) and loads its job through it before running a
    step, so :func:`robust_data.store.lock.bind_to_writer` arms its death signal (SIGKILL when the
    command ends, however it ends) and ends it at once if the command is already gone. In the
    command itself, and on Celery workers, loading the job is all it does.
    """
    bind_to_writer()
    from pipelines.definitions import resolved_job

    return resolved_job(name)


@contextmanager
def scoped_environ(environment: Mapping[str, str]) -> Iterator[None]:
    """Set ``environment`` in ``os.environ`` for the block, then restore what was there.

    Dagster reads ``DAGSTER_HOME`` and the assets read the home from the environment, and
    worker processes inherit it; a command sets it for its run only, never for good.
    """
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def writing_home(
    home: str | os.PathLike[str] | None,
    what: str,
    say: Callable[[str], None] = _say,
    timeout: float | None = None,
    check: Callable[[Store], object] | None = None,
) -> Iterator[Store]:
    """Hold ``home`` for a writing command: validated, locked, instance ready, cleaned up.

    Parameters
    ----------
    home : path or None
        ``--home`` (None: ``$ROBUST_DATA_HOME`` or ``./.robust-data``).
    what : str
        The command, shown to a second writer that waits ('robust-data curate').
    say : callable
        Where the one-line cleanup and waiting messages go (default stderr).
    timeout : float or None
        Seconds to wait for another writer (None: as long as it takes).
    check : callable or None
        The command's input checks, called with the home's store before anything is created
        (no home folder, lock file or instance): it raises the one-line error of a refusal
        and must write nothing. Checks that depend on what other writers do are made again
        under the lock.

    Yields
    ------
    Store
        The home's store; ``ROBUST_DATA_HOME`` and ``DAGSTER_HOME`` point at it inside the
        block (restored after it).
    """
    store = Store.open(home)
    if check is not None:
        check(store)
    prepare_home(store)
    with home_lock(store.home, what, timeout=timeout, notify=say):
        stop_leftover_processes(store, say)
        from dagster import DagsterInstance

        with scoped_environ(dagster_environment(store)):
            with DagsterInstance.get() as instance:  # creates (migrates) the storage, locked
                cleanup(store, instance, say)
            yield store


def stop_leftover_processes(store: Store, say: Callable[[str], None] = _say) -> None:
    """Kill the processes of killed writers' runs on this home that still run, and wait.

    Called with the lock held, before anything is read or written: a step process of a
    killed run (its death signal missed, or not armed yet) never writes beside this command.
    The killed run itself is then marked failed by :func:`cleanup`.
    """
    leftovers = leftover_processes(store.home)
    stop_processes(leftovers)
    for pid, _, writer in leftovers:
        say(f"killed pid {pid}: a process of the run of pid {writer}, left running when it ended")


#: The home's folders robust-data writes into (besides the store); other folders are the user's.
OWN_FOLDERS = ("dagster", "reports", "exports")


def cleanup(store: Store, instance: Any, say: Callable[[str], None] = _say) -> None:
    """Fail dead runs, drop finished runs' step outputs and dead writers' temporary files."""
    for run_id in fail_dead_runs(instance):
        say(f"marked run {run_id[:8]} failed: the process running it was killed")
    for run_id in remove_finished_step_outputs(store, instance):
        say(f"removed the step outputs of finished run {run_id[:8]}")
    stale = remove_stale_temps(store.home, recursive=False)  # the home's files, not a user's
    for folder in (*(store.home / name for name in OWN_FOLDERS), store.storage_root):
        stale += remove_stale_temps(folder)
    for path in stale:
        say(f"removed {path}: a temporary file left by a killed write")
    for line in remove_stale_exports(store):
        say(line)


def remove_stale_exports(store: Store) -> list[str]:
    """Clear what killed exports left in ``<home>/exports`` (see ``export.swap.remove_stale``).

    Returns
    -------
    list of str
        One line per folder: removed, or restored as the previous export.
    """
    from robust_data.export.swap import remove_stale
    from robust_data.ingest.sources import NAME_PATTERN

    folder: Path = store.home / "exports"
    if not folder.is_dir():
        return []
    names = {entry.name[1:].split(".", 1)[0] for entry in folder.glob(".*.*")}
    lines: list[str] = []
    for name in sorted(n for n in names if NAME_PATTERN.match(n)):
        lines += remove_stale(store, folder / name, name).lines()
    return lines


def fail_dead_runs(instance: Any) -> list[str]:
    """Mark failed the in-progress runs this CLI started whose process no longer runs.

    Runs launched by the UI or the daemon carry no pid tag and are left to Dagster.

    Returns
    -------
    list of str
        The run ids marked failed.
    """
    from dagster import DagsterRunStatus, RunsFilter

    active = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED]
    host = socket.gethostname()
    failed = []
    for run in instance.get_runs(RunsFilter(statuses=active, tags={HOST_TAG: host})):
        pid = run.tags.get(PID_TAG, "")
        if pid.isdigit() and not pid_alive(int(pid)):
            instance.report_run_failed(
                run, message=f"the process running this run (pid {pid}) ended without finishing it"
            )
            failed.append(run.run_id)
    return failed


def remove_finished_step_outputs(store: Store, instance: Any) -> list[str]:
    """Remove ``_steps/<run id>`` of runs that succeeded or are no longer in the instance.

    A failed run keeps its step outputs so that re-executing it from the failure reuses them.

    Returns
    -------
    list of str
        The run ids whose outputs were removed.
    """
    from dagster import DagsterRunStatus

    removed = []
    for run_id in store.step_output_runs():
        run = instance.get_run_by_id(run_id)
        if (run is None or run.status == DagsterRunStatus.SUCCESS) and store.remove_step_outputs(
            run_id
        ):
            removed.append(run_id)
    return removed
