"""Exports that every reader accepts: pandas, pyarrow, DuckDB, Hugging Face ``datasets`` (offline),
torchvision and ``CuratedDataset``; one typed schema for every split; a card whose YAML matches
the files; a lineage with relative paths and the sha256 of every exported file."""

from __future__ import annotations

import glob
import hashlib
import shutil
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import yaml

import robust_data.export.export as export_module
from robust_data.export.layout import FORMATS
from robust_data.ingest.images import decode_image
from robust_data.store.schema import table_metadata
from robust_data.store.store import Store
from tests.fixtures import png_bytes
from tests.test_safety_export_query import DATASET, make_store

SPLITS = {"train": 6 + 3, "test": 4}  # six kept samples and three variants; four test samples
SCORES = {
    "label_quality": pa.float64(),
    "is_label_issue": pa.bool_(),
    "suggested_label": pa.int64(),
    "outlier_score": pa.float64(),
    "is_outlier": pa.bool_(),
    "near_duplicate_group": pa.int64(),  # as make_store stores it
    "clean_pred": pa.int64(),
    "clean_correct": pa.bool_(),
    "steps_to_flip": pa.int32(),  # null in every row, typed by the stored rpr_scores
    "robust": pa.bool_(),
    "flip_pred": pa.int64(),
    "parent_sample_id": pa.string(),
    "transform": pa.string(),
}


def _write_variants(store: Store) -> None:
    """Two variants of the first kept sample and one of the second (both of class 0 and 1)."""
    from robust_data.variants.make import VARIANTS_SCHEMA

    parents = [(f"{DATASET}:train:0", 0), (f"{DATASET}:train:0", 0), (f"{DATASET}:train:1", 1)]
    images = [png_bytes(np.full((4, 4, 1), 200 + k, np.uint8)) for k in range(3)]
    table = pa.table(
        {
            "variant_id": [f"{p}~pixels~{k}" for k, (p, _) in enumerate(parents)],
            "parent_sample_id": [p for p, _ in parents],
            "split": ["train"] * 3,
            "transform": ["pixels"] * 3,
            "kind": ["perturbation"] * 3,
            "severity": pa.array([None] * 3, pa.int32()),
            "seed": [0, 1, 2],
            "label": [label for _, label in parents],
            "label_name": [f"class {label}" for _, label in parents],
            "image": [{"bytes": b, "path": None} for b in images],
        },
        schema=VARIANTS_SCHEMA,
    )
    path = store.storage_root / "variants" / f"{DATASET}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _set_source(store: Store, spec: str) -> None:
    """Stamp raw_samples with the source spec ingest records."""
    path = store.storage_root / "raw_samples" / f"{DATASET}.parquet"
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata(table_metadata("raw_samples", spec, {})), path)


@pytest.fixture
def store(isolated_home: Path) -> Store:
    store = make_store(Store.open(isolated_home).ensure())
    _write_variants(store)
    return store


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hugging Face ``datasets`` offline, its caches under tmp_path (env and loaded config)."""
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    import datasets.config

    for name, value in {
        "HF_HUB_OFFLINE": True,
        "HF_DATASETS_OFFLINE": True,
        "HF_CACHE_HOME": str(cache),
        "HF_DATASETS_CACHE": cache / "datasets",
        "HF_MODULES_CACHE": cache / "modules",
        "DOWNLOADED_DATASETS_PATH": cache / "downloads",
        "EXTRACTED_DATASETS_PATH": cache / "extracted",
    }.items():
        monkeypatch.setattr(datasets.config, name, value)
    return cache


def _load(hf_cache: Path, *args: str, **kwargs: str) -> Any:
    import datasets

    return datasets.load_dataset(*args, cache_dir=str(hf_cache / "datasets"), **kwargs)


def _pixels_by_id(store: Store) -> dict[str, int]:
    """The (constant) pixel value of every sample and variant image, by id."""
    raw = store.read("raw_samples", DATASET).to_pylist()
    variants = store.read("variants", DATASET).to_pylist()
    found = {r["sample_id"]: r["image"]["bytes"] for r in raw}
    found.update({v["variant_id"]: v["image"]["bytes"] for v in variants})
    return {key: int(decode_image(blob).flat[0]) for key, blob in found.items()}


def _front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n"), card[:80]
    header, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(header)


# ---------------------------------------------------------------------------------------------
# Parquet


def test_parquet_export_reads_in_every_reader(store: Store, tmp_path: Path, hf_cache: Path) -> None:
    result = export_module.export_dataset(store, DATASET, tmp_path / "out", with_variants=True)
    out = result.path
    assert result.rows == SPLITS
    files = {split: out / "data" / f"{split}-00000-of-00001.parquet" for split in SPLITS}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == sorted(
        p.relative_to(out).as_posix() for p in files.values()
    )
    # one typed schema in every split: no null-typed column, the stored tables' types
    schemas = {split: pq.read_schema(path) for split, path in files.items()}
    assert schemas["train"] == schemas["test"]
    schema = schemas["train"]
    assert not [f.name for f in schema if pa.types.is_null(f.type)]
    assert {name: schema.field(name).type for name in SCORES} == SCORES

    frame = pd.read_parquet(out / "data")
    assert frame.groupby("split").size().to_dict() == SPLITS
    assert frame["label_quality"].dtype == np.float64

    table = pads.dataset(out / "data").to_table()
    assert table.num_rows == sum(SPLITS.values()) and table.schema.remove_metadata() == (
        schema.remove_metadata()
    )

    counts = duckdb.sql(
        f"SELECT split, count(*), count(label_quality) FROM read_parquet('{out}/**/*.parquet') "
        "GROUP BY split ORDER BY split"
    ).fetchall()
    assert counts == [("test", 4, 0), ("train", 9, 6)]

    pixels = _pixels_by_id(store)
    for loaded in (
        _load(hf_cache, "parquet", data_dir=str(out / "data")),
        _load(hf_cache, str(out)),  # the card's configs
    ):
        assert {split: data.num_rows for split, data in loaded.items()} == SPLITS
        assert loaded["train"].features["label"].names == ["class 0", "class 1"]
        assert loaded["train"].features == loaded["test"].features
        assert loaded["test"].features["label_quality"].dtype == "float64"
        row = loaded["test"][0]
        assert row["image"].size == (4, 4)  # decoded to a PIL image
        assert np.asarray(row["image"]).flat[0] == pixels[row["sample_id"]]


def test_curated_dataset_reads_the_new_and_the_old_layout(store: Store, tmp_path: Path) -> None:
    from robust_data import CuratedDataset

    result = export_module.export_dataset(store, DATASET, tmp_path / "out", with_variants=True)
    data = CuratedDataset(result.path, split="train")
    image, label = data[len(data) - 1]
    assert len(data) == SPLITS["train"] and image.shape == (1, 4, 4) and label == 1
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(result.path / "data" / "test-00000-of-00001.parquet", old / "test.parquet")
    assert len(CuratedDataset(old, split="test")) == SPLITS["test"]
    with pytest.raises(FileNotFoundError, match=r"found splits \['test', 'train'\]; export"):
        CuratedDataset(result.path, split="validation")


def test_files_table_lists_the_data_files(store: Store, tmp_path: Path) -> None:
    from robust_data.export.result import check_export

    result = export_module.export_dataset(store, DATASET, tmp_path / "out")
    table = result.files_table()
    assert [
        Path(p).relative_to(result.path).as_posix() for p in table.column("path").to_pylist()
    ] == [
        "data/train-00000-of-00001.parquet",
        "data/test-00000-of-00001.parquet",
    ]
    assert check_export(table).problems == []


# ---------------------------------------------------------------------------------------------
# ImageFolder


def test_imagefolder_export_loads_with_its_scores(
    store: Store, tmp_path: Path, hf_cache: Path
) -> None:
    out = export_module.export_dataset(
        store, DATASET, tmp_path / "folders", "imagefolder", with_variants=True
    ).path
    metadata = {split: pq.read_table(out / split / "metadata.parquet") for split in SPLITS}
    assert metadata["train"].schema == metadata["test"].schema
    for split, table in metadata.items():
        assert table.column_names[0] == "file_name" and "image" not in table.column_names
        assert all((out / split / name).is_file() for name in table.column("file_name").to_pylist())
    pixels = _pixels_by_id(store)
    for loaded in (_load(hf_cache, "imagefolder", data_dir=str(out)), _load(hf_cache, str(out))):
        assert {split: data.num_rows for split, data in loaded.items()} == SPLITS
        features = loaded["train"].features
        assert features == loaded["test"].features
        assert features["label"].names == ["class 0", "class 1"]
        assert {name: features[name].dtype for name in ("label_quality", "is_label_issue")} == {
            "label_quality": "float64",
            "is_label_issue": "bool",
        }
        for row in loaded["train"]:  # every image is joined to its own row
            assert np.asarray(row["image"]).flat[0] == pixels[row["sample_id"]]
        variants = [r for r in loaded["train"] if r["parent_sample_id"] is not None]
        assert len(variants) == 3 and all(r["label_quality"] is None for r in variants)
    from torchvision.datasets import ImageFolder

    assert len(ImageFolder(str(out / "train"))) == SPLITS["train"]


# ---------------------------------------------------------------------------------------------
# the card and the lineage


@pytest.mark.parametrize("fmt", FORMATS)
def test_card_front_matter_matches_the_files(store: Store, tmp_path: Path, fmt: str) -> None:
    out = export_module.export_dataset(store, DATASET, tmp_path / "out", fmt, True).path
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = _front_matter(card)
    assert meta["license"] == "unknown" and "## License\n\nUnknown:" in card
    (config,) = meta["configs"]
    assert config["config_name"] == "default"
    info = meta["dataset_info"]
    splits = {s["name"]: s["num_examples"] for s in info["splits"]}
    assert splits == SPLITS
    for entry in config["data_files"]:
        found = glob.glob(str(out / entry["path"]), recursive=True)  # as fsspec globs
        matched = [Path(p) for p in found if Path(p).is_file()]
        if fmt == "parquet":
            assert (
                sum(pq.ParquetFile(p).metadata.num_rows for p in matched) == splits[entry["split"]]
            )
        else:
            assert len([p for p in matched if p.suffix == ".png"]) == splits[entry["split"]]
            assert out / entry["split"] / "metadata.parquet" in matched
    names = [f["name"] for f in info["features"]]
    if fmt == "parquet":
        assert names == pq.read_schema(out / "data" / "test-00000-of-00001.parquet").names
    else:
        columns = pq.read_schema(out / "test" / "metadata.parquet").names
        assert sorted(names) == sorted(["image", *columns[1:]])
    label = next(f for f in info["features"] if f["name"] == "label")
    assert label["dtype"]["class_label"]["names"] == {"0": "class 0", "1": "class 1"}
    for name in names:  # the column table documents every column
        assert f"| `{name}` |" in card
    assert "| 0 | class 0 | 3 | 2 | 2 | 0 |" in card  # originals, variants per split
    assert "| 1 | class 1 | 3 | 1 | 2 | 0 |" in card
    assert "| | **total** | 6 | 3 | 4 | 0 |" in card


def test_card_names_a_known_license(store: Store, tmp_path: Path) -> None:
    _set_source(store, "fashion-mnist")
    out = export_module.export_dataset(store, DATASET, tmp_path / "out").path
    card = (out / "README.md").read_text(encoding="utf-8")
    assert _front_matter(card)["license"] == "mit" and "`mit`, as stated by" in card


@pytest.mark.parametrize("fmt", FORMATS)
def test_lineage_paths_are_relative_and_hashes_match(
    store: Store, tmp_path: Path, fmt: str
) -> None:
    import json

    _set_source(store, f"imagefolder:{tmp_path / 'private' / 'pets'}")
    out = export_module.export_dataset(store, DATASET, tmp_path / "out", fmt, True).path
    lineage = json.loads((out / "lineage.json").read_text(encoding="utf-8"))
    assert lineage["source"] == "imagefolder:pets"
    assert str(tmp_path) not in (out / "lineage.json").read_text(encoding="utf-8")
    for name, entry in lineage["tables"].items():
        assert not Path(entry["path"]).is_absolute(), name
        stored = store.home / entry["path"]
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == entry["sha256"], name
    every = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert sorted(lineage["files"]) == [p for p in every if p != "lineage.json"]
    for name, digest in lineage["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    assert "README.md" in lineage["files"] and "plots/class_counts.png" in lineage["files"]


def test_columns_keep_their_stored_description_in_the_files_and_the_card(
    store: Store, tmp_path: Path
) -> None:
    """An exported column's description is the stored column's (its Arrow field metadata), then
    what the export adds; the Parquet files keep it and the card's column table shows it."""
    from robust_data.store.schema import describe
    from robust_data.variants.make import VARIANTS_SCHEMA

    out = export_module.export_dataset(store, DATASET, tmp_path / "out", with_variants=True).path
    schema = pq.read_schema(out / "data" / "train-00000-of-00001.parquet")
    parent = describe(VARIANTS_SCHEMA.field("parent_sample_id"))  # _write_variants keeps it
    assert parent and describe(schema.field("parent_sample_id")) == f"{parent}; null for originals"
    # make_store writes the samples and scores without descriptions, as an older version did:
    # the export's note alone
    assert describe(schema.field("label")) == "the names are the ClassLabel's"
    assert describe(schema.field("clean_pred")) == "null where not scored"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"| `parent_sample_id` | string | {parent}; null for originals | - |" in card
    assert "| `clean_pred` | int64 | null where not scored | ≠ label |" in card
