"""The corrupted test set: every test image under every corruption and severity, made once.

One table per dataset, stored by the ``corrupted_test`` asset and read by the report for every
model (and by later runs), so a corruption is computed once per (dataset, corruption,
severity, seed) however many models are evaluated. Pixels are stored as uint8, as corruption
benchmarks ship them (MNIST-C, ImageNet-C): ``round(255 * x)``; the models read ``u8 / 255``.
Rows are grouped by job (clean first, then each corruption's severities in suite order), the
samples of a job in test-split order, so a job is a contiguous slice of rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from robust_data.errors import DatasetError
from robust_data.present.progress import progress_bar
from robust_data.report.corruption_suite import Chunk, corrupt_chunks, suite_jobs
from robust_data.store.checks import CheckOutcome, schema_problems
from robust_data.store.schema import column, read_params, table_metadata

CORRUPTED_SCHEMA = pa.schema(
    [
        column("sample_id", pa.string(), "The test image it was made from", nullable=False),
        column(
            "corruption", pa.string(), 'Corruption name; "clean" for the original', nullable=False
        ),
        column("severity", pa.int32(), "1..5; 0 for clean", nullable=False),
        column("label", pa.int64(), "The test image's label", nullable=False),
        column("pixels", pa.binary(), "C*H*W uint8, channel-major", nullable=False),
    ]
)
"""One row per (test image, job)."""


@dataclass(frozen=True)
class CorruptedTestOptions:
    """Which corruptions :func:`make_corrupted_test` applies, and how.

    Attributes
    ----------
    corruptions : tuple of str
        Corruption names; empty: every corruption of the library.
    seed : int
        Seed of the corruptions.
    batch_size : int
        Images corrupted at a time; bounds the float memory in use.
    """

    corruptions: tuple[str, ...] = ()
    seed: int = 0
    batch_size: int = 1024


def make_corrupted_test(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    sample_ids: Sequence[str],
    options: CorruptedTestOptions = CorruptedTestOptions(),
    source: str = "",
    progress: bool = True,
) -> pa.Table:
    """Corrupt the test images under every corruption and severity, as a stored table.

    Parameters
    ----------
    images : array
        (N, C, H, W) float in [0, 1], the test split.
    labels : np.ndarray
        (N,) int.
    sample_ids : sequence of str
        (N,) ids; each seeds its own image's corruption.
    options : CorruptedTestOptions
        The corruptions, their seed and the batch size.

    Returns
    -------
    pa.Table
        :data:`CORRUPTED_SCHEMA`, ``N * (1 + sum of severities)`` rows, one chunk per job, with
        the robust_data table metadata (params: seed, shape, corruptions, samples).

    Raises
    ------
    RobustDataError
        For an unknown corruption name.
    ValueError
        For images that are not (N, C, H, W).
    """
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.dim() != 4:
        raise ValueError(f"expected test images of shape (N, C, H, W); found {tuple(x.shape)}")
    jobs = suite_jobs(options.corruptions or None)
    seed = options.seed
    ids = pa.array(list(sample_ids), pa.string())
    y = pa.array(np.asarray(labels, np.int64))
    per_job: list[np.ndarray | None] = [None] * len(jobs)
    parts: list[np.ndarray] = []  # the current job's chunks, joined when the next job starts
    current = 0
    bar = progress_bar(
        total=len(jobs) * len(x),
        desc="corrupted test set",
        unit="img",
        mininterval=0.5,
        disable=not progress,
    )
    for j, _, chunk in corrupt_chunks(x, sample_ids, jobs, seed, options.batch_size):
        if j != current:  # chunks come job by job: one job's pieces exist at a time
            per_job[current], parts, current = _joined(parts), [], j
        parts.append(to_uint8(chunk))
        bar.update(len(chunk))
    per_job[current] = _joined(parts)
    bar.close()
    batches = [
        pa.record_batch(
            [
                ids,
                pa.array([corruption] * len(x), pa.string()),
                pa.array([severity] * len(x), pa.int32()),
                y,
                _pixels(rows if rows is not None else np.zeros((0, 0), np.uint8)),
            ],
            schema=CORRUPTED_SCHEMA,
        )
        for (corruption, severity), rows in zip(jobs, per_job, strict=True)
    ]
    params = {
        "seed": seed,
        "shape": list(x.shape[1:]),
        "samples": len(x),
        "corruptions": list(dict.fromkeys(c for c, _ in jobs if c != "clean")),
        "jobs": len(jobs),
    }
    metadata = table_metadata("corrupted_test", source or "raw_samples (test split)", params)
    return pa.Table.from_batches(batches, CORRUPTED_SCHEMA).replace_schema_metadata(metadata)


def _joined(parts: list[np.ndarray]) -> np.ndarray | None:
    return np.concatenate(parts) if parts else None


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) floats in [0, 1] as (B, C*H*W) uint8, ``round(255 * x)``."""
    scaled = torch.round(images.float().clamp(0, 1) * 255).to(torch.uint8)
    return scaled.reshape(len(images), -1).cpu().numpy()


def _pixels(rows: np.ndarray) -> pa.Array:
    """(B, D) uint8 as a binary array of B values of D bytes (no copy of the pixel data)."""
    width = rows.shape[1] if rows.ndim == 2 else 0
    offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32) * width)
    data = pa.py_buffer(np.ascontiguousarray(rows))
    return pa.Array.from_buffers(pa.binary(), len(rows), [None, offsets.buffers()[1], data])


def corrupted_jobs(table: pa.Table) -> list[tuple[str, int]]:
    """(corruption, severity) of each job of a stored corrupted test set, in row order."""
    pairs = zip(
        table.column("corruption").to_pylist(), table.column("severity").to_pylist(), strict=True
    )
    return list(dict.fromkeys(pairs))


def stored_chunks(table: pa.Table, batch_size: int = 1024) -> Iterator[Chunk]:
    """The images of a stored corrupted test set, job by job, as float32 in [0, 1].

    Yields
    ------
    Chunk
        Job index (into :func:`corrupted_jobs`), first row within the job, (B, C, H, W) images.

    Raises
    ------
    DatasetError
        When the table's jobs do not all have the same number of rows.
    """
    shape = tuple(read_params(table.schema).get("shape", ()))
    jobs = corrupted_jobs(table)
    if not jobs:
        return
    n = table.num_rows // len(jobs)
    if n * len(jobs) != table.num_rows or len(shape) != 3:
        raise DatasetError(
            f"{len(jobs)} jobs of equal size and an image shape in the metadata",
            f"{table.num_rows} rows and shape {shape}",
            "re-materialize corrupted_test",
        )
    for j in range(len(jobs)):
        for start in range(0, n, max(1, batch_size)):
            rows = table.slice(j * n + start, min(batch_size, n - start))
            pixels = _decode(rows.column("pixels"), int(np.prod(shape)))
            images = torch.from_numpy(pixels).reshape(-1, *shape).float().div_(255)
            yield j, start, images


def _decode(column: pa.ChunkedArray, width: int) -> np.ndarray:
    """(B, width) uint8 from a binary column whose values are each ``width`` bytes."""
    parts = []
    for array in column.chunks:
        offsets = np.frombuffer(array.buffers()[1], np.int32)[
            array.offset : array.offset + len(array) + 1
        ]
        data = np.frombuffer(array.buffers()[2], np.uint8)
        if len(array) and not np.all(np.diff(offsets) == width):
            raise DatasetError(
                f"{width} bytes of pixels per row",
                "rows of other lengths",
                "re-materialize corrupted_test",
            )
        if len(array):
            parts.append(data[offsets[0] : offsets[-1]].reshape(-1, width))
    return np.concatenate(parts) if parts else np.zeros((0, width), np.uint8)


def check_corrupted_test(table: pa.Table, samples: pa.Table) -> CheckOutcome:
    """``corrupted_test``: schema; every job holds exactly the test split's ids and labels, in
    order; every row's pixels have the image's byte count."""
    problems = schema_problems(table, CORRUPTED_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": table.num_rows})
    test = samples.filter(pc.equal(samples.column("split"), "test"))
    ids, labels = test.column("sample_id").to_pylist(), test.column("label").to_pylist()
    jobs = corrupted_jobs(table)
    if not ids:
        problems.append("the dataset has no test split")
    if table.num_rows != len(ids) * len(jobs):
        problems.append(
            f"{table.num_rows} rows, expected {len(ids)} test images x {len(jobs)} jobs"
        )
    else:
        for j, (corruption, severity) in enumerate(jobs):
            rows = table.slice(j * len(ids), len(ids))
            if (
                rows.column("sample_id").to_pylist() != ids
                or rows.column("label").to_pylist() != labels
            ):
                problems.append(
                    f"{corruption}/{severity}: ids or labels differ from the test split"
                )
    params = read_params(table.schema)
    width = int(np.prod(params.get("shape", [0])))
    lengths = pc.binary_length(table.column("pixels"))
    wrong = table.num_rows - pc.sum(pc.equal(lengths, width)).as_py() if table.num_rows else 0
    if wrong:
        problems.append(f"{wrong} rows whose pixels are not {width} bytes")
    return CheckOutcome(problems, {"rows": table.num_rows, "jobs": len(jobs), "samples": len(ids)})
