"""Exports published to the store URL (moto's S3 server on loopback): every file whole with the
sha256 its lineage names, lineage.json last, stale objects removed, the temporary folder gone,
the ``curated_dataset`` check reading the objects back, and the asset itself publishing there.
Small hand-made stores."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import robust_data.export.export as export_module
import robust_data.export.publish as publish_module
from robust_data.export.layout import data_file
from robust_data.export.result import check_export
from robust_data.io.files import file_sha256, read_bytes, write_bytes
from robust_data.store.schema import read_params
from robust_data.store.store import Store
from tests.export.test_readers import SPLITS, _write_variants
from tests.store.test_object_store import s3_store  # noqa: F401  (fixture)
from tests.test_safety_export_query import DATASET, make_store


@pytest.fixture
def stores(s3_store: str, isolated_home: Path) -> tuple[Store, Store]:  # noqa: F811
    """(local, remote): the same small curated tables in the home and at the S3 store URL."""
    local = make_store(Store.open(isolated_home))
    _write_variants(local)
    remote = Store.open(isolated_home, s3_store)
    for table, files in local.tables().items():
        for path in files:
            remote.write(pq.read_table(path), table, path.stem)
    return local, remote


def _objects(url: str) -> set[str]:
    """Relative names of the objects under a URL prefix, read fresh."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return {p.removeprefix(f"{root}/") for p in fs.find(root)}


def _lineage(url: str) -> dict:
    return json.loads(read_bytes(f"{url}/lineage.json"))


def test_export_location_follows_the_store(isolated_home: Path) -> None:
    assert Store.open(isolated_home).export_location("toy") == str(isolated_home / "exports/toy")
    remote = Store.open(isolated_home, "s3://bucket/prefix/")
    assert remote.export_location("toy") == "s3://bucket/prefix/exports/toy"


def test_export_is_published_whole_and_checked(stores: tuple[Store, Store], tmp_path: Path) -> None:
    from robust_data import CuratedDataset

    local, remote = stores
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = export_module.export_to_store(
        remote, DATASET, export_module.ExportOptions(with_variants=True), scratch=scratch
    )
    url = remote.export_location(DATASET)
    assert result.location == url == result.where and result.rows == SPLITS
    assert list(scratch.iterdir()) == []  # the temporary export is gone
    assert not (local.home / "exports").exists()  # nothing under the home

    lineage = _lineage(url)
    assert _objects(url) == {*lineage["files"], "lineage.json"}
    for name, digest in lineage["files"].items():
        assert file_sha256(f"{url}/{name}") == digest, name

    # the same rows as a local export of the same tables, read by pyarrow and pandas from s3
    mine = export_module.export_dataset(local, DATASET, tmp_path / "local", with_variants=True)
    for split in SPLITS:
        name = data_file(split)
        remote_table = pq.read_table(f"{url}/{name}")
        assert remote_table.equals(pq.read_table(mine.path / name))  # metadata aside
    frame = pd.read_parquet(f"{url}/data")
    assert frame.groupby("split").size().to_dict() == SPLITS
    assert sorted(frame["sample_id"]) == sorted(pd.read_parquet(mine.path / "data")["sample_id"])
    assert len(CuratedDataset(url, split="train")) == SPLITS["train"]
    with pytest.raises(FileNotFoundError, match=r"found splits \['test', 'train'\]; export"):
        CuratedDataset(url, split="validation")

    table = result.files_table()
    paths = table.column("path").to_pylist()
    assert paths == [f"{url}/{data_file(split)}" for split in SPLITS]
    assert read_params(table.schema)["export"] == url
    assert check_export(table).problems == []
    write_bytes(b"not a parquet file", paths[0])  # one object replaced by garbage
    problems = check_export(table).problems
    assert problems and problems[0] == f"{paths[0]} does not match its sha256", problems


def test_second_publish_removes_stale_objects(stores: tuple[Store, Store], tmp_path: Path) -> None:
    _, remote = stores
    url = remote.export_location(DATASET)
    sibling = f"{url}-other/keep.txt"  # shares the prefix's name, not the folder
    write_bytes(b"another export", sibling)
    folders = export_module.export_to_store(
        remote, DATASET, export_module.ExportOptions("imagefolder", True), scratch=tmp_path
    )
    before = _objects(url)
    assert any(name.endswith(".png") and name.startswith("train/") for name in before)
    assert before == {*_lineage(url)["files"], "lineage.json"}

    again = export_module.export_to_store(
        remote, DATASET, export_module.ExportOptions("parquet"), scratch=tmp_path
    )
    after = _objects(url)
    assert after == {*_lineage(url)["files"], "lineage.json"}
    assert len(after) < len(before) and not any(n.startswith("train/") for n in after)
    assert read_bytes(sibling) == b"another export"
    assert again.rows == {"train": 6, "test": 4} and folders.rows == SPLITS
    assert [p for p in tmp_path.iterdir() if p.name.startswith("robust-data-export-")] == []

    assert url in remote.invalidate(DATASET)
    assert _objects(url) == set() and read_bytes(sibling) == b"another export"


def test_publish_order_and_cleanup_on_failure(
    stores: tuple[Store, Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, remote = stores
    mine = export_module.export_dataset(local, DATASET, tmp_path / "local")
    url = remote.export_location(DATASET)
    order = publish_module.publish_folder(mine.path, url, last=publish_module.PUBLISHED_LAST)
    assert order[-2:] == [f"{url}/README.md", f"{url}/lineage.json"]
    assert sorted(order) == sorted(f"{url}/{name}" for name in _objects(url))

    with pytest.raises(ValueError, match="expected an fsspec URL to publish"):
        publish_module.publish_export(mine, str(tmp_path / "elsewhere"))

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("the store went away")

    monkeypatch.setattr(publish_module, "publish_folder", fail)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(OSError, match="went away"):
        export_module.export_to_store(remote, DATASET, scratch=scratch)
    assert list(scratch.iterdir()) == []


def test_curated_dataset_asset_publishes_to_the_store_url(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import DagsterInstance, materialize

    from assets.curation.curated_dataset import curated_dataset
    from assets.resources import HomeResource

    local, remote = stores
    monkeypatch.setenv("ROBUST_DATA_STORE", remote.tables_url)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("datasets", [DATASET])
        result = materialize(
            [curated_dataset],
            partition_key=DATASET,
            resources={"home": HomeResource(path=str(local.home))},
            instance=instance,
        )
        assert result.success
        (check,) = result.get_asset_check_evaluations()
        assert check.passed
    url = remote.export_location(DATASET)
    metadata = result.asset_materializations_for_node("curated_dataset")[0].metadata
    assert metadata["export"].value == url
    assert metadata["card"].value.startswith("---\n")
    files = result.output_for_node("curated_dataset")
    assert all(p.startswith(f"{url}/data/") for p in files.column("path").to_pylist())
    assert not (local.home / "exports").exists()
