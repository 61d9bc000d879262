"""Data versions and per-dataset checks, against Dagster's in-process APIs on tiny image folders.

Re-ingesting identical data keeps ``raw_samples``'s data version, so what was computed from it
stays fresh; changed data gets a new version and makes it stale. Each check evaluation is
recorded for the dataset (partition) it checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    ExecuteInProcessResult,
    materialize,
)
from dagster._core.definitions.data_version import StaleStatus
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from assets.ingest.raw_samples import raw_samples_assets
from assets.report.corrupted_test import corrupted_test
from assets.resources import ComputeResource, HomeResource, ParquetIOManager
from assets.versions import data_version
from robust_data.store.schema import table_fingerprint, table_metadata
from robust_data.store.store import Store
from tests.fixtures import make_imagefolder, png_bytes

ASSETS = [raw_samples_assets, corrupted_test]
#: Two corruptions keep the downstream step to a fraction of a second.
CORRUPTED = {"corruptions": ["gaussian_noise", "contrast"]}
CLASSES = {"cat": 6, "dog": 6}
INGEST = ["raw_samples", "ingest_rejects"]
BOTH = [*INGEST, "corrupted_test"]


def _run(
    instance: DagsterInstance, store: Store, partition: str, root: Path, selection: list[str]
) -> ExecuteInProcessResult:
    """Materialize the ``selection`` of :data:`ASSETS` for one dataset partition read from the
    image folder ``root``."""
    instance.add_dynamic_partitions("datasets", [partition])
    ops: dict[str, object] = {}
    if "raw_samples" in selection:
        ops["raw_samples_assets"] = {"config": {"source": f"imagefolder:{root}"}}
    if "corrupted_test" in selection:
        ops["corrupted_test"] = {"config": CORRUPTED}
    return materialize(
        ASSETS,
        selection=selection,
        partition_key=partition,
        instance=instance,
        resources={
            "io_manager": ParquetIOManager(root=str(store.storage_root)),
            "home": HomeResource(path=str(store.home)),
            "compute": ComputeResource(),
        },
        run_config={"ops": ops},
    )


def _version(instance: DagsterInstance, asset: str, partition: str) -> str | None:
    """The data version of an asset partition's latest materialization."""
    record = instance.get_latest_data_version_record(AssetKey(asset), partition_key=partition)
    assert record is not None
    entry = record.event_log_entry.asset_materialization
    assert entry is not None
    return entry.tags.get("dagster/data_version") if entry.tags else None


def _status(instance: DagsterInstance, asset: str, partition: str) -> StaleStatus:
    """What Dagster's UI shows for an asset partition: fresh, stale or missing."""
    resolver = get_stale_status_resolver(instance, ASSETS)  # a CachingStaleStatusResolver
    return resolver.get_status(AssetKey(asset), partition)


def test_identical_reingest_keeps_the_version_and_downstream_fresh(
    isolated_home: Path, tmp_path: Path
) -> None:
    store = Store.open(isolated_home)
    root = make_imagefolder(tmp_path / "pets", CLASSES)
    with DagsterInstance.get() as instance:
        _run(instance, store, "pets", root, BOTH)
        first = _version(instance, "raw_samples", "pets")
        downstream = _version(instance, "corrupted_test", "pets")
        # the version is the stored table's fingerprint (the images hashed by content_sha256)
        assert first == table_fingerprint(store.read("raw_samples", "pets"), ignore=("image",))
        assert downstream == table_fingerprint(store.read("corrupted_test", "pets"))
        assert _status(instance, "corrupted_test", "pets") == StaleStatus.FRESH

        _run(instance, store, "pets", root, INGEST)  # the same images again
        assert _version(instance, "raw_samples", "pets") == first
        assert _status(instance, "corrupted_test", "pets") == StaleStatus.FRESH

        samples = store.read("raw_samples", "pets").to_pylist()
        grey = png_bytes(np.full((12, 12, 3), 128, np.uint8))

        def change(split: str) -> None:
            """Overwrite the first image of ``split`` in the source folder, and ingest again."""
            path = next(row["image"]["path"] for row in samples if row["split"] == split)
            (root / path).write_bytes(grey)
            _run(instance, store, "pets", root, INGEST)

        # a changed training image is a new raw_samples: corrupted_test is stale, but computed
        # again it holds the same table (it reads the test split only), so it keeps its
        # version and what was computed from it would stay fresh
        change("train")
        assert _version(instance, "raw_samples", "pets") != first
        assert _status(instance, "corrupted_test", "pets") == StaleStatus.STALE
        _run(instance, store, "pets", root, ["corrupted_test"])
        assert _version(instance, "corrupted_test", "pets") == downstream
        assert _status(instance, "corrupted_test", "pets") == StaleStatus.FRESH

        # a changed test image changes corrupted_test too: a new version once recomputed
        change("test")
        assert _status(instance, "corrupted_test", "pets") == StaleStatus.STALE
        _run(instance, store, "pets", root, ["corrupted_test"])
        assert _version(instance, "corrupted_test", "pets") != downstream
        assert _status(instance, "corrupted_test", "pets") == StaleStatus.FRESH


def test_checks_are_recorded_per_dataset(isolated_home: Path, tmp_path: Path) -> None:
    store = Store.open(isolated_home)
    with DagsterInstance.get() as instance:
        for name in ("pets", "more-pets"):
            root = make_imagefolder(tmp_path / name, CLASSES, seed=len(name))
            _run(instance, store, name, root, INGEST)
        storage = instance.event_log_storage
        for check in ("raw_samples", "ingest_rejects"):
            key = AssetCheckKey(AssetKey(check), "valid")
            infos = {i.partition_key: i for i in storage.get_asset_check_partition_info([key])}
            assert set(infos) == {"pets", "more-pets"}, check
            for info in infos.values():
                assert info.latest_execution_status == AssetCheckExecutionRecordStatus.SUCCEEDED
                assert info.is_current  # it checked that partition's latest materialization
            history = storage.get_asset_check_execution_history(key, limit=10)
            assert sorted(r.partition for r in history) == ["more-pets", "pets"]


def test_fingerprint_covers_values_and_params_not_the_code_revision() -> None:
    def table(values: list[float], params: dict, revision: str = "abc") -> pa.Table:
        meta = table_metadata("t", "raw_samples", params)
        meta[b"robust_data.code_revision"] = revision.encode()
        return pa.table({"x": values, "y": ["a", "b"]}).replace_schema_metadata(meta)

    base = table([0.5, 1.0], {"seed": 0})
    assert table_fingerprint(base) == table_fingerprint(table([0.5, 1.0], {"seed": 0}, "def"))
    assert table_fingerprint(base) != table_fingerprint(table([0.5, 1.5], {"seed": 0}))
    assert table_fingerprint(base) != table_fingerprint(table([0.5, 1.0], {"seed": 1}))
    # chunking does not matter; an ignored column does not count
    chunked = pa.concat_tables([base.slice(0, 1), base.slice(1)])
    assert table_fingerprint(chunked) == table_fingerprint(base)
    assert table_fingerprint(base, ignore=("y",)) == table_fingerprint(
        base.set_column(1, "y", pa.array(["c", "d"])), ignore=("y",)
    )
    assert data_version(base).value == table_fingerprint(base)


def test_fingerprint_of_a_table_read_back_from_parquet_is_unchanged(tmp_path: Path) -> None:
    # Parquet names a list's values "element" where Arrow builds "item": the same values
    offsets = pa.array([0, 2, 3], pa.int32())
    values = pa.array([0.25, 0.5, 1.0], pa.float32())
    written = pa.table(
        {
            "v": pa.ListArray.from_arrays(offsets, values),
            "image": pa.StructArray.from_arrays(
                [pa.array([b"a", b"b"]), pa.array(["x", None])], names=["bytes", "path"]
            ),
        }
    )
    pq.write_table(written, tmp_path / "t.parquet")
    read = pq.read_table(tmp_path / "t.parquet")
    assert str(read.schema.field("v").type) != str(written.schema.field("v").type)  # element
    assert table_fingerprint(read) == table_fingerprint(written)
