"""The samples schema and its metadata, split determinism, and atomic writes under failure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robust_data import SAMPLES_SCHEMA, DatasetError, IngestOptions, Store, ingest
from robust_data.ingest.images import content_sha256, decode_image
from robust_data.ingest.sources import BUILTIN_SOURCES
from robust_data.ingest.splits import stratified_split
from robust_data.io.parquet import write_parquet_atomic
from robust_data.store.registry import Registration
from robust_data.store.schema import read_metadata


@pytest.fixture(scope="module")
def digits() -> pa.Table:
    return ingest("digits").samples


def test_samples_match_the_schema_exactly(digits: pa.Table) -> None:
    assert digits.schema.remove_metadata() == SAMPLES_SCHEMA.remove_metadata()
    assert digits.column("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def test_metadata_names_version_revision_source_and_params(
    digits: pa.Table, tmp_path: Path
) -> None:
    path = write_parquet_atomic(digits, tmp_path / "d.parquet")
    meta = read_metadata(pq.read_schema(path))
    assert meta["table"] == "raw_samples" and meta["source"] == "digits"
    assert meta["version"] and meta["code_revision"]
    params = json.loads(meta["params"])
    assert params["options"]["seed"] == 0 and params["source_params"]["package"] == "scikit-learn"


def test_ids_are_unique_and_hashes_match_decoded_pixels(digits: pa.Table) -> None:
    ids = digits.column("sample_id").to_pylist()
    assert len(set(ids)) == len(ids)
    for row in digits.slice(0, 25).to_pylist():
        pixels = decode_image(row["image"]["bytes"])
        assert content_sha256(pixels) == row["content_sha256"]
        assert pixels.shape == (row["height"], row["width"], row["channels"])


def test_ingestion_is_deterministic(digits: pa.Table) -> None:
    again = ingest("digits").samples
    assert again.equals(digits)
    other_seed = ingest("digits", options=IngestOptions(seed=1)).samples
    assert other_seed.column("split").to_pylist() != digits.column("split").to_pylist()


def test_split_does_not_depend_on_row_order() -> None:
    labels = np.repeat(np.arange(5), 20)
    keys = [f"k{i}" for i in range(100)]
    split = dict(zip(keys, stratified_split(labels, keys, 0.2, seed=3), strict=True))
    order = np.random.default_rng(0).permutation(100)
    shuffled = stratified_split(labels[order], [keys[i] for i in order], 0.2, seed=3)
    assert {keys[i]: s for i, s in zip(order, shuffled, strict=True)} == split


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=6),
    fraction=st.floats(min_value=0.05, max_value=0.6),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_split_is_stratified(sizes: list[int], fraction: float, seed: int) -> None:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    keys = [str(i) for i in range(len(labels))]
    split = np.asarray(stratified_split(labels, keys, fraction, seed))
    for c, n in enumerate(sizes):
        n_test = int((split[labels == c] == "test").sum())
        assert n_test == min(round(n * fraction), n - 1)  # every class keeps a train sample


def test_atomic_write_keeps_the_old_file_on_failure(
    digits: pa.Table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "store" / "raw_samples" / "digits.parquet"
    write_parquet_atomic(digits.slice(0, 10), target)
    real_write = pq.write_table

    def write_half_then_fail(table: pa.Table, where: object, **kwargs: object) -> None:
        real_write(table.slice(0, 3), where, **kwargs)  # bytes hit the disk...
        raise OSError("disk full (injected)")  # ...then the writer dies

    monkeypatch.setattr(pq, "write_table", write_half_then_fail)
    with pytest.raises(OSError, match="injected"):
        write_parquet_atomic(digits, target)
    assert pq.read_table(target).num_rows == 10  # the previous version, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["digits.parquet"]  # no temp file


def test_registry_round_trip_and_lookup(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h")
    store.register(Registration("pets", "imagefolder:/data/pets"))
    store.register(Registration("m", "mnist", "/data/mnist"))
    assert store.lookup("pets").source == "imagefolder:/data/pets"
    assert store.lookup("m").root == "/data/mnist"
    assert store.lookup("digits", BUILTIN_SOURCES).source == "digits"
    with pytest.raises(DatasetError, match="registered: \\['m', 'pets'\\]"):
        store.lookup("digits")  # the store knows no sources: the ingest stage names them
    with pytest.raises(DatasetError, match="registered: \\['m', 'pets'\\]"):
        store.lookup("unknown", BUILTIN_SOURCES)
    assert "imagefolder" not in BUILTIN_SOURCES and "digits" in BUILTIN_SOURCES
    with pytest.raises(FileNotFoundError, match="materialize it first"):
        store.read("raw_samples", "pets")
