"""Local atomic writes: a temporary file beside the target, fsynced, renamed over it.

Temporary files are named ``.<name>.<pid>.<random>.tmp`` beside their target. The pid tells a
temporary file of a live writer from one a killed process left behind
(:func:`remove_stale_temps`). What the product keeps gets the mode ``open`` would give under
the umask (:func:`default_mode`), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Suffix of the temporary files (and folders) of atomic writes.
TMP_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process's umask, read without changing it.

    From the ``Umask:`` line of ``/proc/self/status`` (Linux); elsewhere by setting it and
    setting it back: a file another thread creates in between is made private (0o077),
    never more open than asked.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The mode ``open`` or ``mkdir`` would give a new file (folder) under the current umask.

    ``tempfile.mkstemp`` and ``mkdtemp`` create private ones (0600, 0700) whatever the
    umask; what the product keeps is given this mode instead, so that a group or others
    read the store, reports and exports as they read the user's other files.
    """
    return (0o777 if folder else 0o666) & ~current_umask()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a zombie counts as dead).

    True when that cannot be told (no such pid number, another user's process), so that
    nothing of a process that may still run is ever removed.
    """
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def temp_owner(name: str) -> int | None:
    """The pid in a temporary name ``.<target>.<pid>.<random>.tmp``; None for other names."""
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return None
    parts = name[: -len(TMP_SUFFIX)].split(".")
    for part in reversed(parts[:-1]):
        if part.isascii() and part.isdigit():
            return int(part)
    return None


def remove_stale_temps(folder: Path, recursive: bool = True) -> list[Path]:
    """Remove temporary files and folders under ``folder`` whose writing process is gone.

    Only names of the form ``.<target>.<pid>.<random>.tmp`` whose pid no longer runs are
    removed; a live writer's temporary files and every other file are left alone.
    ``recursive=False`` looks at ``folder``'s own entries only (a home's top level, where a
    user may keep folders of their own).

    Returns
    -------
    list of Path
        What was removed.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    found = folder.rglob(f".*{TMP_SUFFIX}") if recursive else folder.glob(f".*{TMP_SUFFIX}")
    for path in found:
        owner = temp_owner(path.name)
        if owner is None or pid_alive(owner):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _temporary_beside(path: Path) -> Path:
    """A new empty temporary file named for ``path``'s writer, in ``path``'s folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent
    )
    os.close(fd)
    return Path(tmp)


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp)`` on a temporary file beside ``path``, fsync it, rename it over ``path``.

    Readers see the old file or the whole new one. On any failure the temporary file is
    removed and ``path`` is left untouched.

    Returns
    -------
    Path
        The written path.
    """
    target = Path(path)
    tmp = _temporary_beside(target)
    try:
        write(tmp)
        os.chmod(tmp, default_mode())  # mkstemp's 0600 -> what open() gives under the umask
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write bytes to ``path`` atomically (temporary file in the same folder, then rename)."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write text to ``path`` atomically (temporary file in the same folder, then rename)."""
    return write_bytes_atomic(text.encode(), path)
