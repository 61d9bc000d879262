"""Bad input: one-line errors saying what was expected, what was found and how to fix it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robust_data import DatasetError, IngestOptions, ingest
from tests.fixtures import make_imagefolder, png_bytes, write_parquet


def one_line_error(spec: str, **kwargs: object) -> str:
    with pytest.raises(DatasetError) as info:
        ingest(spec, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("expected ") and "; found " in message
    return message


def test_unknown_dataset_lists_the_sources() -> None:
    message = one_line_error("minst")
    assert "'minst'" in message and "mnist-5k" in message and "robust-data datasets" in message


def test_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "dog").mkdir(parents=True)
    assert "an empty dataset" in one_line_error(f"imagefolder:{tmp_path / 'empty'}")


def test_folder_without_class_subfolders(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    assert "no subfolders" in one_line_error(f"imagefolder:{tmp_path / 'flat'}")


def test_one_class_only(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "solo", {"cat": 4})
    assert "at least 2 classes" in one_line_error(f"imagefolder:{root}")


def test_nothing_readable(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / "junk" / name).mkdir(parents=True)
        (tmp_path / "junk" / name / "x.png").write_bytes(b"not a png")
    message = one_line_error(f"imagefolder:{tmp_path / 'junk'}")
    assert "all 2 unreadable" in message


def test_labels_out_of_range(tmp_path: Path) -> None:
    images = [png_bytes(np.zeros((4, 4, 1), np.uint8))] * 4
    hf = {"info": {"features": {"label": {"_type": "ClassLabel", "names": ["a", "b"]}}}}
    path = write_parquet(
        tmp_path / "bad.parquet",
        {"image": images, "label": [0, 1, 1, 5]},
        {b"huggingface": json.dumps(hf).encode()},
    )
    assert "labels from 0 to 5" in one_line_error(f"parquet:{path}")
    negative = write_parquet(tmp_path / "neg.parquet", {"image": images, "label": [0, 1, -1, 1]})
    assert "found -1 at row 2" in one_line_error(f"parquet:{negative}")


def test_mixed_sizes_fail_then_resize(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "mixed", {"a": 3, "b": 3}, size=12)
    make_imagefolder(tmp_path / "mixed", {"c": 2}, size=16)
    message = one_line_error(f"imagefolder:{root}")
    assert "12x12: 6" in message and "16x16: 2" in message and "`resize=12x12`" in message
    samples = ingest(f"imagefolder:{root}", options=IngestOptions(resize=(12, 12))).samples
    assert samples.num_rows == 8 and set(samples.column("height").to_pylist()) == {12}


def test_mixed_channels_fail_then_convert(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "chan", {"a": 3}, channels=3)
    make_imagefolder(tmp_path / "chan", {"b": 3}, channels=1)
    message = one_line_error(f"imagefolder:{root}")
    assert "`channels=1`" in message
    samples = ingest(f"imagefolder:{root}", options=IngestOptions(channels=1)).samples
    assert set(samples.column("channels").to_pylist()) == {1}


def test_bad_split_values_and_missing_columns(tmp_path: Path) -> None:
    images = [png_bytes(np.zeros((4, 4, 1), np.uint8))] * 2
    path = write_parquet(
        tmp_path / "s.parquet", {"image": images, "label": [0, 1], "split": ["train", "dev"]}
    )
    assert "['dev']" in one_line_error(f"parquet:{path}")
    nolabel = write_parquet(tmp_path / "n.parquet", {"image": images, "cls": [0, 1]})
    assert "label column" in one_line_error(f"parquet:{nolabel}")


def test_bad_names_and_options() -> None:
    assert "pass `name=bad-name`" in one_line_error("digits", name="Bad Name!")
    with pytest.raises(DatasetError, match="channels 1 or 3"):
        IngestOptions(channels=2)
    with pytest.raises(DatasetError, match="test_fraction"):
        IngestOptions(test_fraction=1.5)
