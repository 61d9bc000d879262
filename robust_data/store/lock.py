"""One writer per home: an advisory file lock on ``<home>/.lock``.

Every command that writes a home (ingest, curate, export, the instance's creation) holds the
lock for its whole run, so two commands never write the store or the Dagster instance's
SQLite at the same time. The lock is ``flock`` on an open file: the kernel releases it when
the holding process ends, however it ends (SIGKILL included), so a stale lock cannot outlive
its holder. The file itself holds the holder's pid and command, for the waiting message.

A writer's run may start processes of its own (Dagster's step processes with ``--workers``).
They must end with it and never write once its lock is gone: each carries the writer's
identity in :data:`WRITER_ENV`, arms a death signal (:func:`bind_to_writer`), and the next
writer stops any that are left (:func:`leftover_processes`, :func:`stop_processes`).
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from robust_data.errors import DatasetError
from robust_data.io.atomic import pid_alive
from robust_data.store.home import HOME_ENV

LOCK_NAME = ".lock"
POLL_SECONDS = 0.2

#: In the environment of a writer's run: ``<pid>:<start time>`` of the writing command. Every
#: process the run starts inherits it (and ``ROBUST_DATA_HOME``), which ties it to the writer.
WRITER_ENV = "ROBUST_DATA_WRITER"
#: prctl option: the signal a process gets when its parent ends (Linux).
PR_SET_PDEATHSIG = 1


class HomeLockedError(DatasetError):
    """Another process held the home's lock for longer than the caller would wait."""


def _holder(path: Path) -> str:
    """Who holds the lock, as written in the lock file ('pid 123: robust-data curate')."""
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    return text or "another process"


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except NotADirectoryError:
        raise DatasetError(
            "a home folder",
            f"a file in the way of {path.parent}",
            "pass `home=FOLDER`",
            options=("home",),
        ) from None
    except OSError as error:  # no permission, a read-only file system (EROFS), ...
        raise DatasetError(
            "a writable home folder",
            f"{path.parent} is not writable ({error.strerror})",
            "pass `home` with a folder you can write, or fix its permissions",
            options=("home",),
        ) from None


@contextmanager
def home_lock(
    home: Path,
    what: str,
    timeout: float | None = None,
    notify: Callable[[str], None] | None = None,
    name: str = LOCK_NAME,
) -> Iterator[Path]:
    """Hold the exclusive lock of ``home`` for the ``with`` block.

    Parameters
    ----------
    home : Path
        The home folder; created when missing.
    what : str
        What the holder does ('robust-data curate'), shown to a process that waits.
    timeout : float or None
        Seconds to wait for another holder; None waits as long as it takes, 0 fails at once.
    notify : callable or None
        Called once with a one-line message when the lock is busy and this process waits
        (default: print to stderr).
    name : str
        The lock file in ``home``: the writers' lock by default;
        robust_data.curation.reviews holds a lock of its own, so that reviews are recorded
        while a run holds the writers' lock.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    HomeLockedError
        When the lock stays held for ``timeout`` seconds.
    DatasetError
        When the home is a file or not writable.
    """
    path = home / name
    fd = _open(path)
    try:
        _acquire(fd, path, what, timeout, notify or _to_stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {what}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _acquire(
    fd: int, path: Path, what: str, timeout: float | None, notify: Callable[[str], None]
) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = _holder(path)
            if deadline is not None and time.monotonic() >= deadline:
                raise HomeLockedError(
                    f"no other command writing {path.parent}",
                    f"it is locked by {holder}",
                    "wait for that command to finish, or pass another `home`",
                    options=("home",),
                ) from None
            if not told:
                notify(f"{what}: waiting for {holder} to finish with {path.parent} ...")
                told = True
            time.sleep(POLL_SECONDS)


# ---------------------------------------------------------------------------------------------
# the processes of a writer's run


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (``/proc/PID/stat`` field 22, clock ticks after boot).

    With the pid it names one process for good: a reused pid has another start time.

    Returns
    -------
    str or None
        None when the process is gone or a zombie, or where ``/proc`` cannot tell.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if len(fields) < 20 or fields[0] == "Z" else fields[19]


def writer_token(pid: int | None = None) -> str:
    """``<pid>:<start time>`` of a writing process (default this one): the :data:`WRITER_ENV`
    value of its run."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{process_start(pid) or ''}"


def token_pid(token: str) -> int | None:
    """The pid of a :func:`writer_token` (ASCII digits only); None for a malformed one."""
    pid = token.partition(":")[0]
    return int(pid) if pid.isascii() and pid.isdigit() else None


def writer_alive(token: str) -> bool:
    """Whether the writer named by a :func:`writer_token` still runs (a malformed token: True,
    so that nothing is stopped on a guess)."""
    pid, start = token_pid(token), token.partition(":")[2]
    if pid is None:
        return True
    return process_start(pid) == start if start else pid_alive(pid)


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """In a child process: get ``signum`` when its parent ends, even by SIGKILL (Linux).

    Call it first thing in the child (``preexec_fn``, or the entry of a spawned process). When
    ``parent`` is no longer the parent (it ended before the call) the signal comes at once.
    The kernel sends it when the *thread* that started the child ends, so the parent must start
    it from a thread that lives as long as the parent does (its main thread). Elsewhere than
    Linux this does nothing.

    Parameters
    ----------
    parent : int
        The pid of the parent, read before the call.
    signum : int
        The signal (SIGTERM lets the child clean up; SIGKILL stops it where it is).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signum)


def bind_to_writer() -> None:
    """In a process of a writer's run: die with the process that started it, at once if the
    writer is already gone.

    SIGKILL, not SIGTERM: once the writer is gone its lock is too, and a step must not finish
    a write another writer may be making (an atomic write leaves only its temporary file,
    which the next writer removes). Nothing happens in the writer itself or in a process that
    is not part of a writer's run (no :data:`WRITER_ENV`: the UI's runs, Celery workers).
    """
    token = os.environ.get(WRITER_ENV, "")
    pid = token_pid(token)
    if pid is None or pid == os.getpid():
        return
    die_with_parent(os.getppid(), signal.SIGKILL)
    if not writer_alive(token):
        os.kill(os.getpid(), signal.SIGKILL)


def leftover_processes(home: Path) -> list[tuple[int, str, int]]:
    """The processes of writers' runs on ``home`` whose writer is gone (Linux ``/proc``).

    Returns
    -------
    list of (pid, start time, writer pid)
        Found by the :data:`WRITER_ENV` and ``ROBUST_DATA_HOME`` they were started with;
        processes of other users cannot be read and are left out.
    """
    proc = Path("/proc")
    found: list[tuple[int, str, int]] = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        environ = dict(item.partition(b"=")[::2] for item in raw.split(b"\0"))
        token = environ.get(WRITER_ENV.encode(), b"").decode(errors="replace")
        if not token or environ.get(HOME_ENV.encode()) != str(home).encode():
            continue
        start, writer = process_start(int(entry.name)), token_pid(token)
        if start is not None and writer is not None and not writer_alive(token):
            found.append((int(entry.name), start, writer))
    return found


def stop_processes(processes: list[tuple[int, str, int]], timeout: float = 10.0) -> None:
    """SIGKILL each ``(pid, start time, ...)`` that is still that process; wait for them to end.

    Raises
    ------
    DatasetError
        When one still runs after ``timeout`` seconds (stuck in the kernel, or another user's).
    """
    for pid, start, *_ in processes:
        if process_start(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + timeout
    left = [pid for pid, start, *_ in processes if process_start(pid) == start]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid, start, *_ in processes if process_start(pid) == start]
    if left:
        raise DatasetError(
            "no process left of a killed writer's run",
            f"pid {left[0]} still running {timeout:g} s after SIGKILL",
            f"stop it (kill -9 {left[0]}) and run the command again",
        )
