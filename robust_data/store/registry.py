"""The dataset registry of a home: dataset name -> source spec and root, in ``datasets.json``.

The file lives at :attr:`Store.registry_location <robust_data.store.store.Store.registry_location>`
(the home, or the tables URL, so that every worker reads the same one) and is replaced whole
on every change (an atomic rename, or one put).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from robust_data.io.files import file_exists, read_bytes, write_bytes


@dataclass(frozen=True)
class Registration:
    """A dataset registered in a home: its partition name, source spec and local root.

    ``source`` and ``root`` are stored resolved (absolute paths), so a registration means the
    same data whatever the current directory; together they are the dataset's fingerprint.
    """

    name: str
    source: str
    root: str | None = None

    def fingerprint(self) -> tuple[str, str | None]:
        """What binds the name: the source spec and the root."""
        return (self.source, self.root)

    def describe(self) -> str:
        """The source as one phrase ('mnist (root /data/mnist)')."""
        return self.source + (f" (root {self.root})" if self.root else "")


def read_registry(location: str) -> dict[str, Registration]:
    """The registrations stored at ``location``, by name (none when there is no file)."""
    if not file_exists(location):
        return {}
    raw: dict[str, dict[str, Any]] = json.loads(read_bytes(location))
    return {name: Registration(name=name, **entry) for name, entry in raw.items()}


def write_registry(registrations: dict[str, Registration], location: str) -> None:
    """Replace the registry at ``location`` whole: readers see the old one or the new one."""
    entries = {n: {"source": r.source, "root": r.root} for n, r in registrations.items()}
    text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
    write_bytes(text.encode(), location)
