"""Data safety at ingestion: pixel values and labels are never silently changed, and bad input
fails in one line naming the file, before anything is written.

Every input is built on the fly in ``tmp_path``: tiny PNGs, IDX files and Parquet tables.
"""

from __future__ import annotations

import gzip
import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, materialize
from PIL import Image

from robust_data import DatasetError, Store, ingest
from robust_data.ingest.images import decode_image
from tests.fixtures import make_idx_root, make_imagefolder, png_bytes, write_idx, write_parquet


def one_line_error(spec: str, **kwargs: object) -> str:
    """The DatasetError message ``ingest(spec)`` raises; it must be one line."""
    with pytest.raises(DatasetError) as info:
        ingest(spec, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and message.startswith("expected ")
    return message


def png16(values: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG (Pillow mode I;16) of (H, W) uint16 ``values``."""
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def small_pngs(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [png_bytes(rng.integers(0, 256, (4, 4, 1), dtype=np.uint8)) for _ in range(n)]


def stored_pixels(samples, row: int) -> np.ndarray:
    return decode_image(samples.column("image")[row]["bytes"].as_py())


# 1. 16-bit PNGs ---------------------------------------------------------------------------


def test_16bit_png_is_scaled_to_8bit_not_clipped_and_said(tmp_path: Path) -> None:
    ramp = np.array([[0, 32768, 65535], [256, 257, 65280]], dtype=np.uint16)
    for name in ("dark", "light"):  # 3 per class: ingest holds one of each out as test
        (tmp_path / "deep" / name).mkdir(parents=True)
        for file in ("a.png", "b.png", "c.png"):
            (tmp_path / "deep" / name / file).write_bytes(png16(ramp))
    result = ingest(f"imagefolder:{tmp_path / 'deep'}")
    pixels = stored_pixels(result.samples, 0)[:, :, 0]
    np.testing.assert_array_equal(pixels, [[0, 128, 255], [1, 1, 254]])
    assert any("16-bit" in note and "6 images" in note for note in result.notes)
    assert "16-bit" in result.samples.schema.metadata[b"robust_data.params"].decode()
    from robust_data.ingest.images import HIGH_BYTE_16BIT_NOTE, decode_image_noted

    rgb = np.array([[[0, 32768, 65535], [255, 256, 40000]]], dtype=">u2")  # 1x2 RGB, 16-bit
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb)
    header = struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
    )
    pixels, notes = decode_image_noted(png + png_chunk(b"IEND", b""))
    np.testing.assert_array_equal(pixels, [[[0, 128, 255], [0, 1, 156]]])
    assert notes == [HIGH_BYTE_16BIT_NOTE]


def test_the_cli_summary_says_what_ingest_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    ramp = np.array([[0, 32768, 65535], [256, 257, 65280]], dtype=np.uint16)
    for name in ("dark", "light"):
        for i in range(3):
            (tmp_path / "deep" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "deep" / name / f"{i}.png").write_bytes(png16(ramp + i))
    assert main(["ingest", f"imagefolder:{tmp_path / 'deep'}"]) == 0
    out = capsys.readouterr().out
    assert "note: 16-bit pixels scaled to 8-bit as round(v * 255 / 65535): 6 images" in out


# 2. Labels that are not small non-negative integers --------------------------------------


@pytest.mark.parametrize(
    ("labels", "shown"),
    [
        ([[0], [1], [1], [0]], "list<"),
        ([0, 1, 5_000_000, 1], "5000000 at row 2"),
        ([0, 1, 2**40, 1], f"{2**40} at row 2"),
        ([0, 1, -3, 1], "-3 at row 2"),
    ],
)
def test_bad_label_values_are_refused_in_one_line(
    tmp_path: Path, labels: list[object], shown: str
) -> None:
    path = write_parquet(tmp_path / "labels.parquet", {"image": small_pngs(4), "label": labels})
    message = one_line_error(f"parquet:{path}")
    assert shown in message and "'label'" in message and str(path) in message


def test_fractional_labels_are_refused_integral_floats_kept(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "f.parquet", {"image": small_pngs(4), "label": [0, 1, 1.5, 1.0]}
    )
    message = one_line_error(f"parquet:{path}")
    assert "1.5 at row 2" in message and "'label'" in message and str(path) in message
    labels = [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]  # 3 per class: ingest holds one of each out as test
    path = write_parquet(tmp_path / "g.parquet", {"image": small_pngs(6), "label": labels})
    assert ingest(f"parquet:{path}").samples.column("label").to_pylist() == [0, 1, 1, 0, 0, 1]


# 3. A label id with two names --------------------------------------------------------------


def test_label_id_with_two_names_is_refused(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "pets.parquet",
        {
            "image": small_pngs(4),
            "label": [3, 3, 1, 1],
            "label_name": ["cat", "dog", "bird", "bird"],
        },
    )
    message = one_line_error(f"parquet:{path}")
    assert "label 3" in message and "'cat'" in message and "'dog'" in message


def test_one_name_for_two_ids_is_refused(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "pets.parquet",
        {"image": small_pngs(4), "label": [0, 1, 2, 2], "label_name": ["cat", "cat", "x", "x"]},
    )
    message = one_line_error(f"parquet:{path}")
    assert "'cat'" in message and "labels 0 and 1" in message


# 4. Image folders with split folders -------------------------------------------------------


def test_imagefolder_val_folder_is_the_test_split_when_there_is_no_test(tmp_path: Path) -> None:
    make_imagefolder(tmp_path / "ds" / "train", {"cat": 3, "dog": 3}, size=6)
    make_imagefolder(tmp_path / "ds" / "validation", {"cat": 2, "dog": 2}, size=6, seed=1)
    samples = ingest(f"imagefolder:{tmp_path / 'ds'}").samples
    assert sorted(set(samples.column("label_name").to_pylist())) == ["cat", "dog"]
    splits = samples.column("split").to_pylist()
    assert splits.count("train") == 6 and splits.count("test") == 4


def test_imagefolder_train_test_and_val_is_refused(tmp_path: Path) -> None:
    for split in ("train", "test", "val"):
        make_imagefolder(tmp_path / "ds" / split, {"cat": 2, "dog": 2}, size=6)
    message = one_line_error(f"imagefolder:{tmp_path / 'ds'}")
    assert "'test'" in message and "'val'" in message and "train" in message


def test_imagefolder_mixed_split_and_class_folders_is_refused(tmp_path: Path) -> None:
    make_imagefolder(tmp_path / "ds" / "train", {"cat": 2, "dog": 2}, size=6)
    make_imagefolder(tmp_path / "ds", {"cat": 2, "dog": 2}, size=6)
    message = one_line_error(f"imagefolder:{tmp_path / 'ds'}")
    assert "['train']" in message and "['cat', 'dog']" in message


def test_imagefolder_loose_images_are_rejects_not_dropped(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "ds", {"cat": 3, "dog": 3}, size=6)
    (root / "stray.png").write_bytes(png_bytes(np.zeros((6, 6, 3), np.uint8)))
    result = ingest(f"imagefolder:{root}")
    (reject,) = result.rejects.to_pylist()
    assert reject["source_key"] == "stray.png" and "class folder" in reject["reason"]


# 5. A null in a Parquet split column ------------------------------------------------------


def test_null_split_is_refused_naming_the_rows(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "s.parquet",
        {
            "image": small_pngs(6),
            "label": [0, 1] * 3,
            "split": ["train", "train", "test", None, "train", "test"],
        },
    )
    message = one_line_error(f"parquet:{path}")
    assert "1 null" in message and "rows [3]" in message and "split" in message


def test_rows_without_a_split_beside_rows_with_one_are_refused(tmp_path: Path) -> None:
    write_parquet(tmp_path / "d" / "train.parquet", {"image": small_pngs(4), "label": [0, 1] * 2})
    write_parquet(tmp_path / "d" / "extra.parquet", {"image": small_pngs(2), "label": [0, 1]})
    message = one_line_error(f"parquet:{tmp_path / 'd'}")
    assert "2 rows without a split" in message and "extra.parquet#0" in message


# 6. Test-only data ------------------------------------------------------------------------


def test_test_only_sources_are_refused_before_anything_is_written(
    isolated_home: Path, tmp_path: Path
) -> None:
    make_idx_root(tmp_path / "mnist", n_train=0, n_test=20)
    message = one_line_error("mnist", root=str(tmp_path / "mnist"))
    assert "train split" in message and "train-images-idx3-ubyte" in message
    path = write_parquet(
        tmp_path / "t.parquet",
        {"image": small_pngs(4), "label": [0, 1] * 2, "split": ["test"] * 4},
    )
    assert "train split" in one_line_error(f"parquet:{path}")
    # through Dagster: the run fails on the DatasetError, not a blocking check, and no table is
    # written
    from assets import raw_samples_assets
    from assets.resources import ComputeResource, HomeResource, ParquetIOManager

    store = Store.open(isolated_home)
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("datasets", ["mnist"])
        result = materialize(
            [raw_samples_assets],
            partition_key="mnist",
            instance=instance,
            resources={
                "io_manager": ParquetIOManager(root=str(store.storage_root)),
                "home": HomeResource(path=str(store.home)),
                "compute": ComputeResource(),
            },
            run_config={
                "ops": {
                    "raw_samples_assets": {
                        "config": {"source": "mnist", "root": str(tmp_path / "mnist")}
                    }
                }
            },
            raise_on_error=False,
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    assert error.cls_name == "DatasetError" and "train split" in error.message
    assert not result.get_asset_check_evaluations()
    assert list(store.storage_root.rglob("*.parquet")) == []


def test_train_split_with_one_class_is_refused(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "t.parquet",
        {"image": small_pngs(4), "label": [0, 0, 0, 1], "split": ["train"] * 3 + ["test"]},
    )
    assert "only class '0'" in one_line_error(f"parquet:{path}")


# 7. Decompression bombs, empty IDX images, corrupt and oversized gzip ----------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width`` x ``height`` 8-bit gray pixels, with no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def test_decompression_bombs_are_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_imagefolder(tmp_path / "ds", {"a": 3, "b": 3}, size=4)
    (root / "b" / "huge.png").write_bytes(png_header_only(100_000, 100_000))
    (root / "b" / "big.png").write_bytes(png_bytes(np.zeros((5, 5, 3), np.uint8)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # 25 px: over it, under twice it: a warning
    result = ingest(f"imagefolder:{root}")
    reasons = {r["source_key"]: r["reason"] for r in result.rejects.to_pylist()}
    assert set(reasons) == {"b/huge.png", "b/big.png"}
    assert all("decompression bomb" in reason for reason in reasons.values())
    assert result.samples.num_rows == 6


def test_idx_with_0x0_images_is_one_line(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((5, 0, 0), np.uint8), gz=False)
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(5, dtype=np.uint8), gz=False)
    message = one_line_error("mnist", root=str(tmp_path))
    assert "1x1" in message and "train-images-idx3-ubyte" in message


def test_corrupt_gzip_idx_is_one_line_naming_the_file(tmp_path: Path) -> None:
    make_idx_root(tmp_path, n_train=20, n_test=0, gz=True)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[30:60] = b"\xff" * 30  # garbage inside the deflate stream
    path.write_bytes(bytes(data))
    assert str(path) in one_line_error("mnist", root=str(tmp_path))
    path.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    assert str(path) in one_line_error("mnist", root=str(tmp_path))


def test_idx_sizes_are_checked_before_the_body_is_read(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    images = write_idx(raw / "train-images-idx3-ubyte", np.zeros((10, 28, 28), np.uint8), gz=True)
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(10, dtype=np.uint8) % 2, gz=True)
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (10, 28, 28))
    with gzip.open(images, "wb") as handle:  # a valid header, then 32 MiB more than it declares
        handle.write(header + bytes(10 * 28 * 28))
        for _ in range(32):
            handle.write(bytes(1 << 20))
    tracemalloc.start()
    try:
        message = one_line_error("mnist", root=str(tmp_path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(images) in message and peak < 8 << 20
    with gzip.open(images, "wb") as handle:  # declares 784 MB in a file of a few hundred bytes
        handle.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (10**6, 28, 28)))
    message = one_line_error("mnist", root=str(tmp_path))
    assert str(images) in message and "784000000" in message
