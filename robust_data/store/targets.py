"""Where robust-data writes for the user: one check for every path a command is told to write.

An export's folder (``export --out DIR`` on the command line), a review CSV
(``review export DATASET FILE``), ``score-model --plot FILE`` and the files of
``gallery --out DIR`` go through :func:`check_output` before anything is written. A target
(symlinks resolved) is refused when it

- is, or holds, the home, its storage root, its Dagster instance or a table the command
  reads;
- lies inside an export (a folder whose ``lineage.json`` carries :data:`EXPORT_MARKER`): an
  export is only ever replaced whole, by an export to its own folder;
- lies inside the storage root or the Dagster instance, or inside the home anywhere but an
  export folder of its own, ``<home>/exports/NAME`` (a file: nowhere in the home);
- is, holds or lies inside another robust-data home (recognised by its layout,
  :func:`is_home`), wherever it is;
- is an existing file, or a non-empty folder that is not an export, unless ``force``.

``force`` overrides only the last rule. Each refusal is one line (:class:`TargetError`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from robust_data.errors import DatasetError
from robust_data.io.atomic import write_bytes_atomic
from robust_data.io.files import is_url, local_path
from robust_data.store.home import table_location
from robust_data.store.store import Store

#: ``lineage.json``'s ``format`` in every export folder: what marks a folder as an export.
EXPORT_MARKER = "robust-data-export/1"
#: How the ``dagster/dagster.yaml`` of a home opens (written by ``pipelines.home.prepare_home``).
HOME_MARKER = "# Written by robust-data."
#: Files a home holds beside its ``store/`` or ``dagster/`` folder once a command has run.
HOME_FILES = ("datasets.json", ".lock", ".reviews.lock")


class TargetError(DatasetError):
    """A path the product will not write for the user, as one line."""


@dataclass(frozen=True)
class Output:
    """A path a command writes for the user, as its refusals name it.

    Attributes
    ----------
    label : str
        What the path is, after "expected": "an `out` folder", "a review CSV file".
    option : str
        The option or argument that names it: "`out`", "path".
    example : Path
        A path that would be accepted, named in the fix.
    folder : bool
        An export folder (replaced whole; ``<home>/exports/NAME`` allowed) rather than a file.
    options : tuple of str
        The options ``label`` and ``option`` name (:class:`robust_data.errors.RobustDataError`).
    """

    label: str
    option: str
    example: Path
    folder: bool = False
    options: tuple[str, ...] = ()

    def fix(self) -> str:
        """The fix: choose another `out`, e.g. <example>."""
        return f"choose another {self.option}, e.g. {self.example}"


def is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an export: a ``lineage.json`` with :data:`EXPORT_MARKER`."""
    try:
        lineage = json.loads((folder / "lineage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(lineage, dict) and lineage.get("format") == EXPORT_MARKER


def is_home(folder: Path) -> bool:
    """Whether ``folder`` is a robust-data home, by its layout.

    A home holds ``dagster/dagster.yaml`` opening with :data:`HOME_MARKER`, or a ``store/``
    or ``dagster/`` folder beside one of :data:`HOME_FILES` (the registry, the locks).
    """
    try:
        with open(folder / "dagster" / "dagster.yaml", encoding="utf-8") as handle:
            if handle.readline().startswith(HOME_MARKER):
                return True
    except (OSError, ValueError):
        pass
    if not ((folder / "store").is_dir() or (folder / "dagster").is_dir()):
        return False
    return any((folder / name).is_file() for name in HOME_FILES)


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (both absolute)."""
    return path == folder or folder in path.parents


def input_tables(store: Store, dataset: str, names: Sequence[str]) -> list[tuple[str, Path]]:
    """The local files of tables ``names`` of ``dataset``, as :func:`check_output`'s ``inputs``
    (``("input table raw_samples", path)``); tables at an fsspec URL are left out."""
    found = []
    for name in names:
        location = table_location(store.tables_root, name, dataset)
        if not is_url(location):
            found.append((f"input table {name}", local_path(location)))
    return found


def owned_paths(store: Store) -> list[tuple[str, Path]]:
    """The home, storage root and Dagster instance of ``store``, resolved, innermost last."""
    found = [
        ("home", store.home),
        ("storage root", store.storage_root),
        ("Dagster instance", store.dagster_home),
    ]
    return [(what, path.resolve()) for what, path in found]


def written_path(path: str | os.PathLike[str], folder: bool) -> Path:
    """The absolute path a write to ``path`` changes.

    A folder is replaced where its symlinks lead (resolved whole); a file is renamed over its
    last component, so only its parent folder's symlinks are resolved.
    """
    target = Path(path).expanduser()
    if folder:
        return target.resolve()
    target = target.absolute()
    return Path(os.path.realpath(target.parent)) / target.name


def check_output(
    store: Store,
    path: str | os.PathLike[str],
    output: Output,
    force: bool = False,
    inputs: Sequence[tuple[str, Path]] = (),
) -> Path:
    """Refuse a path the product must not write for the user (see the module docs).

    Parameters
    ----------
    store : Store
        The command's home: its own folders are protected, its ``exports/`` allowed.
    path : path
        The path the user named.
    output : Output
        What the path is for, as the refusals name it.
    force : bool
        Replace an existing file, or a non-empty folder that is not an export.
    inputs : sequence of (str, Path)
        More paths that may not be replaced, nor a folder holding them: ``("input table
        raw_samples", path)``.

    Returns
    -------
    Path
        The absolute path that will be written (:func:`written_path`).

    Raises
    ------
    TargetError
        One line naming the path, what it is or lies in, and a path that works.
    """
    target = written_path(path, output.folder)
    protected = [*owned_paths(store), *((what, p.resolve()) for what, p in inputs)]
    _refuse_owned(target, protected, output)
    _refuse_in_export(target, output)
    _refuse_in_home(target, store, output)
    _refuse_other_homes(target, store.home.resolve(), output)
    _refuse_existing(target, output, force)
    if output.folder and target.is_dir():
        _refuse_holding_a_home(target, store.home.resolve(), output)
    return target


def _refuse_owned(target: Path, protected: Sequence[tuple[str, Path]], output: Output) -> None:
    """The target is, or holds, the home, storage root, instance or an input."""
    for what, path in protected:
        if inside(path, target):
            relation = "is" if path == target else "holds"
            raise TargetError(
                f"{output.label} apart from the home, storage root, Dagster instance and "
                "input tables",
                f"{target}, which {relation} the {what} {path}",
                output.fix(),
                options=output.options,
            )


def _refuse_in_export(target: Path, output: Output) -> None:
    """The target lies inside an export folder (an export's data is replaced only whole)."""
    for folder in target.parents:
        if is_export(folder):
            raise TargetError(
                f"{output.label} outside every export (an export is replaced only whole)",
                f"{target}, inside the export {folder}",
                output.fix(),
                options=output.options,
            )


def _refuse_in_home(target: Path, store: Store, output: Output) -> None:
    """The target lies in the instance, the storage root or the home (exports/NAME aside)."""
    home = store.home.resolve()
    exports = home / "exports"
    for what, folder in reversed(owned_paths(store)):  # the innermost folder names it best
        if not inside(target, folder):
            continue
        if output.folder and what != "Dagster instance" and target.parent == exports:
            return
        if not output.folder:
            expected = f"{output.label} outside the home and its storage root"
        elif exports in target.parents and what == "home":
            first = exports / target.relative_to(exports).parts[0]
            raise TargetError(
                f"{output.label} one level under {exports} (an export folder of its own) "
                "or outside the home",
                f"{target}, inside {first}",
                output.fix(),
                options=output.options,
            )
        else:
            expected = f"{output.label} under {exports} or outside the home"
        found = f"{target}, inside the {what} {folder}"
        raise TargetError(expected, found, output.fix(), options=output.options)


def _refuse_other_homes(target: Path, own: Path, output: Output) -> None:
    """The target is, or lies inside, a robust-data home other than the command's own."""
    for folder in (target, *target.parents):
        if folder != own and is_home(folder):
            relation = "is" if folder == target else "lies inside"
            raise TargetError(
                f"{output.label} apart from every other robust-data home",
                f"{target}, which {relation} the robust-data home {folder}",
                output.fix(),
                options=output.options,
            )


def _homes_under(folder: Path) -> Iterator[Path]:
    """Robust-data homes below ``folder`` (symlinks not followed), shallowest first."""
    for parent, folders, _ in os.walk(folder):
        for name in sorted(folders):
            if name in ("store", "dagster") and is_home(Path(parent)):
                yield Path(parent)
                folders.clear()  # nothing of a home is searched further
                break


def _refuse_holding_a_home(target: Path, own: Path, output: Output) -> None:
    """A folder to be replaced holds another robust-data home somewhere below it."""
    for home in _homes_under(target):
        if home != target and home != own:
            raise TargetError(
                f"{output.label} apart from every other robust-data home",
                f"{target}, which holds the robust-data home {home}",
                output.fix(),
                options=output.options,
            )


def _refuse_existing(target: Path, output: Output, force: bool) -> None:
    """A file where a folder goes (or the reverse), or an existing file without ``force``."""
    if output.folder:
        if target.exists() and not target.is_dir():
            raise TargetError(
                f"{output.option} to be a folder",
                f"a file at {target}",
                f"choose another {output.option}, or move the file away",
                options=output.options,
            )
        if target.is_dir() and not force and any(target.iterdir()) and not is_export(target):
            raise TargetError(
                f"an empty folder or an earlier export at {target}",
                "other files",
                f"pass `force=True` to replace it, or choose another {output.option}",
                options=(*output.options, "force"),
            )
        return
    if target.is_dir():
        raise TargetError(
            f"{output.label} to be a file",
            f"a folder at {target}",
            output.fix(),
            options=output.options,
        )
    above = next(p for p in target.parents if p.exists())
    if not above.is_dir():
        raise TargetError(
            f"a folder to hold {target.name}",
            f"a file at {above}",
            output.fix(),
            options=output.options,
        )
    if os.path.lexists(target) and not force:
        raise TargetError(
            f"{output.label} that does not exist yet",
            f"a file at {target}",
            "pass `force=True` to replace it, or choose another path",
            options=(*output.options, "force"),
        )


def example_file(store: Store, name: str) -> Path:
    """``./name``, or ``<folder holding the home>/name`` when the working folder is in the home."""
    here = Path.cwd().resolve()
    if any(inside(here, folder) for _, folder in owned_paths(store)):
        return store.home.resolve().parent / name
    return here / name


def write_output(data: bytes, target: Path) -> Path:
    """Write a checked target (:func:`check_output`) atomically; an OSError as one line.

    Raises
    ------
    TargetError
        When the folder cannot be created or written (permissions, a read-only file system).
    """
    try:
        return write_bytes_atomic(data, target)
    except OSError as error:
        raise TargetError(
            f"a folder you can write for {target.name}",
            f"{target.parent} ({error.strerror or error})",
            "choose another path, or fix the folder's permissions",
        ) from None
