"""Where an export may go, and how a finished export replaces the previous one.

An export never replaces or writes into the home, the storage root, the Dagster instance or the
tables it reads, an export's inside or another robust-data home, nor anywhere inside the home
other than ``<home>/exports/NAME`` (:func:`check_target`, by
:func:`robust_data.store.targets.check_output`, the rules of every path written for the user).
The export is written into a temporary folder beside the target and swapped in at the end
(:func:`swap_in`), so a failure leaves the previous export as it was; folders that a killed
export left beside the target are removed, or the previous export restored, by the next export
to that target (:func:`remove_stale`).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from robust_data.export.layout import ExportError, safe_name
from robust_data.export.tables import UPSTREAM
from robust_data.io.atomic import pid_alive
from robust_data.store.store import Store
from robust_data.store.targets import (
    Output,
    TargetError,
    check_output,
    input_tables,
    inside,
    owned_paths,
)


def _inputs(store: Store, dataset: str) -> list[tuple[str, Path]]:
    """The local files of the tables an export of ``dataset`` reads (URLs left out)."""
    return input_tables(store, dataset, (*UPSTREAM, "variants"))


def _protected(store: Store, dataset: str) -> list[tuple[str, Path]]:
    """The folders and files no export may replace, resolved: home, store, instance, inputs.

    Tables at an fsspec URL are not local files and are left out.
    """
    inputs = [(what, path.resolve()) for what, path in _inputs(store, dataset)]
    return [*owned_paths(store), *inputs]


def check_target(store: Store, target: Path, dataset: str, force: bool = False) -> None:
    """Refuse an export folder the product must not replace or write into.

    The rules are those of every path written for the user
    (:func:`robust_data.store.targets.check_output`): ``target`` (resolved, symlinks included) may
    not be, nor hold, the home, the storage root, the Dagster instance or a table the export
    reads; it may not lie inside an export (only ``<home>/exports/NAME`` or a folder outside
    the home is an export's own folder), in the storage root or the instance; it may not be,
    hold or lie in another robust-data home; and it may not be a file. ``force`` overrides
    none of these, only "a non-empty folder that is not an export".

    Raises
    ------
    ExportError
        One line naming the folder it found and an ``out`` that works.
    """
    example = store.home.resolve() / "exports" / safe_name(dataset)
    output = Output("an `out` folder", "`out`", example, folder=True, options=("out",))
    try:
        check_output(store, target, output, force, _inputs(store, dataset))
    except TargetError as error:
        raise ExportError(error.expected, error.found, error.fix, options=error.options) from None


def owner_tag() -> str:
    """``<host>-<pid>`` of this process, put in the names of its temporary folders."""
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}"


def _stale_folders(target: Path) -> tuple[list[Path], list[Path]]:
    """(temporary, old) folders beside ``target`` left by exports whose process is gone.

    Only names an export makes are considered: ``.<name>.<host>-<pid>-<random>.tmp`` and
    ``.<name>.old-<host>-<pid>`` (``.<name>.old-<pid>`` from earlier versions), with the host
    being this one and no process ``pid`` alive.
    """
    name = re.escape(target.name)
    patterns = {
        "tmp": re.compile(rf"\.{name}\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[a-z0-9_]+\.tmp"),
        "old": re.compile(rf"\.{name}\.old-(?:(?P<host>[A-Za-z0-9]+)-)?(?P<pid>\d+)"),
    }
    host = owner_tag().rsplit("-", 1)[0]
    found: dict[str, list[Path]] = {"tmp": [], "old": []}
    if not target.parent.is_dir():
        return found["tmp"], found["old"]
    for entry in sorted(target.parent.glob(f".{glob.escape(target.name)}.*")):
        for kind, pattern in patterns.items():
            match = pattern.fullmatch(entry.name)
            if (
                match
                and match["host"] in (None, host)
                and entry.is_dir()
                and not entry.is_symlink()
                and not pid_alive(int(match["pid"]))
            ):
                found[kind].append(entry)
    return found["tmp"], found["old"]


@dataclass(frozen=True)
class StaleExports:
    """What :func:`remove_stale` cleared beside one export folder.

    Attributes
    ----------
    target : Path
        The export folder.
    removed : tuple of Path
        The temporary and old folders of stopped exports that are gone, ``restored`` included.
    restored : Path or None
        The ``.old-`` folder renamed back to ``target``: the previous export, which an export
        stopped between its two renames had moved aside.
    """

    target: Path
    removed: tuple[Path, ...] = ()
    restored: Path | None = None

    def lines(self) -> list[str]:
        """One line per folder, saying what became of it."""
        return [
            f"restored the previous export at {self.target}, which an export stopped between "
            f"its two renames had moved to {path}"
            if path == self.restored
            else f"removed {path}: left by an export that was stopped"
            for path in self.removed
        ]


def remove_stale(store: Store, target: Path, dataset: str) -> StaleExports:
    """Clear what killed exports left beside ``target``; say what became of each folder.

    When ``target`` itself is missing (an export was killed between its two renames), the
    newest stale ``.old-`` folder, the previous export, is renamed back to ``target`` first.
    Folders of live processes, of other hosts, and anything holding a protected path stay.
    """
    protected = [path for _, path in _protected(store, dataset)]
    tmps, olds = _stale_folders(target)
    tmps, olds = (
        [p for p in group if not any(inside(q, p.resolve()) for q in protected)]
        for group in (tmps, olds)
    )
    restored = None
    if olds and not target.exists():
        restored = max(olds, key=lambda path: path.stat().st_mtime)
        os.replace(restored, target)
    for path in (*tmps, *olds):
        if path != restored:
            shutil.rmtree(path, ignore_errors=True)
    gone = tuple(path for path in (*tmps, *olds) if not path.exists())
    return StaleExports(target, gone, restored)


def swap_in(tmp: Path, target: Path) -> None:
    """Replace ``target`` by ``tmp`` with renames; the old export is removed only at the end."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{owner_tag()}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
