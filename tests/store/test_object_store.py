"""Tables in a real S3-compatible object store (moto's standalone server, loopback port).

Credentials and the endpoint come from the standard AWS environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``), which s3fs and
boto read; ``ROBUST_DATA_STORE=s3://bucket/prefix`` sends the tables there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from robust_data.curation.reviews import Review, load_reviews, record_reviews
from robust_data.explore.query import QueryError
from robust_data.store.store import Store
from tests.fixtures import query_rows
from tests.pipelines.test_webserver import free_port, wait_for

BUCKET = "robust-data-test"


@pytest.fixture
def s3_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server with one bucket; the store URL under it. The server dies after."""
    pytest.importorskip("s3fs", reason="pip install s3fs")
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists() and not shutil.which("moto_server"):
        pytest.skip("no moto_server: pip install 'moto[server]'")
    port = free_port()
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(endpoint, process, timeout=30)
        for key, value in {
            "AWS_ACCESS_KEY_ID": "robust-data",
            "AWS_SECRET_ACCESS_KEY": "robust-data-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }.items():
            monkeypatch.setenv(key, value)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield f"s3://{BUCKET}/store"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _objects(url: str) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return sorted(p.removeprefix(url.removeprefix("s3://") + "/") for p in fs.find(url))


@pytest.mark.slow
def test_ingest_and_reviews_go_to_the_object_store(
    s3_store: str, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.cli import main

    monkeypatch.setenv("ROBUST_DATA_STORE", s3_store)
    assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0
    assert _objects(s3_store) == [
        "datasets.json",  # the registry: every worker resolves the dataset from the store
        "ingest_rejects/digits.parquet",
        "raw_samples/digits.parquet",
    ]
    assert not (isolated_home / "datasets.json").exists()
    store = Store.open(isolated_home)
    assert store.tables_url == s3_store and store.has("raw_samples", "digits")
    samples = store.read("raw_samples", "digits")
    assert samples.num_rows == 1797
    first = samples.column("sample_id")[0].as_py()
    record_reviews(store, "digits", [Review(first, "drop", note="blurry")], "api")
    assert "reviews/digits.parquet" in _objects(s3_store)
    assert load_reviews(store, "digits").column("note").to_pylist() == ["blurry"]
    local = [p for p in (isolated_home / "store").rglob("*") if p.is_file()]
    assert local == [], f"tables were written to the local store: {local}"
    # query reads the remote tables, still read-only
    result = query_rows(store, "SELECT split, count(*) AS n FROM raw_samples GROUP BY 1 ORDER BY 1")
    assert result == [{"split": "test", "n": 359}, {"split": "train", "n": 1438}]
    assert query_rows(store, "SELECT count(*) AS n FROM reviews") == [{"n": 1}]
    with pytest.raises(QueryError):
        query_rows(store, f"COPY raw_samples TO '{isolated_home / 'out.parquet'}'")
    # the sample browser's index reads the same remote tables and the review
    from robust_data.explore.filters import SampleFilter
    from robust_data.explore.sample_index import SampleIndex

    index = SampleIndex(store, "digits")
    assert index.count(SampleFilter()) == 1797
    assert index.count(SampleFilter.from_query({"split": "test"})) == 359
    assert index.refresh_reviews()[first].note == "blurry"
    assert index.image(first).startswith(b"\x89PNG")


@pytest.mark.slow
def test_weights_go_to_the_object_store_and_load_back(
    s3_store: str, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robust_data.ingest.build import ingest
    from robust_data.scoring.models import ModelOptions
    from robust_data.scoring.reference import check_model_table, load_reference, train_reference

    monkeypatch.setenv("ROBUST_DATA_STORE", s3_store)
    store = Store.open(isolated_home)
    samples = ingest("digits").samples
    location = store.weights_location("reference_model", "digits")
    assert location == f"{s3_store}/reference_model/digits.pt"
    table = train_reference(samples, ModelOptions(epochs=1), location, progress=False)
    assert table.column("path")[0].as_py() == location
    assert _objects(s3_store) == ["reference_model/digits.pt"]
    model, weights = load_reference(table)  # read back from the store, sha256 checked
    assert weights.sha256 == table.column("sha256")[0].as_py() and model.num_classes == 10
    assert check_model_table(table).passed
    assert store.invalidate("digits") == [location]
    assert _objects(s3_store) == []
    assert not check_model_table(table).passed  # the check sees the missing object
