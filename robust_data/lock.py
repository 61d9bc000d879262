"""One writer per home: an advisory file lock on ``<home>/.lock``.

Every command that writes a home (ingest, curate, export, the instance's creation) holds the
lock for its whole run, so two commands never write the store or the Dagster instance's
SQLite at the same time. The lock is ``flock`` on an open file: the kernel releases it when
the holding process ends, however it ends (SIGKILL included), so a stale lock cannot outlive
its holder. The file itself holds the holder's pid and command, for the waiting message.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from robust_data.errors import DatasetError

LOCK_NAME = ".lock"
POLL_SECONDS = 0.2


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
            "a home folder", f"a file in the way of {path.parent}", "pass --home FOLDER"
        ) from None
    except OSError as error:  # no permission, a read-only file system (EROFS), ...
        raise DatasetError(
            "a writable home folder",
            f"{path.parent} is not writable ({error.strerror})",
            "pass --home with a folder you can write, or fix its permissions",
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
        The lock file in ``home``: the writers' lock by default; robust_data.reviews holds a
        lock of its own, so that reviews are recorded while a run holds the writers' lock.

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
                    "wait for that command to finish, or pass another --home",
                ) from None
            if not told:
                notify(f"{what}: waiting for {holder} to finish with {path.parent} ...")
                told = True
            time.sleep(POLL_SECONDS)
