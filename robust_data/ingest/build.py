"""Ingestion: read a source, validate it, split it, and build the samples and rejects tables."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from robust_data.errors import DatasetError
from robust_data.ingest.images import content_sha256, encode_png, resize_pixels
from robust_data.ingest.sources import LoadOptions, ResolvedSource, SourceData, resolve_source
from robust_data.ingest.splits import stratified_split
from robust_data.present.progress import progress_bar
from robust_data.present.summary import ROW_COUNT, StageSummary, logged
from robust_data.store.schema import IMAGE_TYPE, REJECTS_SCHEMA, SAMPLES_SCHEMA, table_metadata

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOptions:
    """How a source becomes a samples table.

    Attributes
    ----------
    seed : int
        Seed of the stratified split for sources without a test split.
    test_fraction : float
        Share of each class held out as test when the source has no test split, in (0, 1).
    resize : tuple of int, optional
        (height, width) to resize every image to; without it mixed sizes are an error.
    channels : int, optional
        Force 1 (grayscale) or 3 (RGB); without it mixed channel counts are an error.
    """

    seed: int = 0
    test_fraction: float = 0.2
    resize: tuple[int, int] | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        if self.channels not in (None, 1, 3):
            raise DatasetError(
                "channels 1 or 3",
                repr(self.channels),
                "pass `channels=1` or `channels=3`",
                options=("channels",),
            )
        if self.resize is not None and (len(self.resize) != 2 or min(self.resize) < 1):
            raise DatasetError(
                "resize as HEIGHTxWIDTH with both >= 1",
                repr(self.resize),
                "pass e.g. `resize=28x28`",
                options=("resize",),
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise DatasetError(
                "test_fraction in (0, 1)",
                repr(self.test_fraction),
                "pass e.g. `test_fraction=0.2`",
                options=("test_fraction",),
            )


@dataclass(frozen=True)
class IngestResult:
    """The tables one ingestion produced.

    Attributes
    ----------
    dataset : str
        Dataset (partition) name.
    samples : pa.Table
        Conforms to ``SAMPLES_SCHEMA``, with key-value metadata.
    rejects : pa.Table
        Conforms to ``REJECTS_SCHEMA``: what was left out and why.
    notes : tuple of str
        One line per way the stored pixels differ from the source's (16-bit images scaled
        to 8 bits, alpha dropped), with counts and example keys; also in the samples
        table's ``robust_data.params`` metadata under ``notes``.
    """

    dataset: str
    samples: pa.Table
    rejects: pa.Table
    notes: tuple[str, ...] = ()

    def class_counts(self) -> dict[str, int]:
        """Rows per ``label_name``, in label order."""
        names = self.samples.column("label_name").to_pylist()
        labels = self.samples.column("label").to_pylist()
        order = dict(sorted(set(zip(labels, names, strict=True))))
        counts = Counter(names)
        return {name: counts[name] for name in order.values()}

    def split_counts(self) -> dict[str, int]:
        """Rows per split."""
        return dict(sorted(Counter(self.samples.column("split").to_pylist()).items()))

    def summary(self) -> IngestSummary:
        """What the ingestion stored, for the asset's metadata and the CLI."""
        counts = IngestCounts(self.class_counts(), self.split_counts(), self.notes)
        return IngestSummary(
            rows=self.samples.num_rows, rejects=self.rejects.num_rows, counts=counts
        )


@dataclass(frozen=True)
class IngestCounts:
    """Images per class (label order) and per split, and the ingestion notes."""

    classes: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class IngestSummary(StageSummary):
    """The summary of one ingestion: rows stored, items rejected, and the counts (one entry)."""

    rows: int = field(metadata=logged(key=ROW_COUNT))
    rejects: int = 0
    counts: IngestCounts = field(default_factory=IngestCounts)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"28x28"`` to (28, 28); DatasetError otherwise."""
    height, sep, width = text.lower().partition("x")
    digits = "0123456789"  # not str.isdigit: it takes '²', which int() refuses
    if not sep or not height or not width or (set(height + width) - set(digits)):
        raise DatasetError(
            "a size HEIGHTxWIDTH", repr(text), "pass e.g. `resize=28x28`", options=("resize",)
        )
    return int(height), int(width)


def _validate_labels(data: SourceData, name: str) -> None:
    num_classes = len(data.label_names)
    low, high = int(data.labels.min()), int(data.labels.max())
    if low < 0 or high >= num_classes:
        raise DatasetError(
            f"labels in [0, {num_classes - 1}] for {num_classes} class names",
            f"labels from {low} to {high} in {name}",
            "fix the label column or provide all class names",
        )
    present = np.unique(data.labels)
    if len(present) < 2:
        raise DatasetError(
            "at least 2 classes",
            f"only class {data.label_names[int(present[0])]!r} in {name}",
            "add images of other classes",
        )


def _validate_train(data: SourceData, splits: list[str], name: str) -> None:
    """Refuse a dataset whose train split has fewer than 2 classes (curation trains on it)."""
    train = data.labels[np.asarray(splits) == "train"]
    present = np.unique(train)
    if len(present) >= 2:
        return
    counts = ", ".join(f"{s} {n:,}" for s, n in sorted(Counter(splits).items()))
    found = (
        f"only class {data.label_names[int(present[0])]!r} in the train split"
        if len(present)
        else "no train split"
    )
    raise DatasetError(
        "a train split with at least 2 classes (the models train on it)",
        f"{found} of dataset {name!r} (splits: {counts})",
        data.missing_train_fix,
    )


def _assign_splits(data: SourceData, options: IngestOptions) -> tuple[list[str], list[str]]:
    """Every sample's split, and a note when ingest made the test split.

    A source without splits is split by :func:`stratified_split`; so is a source whose
    splits hold no test data (a Parquet folder of ``train*`` files only, a ``train/`` folder
    alone, IDX or CIFAR train files without their test files), since curation scores the
    models on the test split. A source with a test split keeps its splits as they are.

    Returns
    -------
    splits : list of str
        (N,) ``"train"`` or ``"test"``.
    notes : list of str
        One line saying that the source's train data was split, when it was.
    """
    if data.splits and "test" in data.splits:
        return list(data.splits), []
    split = stratified_split(data.labels, data.keys, options.test_fraction, options.seed)
    if not data.splits:
        return split, []
    held_out = split.count("test")
    return split, [
        f"the source has a train split and no test split: held out {held_out:,} of "
        f"{len(split):,} train images as test ({options.test_fraction:g} of each class, "
        f"seed {options.seed}; `test_fraction` and `seed` change it)"
    ]


def _validate_test(data: SourceData, splits: list[str], options: IngestOptions, name: str) -> None:
    """Refuse a dataset that ends without a test split (curation scores the models on it)."""
    if "test" in splits:
        return
    largest = int(np.bincount(data.labels).max())
    raise DatasetError(
        "a test split of at least one image (the models are scored on it)",
        f"no test split in dataset {name!r}: holding out {options.test_fraction:g} of each "
        f"class leaves every image in train ({len(splits):,} images, at most {largest:,} "
        "per class)",
        "add images, pass a larger `test_fraction`, or give the source a test split",
        options=("test_fraction",),
    )


def _unify_shapes(pixels: list[np.ndarray], options: IngestOptions, name: str) -> list[np.ndarray]:
    channels = Counter(p.shape[2] for p in pixels)
    if len(channels) > 1:
        if options.channels is None:
            raise DatasetError(
                "one channel count for all images",
                f"{dict(channels)} (channels: images) in {name}",
                "pass `channels=1` or `channels=3` to convert",
                options=("channels",),
            )
    if options.channels is not None:
        pixels = [_convert_channels(p, options.channels) for p in pixels]
    sizes = Counter(p.shape[:2] for p in pixels)
    if options.resize is not None:
        return [
            p if p.shape[:2] == options.resize else resize_pixels(p, options.resize) for p in pixels
        ]
    if len(sizes) > 1:
        common = sizes.most_common(1)[0][0]
        shown = ", ".join(f"{h}x{w}: {n}" for (h, w), n in sizes.most_common(4))
        raise DatasetError(
            "one image size for all images",
            f"{len(sizes)} sizes ({shown}) in {name}",
            f"pass `resize={common[0]}x{common[1]}` to resize them",
            options=("resize",),
        )
    return pixels


def _convert_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if pixels.shape[2] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=2)
    weights = np.asarray([0.299, 0.587, 0.114])  # ITU-R 601 luma, as Pillow's "L"
    return np.rint(pixels.astype(np.float64) @ weights).clip(0, 255).astype(np.uint8)[:, :, None]


def _rejects_table(name: str, data: SourceData) -> pa.Table:
    return pa.table(
        {
            "dataset": [name] * len(data.rejects),
            "source_key": [r.source_key for r in data.rejects],
            "reason": [r.reason for r in data.rejects],
        },
        schema=REJECTS_SCHEMA,
    )


def _encode(pixels: list[np.ndarray], name: str) -> tuple[list[bytes], list[str]]:
    blobs, hashes = [], []
    for p in progress_bar(pixels, desc=f"encode {name}", unit="img", leave=False, mininterval=1.0):
        blobs.append(encode_png(p))
        hashes.append(content_sha256(p))
    return blobs, hashes


def build_samples(
    resolved: ResolvedSource, data: SourceData, options: IngestOptions
) -> IngestResult:
    """Validate decoded source data and build the samples and rejects tables.

    Raises
    ------
    DatasetError
        Empty dataset, nothing readable, fewer than 2 classes (overall or in train), no test
        split after splitting, labels out of range, mixed sizes or channel counts (unless
        ``options`` resize/convert), duplicate keys.
    """
    name = resolved.name
    if len(data) == 0:
        if data.rejects:
            first = data.rejects[0]
            raise DatasetError(
                "at least one readable image",
                f"all {len(data.rejects)} unreadable in {name} "
                f"(first: {first.source_key}: {first.reason})",
                "check the files are PNG/JPEG images",
            )
        raise DatasetError(
            "at least one image", f"an empty dataset {name!r}", "check the source path and layout"
        )
    _validate_labels(data, name)
    pixels = list(data.pixels) if isinstance(data.pixels, np.ndarray) else data.pixels
    pixels = _unify_shapes(pixels, options, name)
    splits, split_notes = _assign_splits(data, options)
    _validate_train(data, splits, name)
    _validate_test(data, splits, options, name)
    notes = [*data.notes, *split_notes]
    sample_ids = [f"{name}:{s}:{k}" for s, k in zip(splits, data.keys, strict=True)]
    if len(set(sample_ids)) != len(sample_ids):
        dupes = [k for k, n in Counter(sample_ids).items() if n > 1][:3]
        raise DatasetError(
            "unique source keys per split", f"repeated ids {dupes}", "remove the duplicated entries"
        )
    blobs, hashes = _encode(pixels, name)
    height, width, channels = pixels[0].shape
    n = len(pixels)
    image = pa.StructArray.from_arrays(
        [pa.array(blobs, pa.binary()), pa.array(data.paths or [None] * n, pa.string())],
        fields=list(IMAGE_TYPE),
    )
    for note in notes:
        logger.warning("%s: %s", name, note)
    params = {
        "source_params": data.params,
        "options": asdict(options),
        "dataset": name,
        "notes": notes,
    }
    samples = pa.table(
        {
            "sample_id": sample_ids,
            "dataset": [name] * n,
            "content_sha256": hashes,
            "split": splits,
            "label": data.labels.astype(np.int64),
            "label_name": [data.label_names[i] for i in data.labels.tolist()],
            "image": image,
            "height": np.full(n, height, dtype=np.int32),
            "width": np.full(n, width, dtype=np.int32),
            "channels": np.full(n, channels, dtype=np.int32),
        },
        schema=SAMPLES_SCHEMA.with_metadata(table_metadata("raw_samples", resolved.spec, params)),
    )
    rejects = _rejects_table(name, data).replace_schema_metadata(
        table_metadata("ingest_rejects", resolved.spec, params)
    )
    return IngestResult(dataset=name, samples=samples, rejects=rejects, notes=tuple(notes))


def ingest(
    spec: str,
    root: str | None = None,
    name: str | None = None,
    options: IngestOptions | None = None,
) -> IngestResult:
    """Read a dataset source into a samples table (and a rejects table).

    Parameters
    ----------
    spec : str
        A registry name (``digits``, ``mnist``...) or ``imagefolder:PATH`` / ``parquet:PATH``.
    root : str, optional
        Local root folder for sources that need one (mnist, cifar10, ...).
    name : str, optional
        Dataset name; defaults to the registry name or a slug of the path.
    options : IngestOptions, optional

    Returns
    -------
    IngestResult
        ``samples`` has one row per readable image; ``rejects`` one per unreadable one.

    Raises
    ------
    DatasetError
        One line: what was expected, what was found, how to fix it.
    """
    options = options or IngestOptions()
    resolved = resolve_source(spec, root=root, name=name)
    data = resolved.load(LoadOptions(channels=options.channels))
    return build_samples(resolved, data, options)
