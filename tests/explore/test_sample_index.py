"""The sample browser: the DuckDB index over stored tables, and the web app over HTTP.

The stored tables here are real digits samples with synthetic scores (fast); the end-to-end
run in Chromium over a curated home is in tests/pipelines/test_browser_review.py.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from robust_data.curation.reviews import load_reviews
from robust_data.explore.filters import SampleFilter
from robust_data.explore.sample_index import SampleIndex
from robust_data.ingest.build import ingest
from robust_data.label_quality.oof_table import OOF_SCHEMA
from robust_data.store.store import Store
from tests.fixtures import synthetic_scores
from tests.pipelines.test_webserver import free_port

N = 200


@pytest.fixture
def scored_home(isolated_home: Path) -> Store:
    store = Store.open(isolated_home)
    samples = ingest("digits").samples.slice(0, N)
    store.write(samples, "raw_samples", "digits")
    for name, table in synthetic_scores(samples).items():
        store.write(table, name, "digits")
    return store


def test_every_filter_count_equals_duckdb_over_the_stored_tables(scored_home: Store) -> None:
    index = SampleIndex(scored_home, "digits")
    rpr = scored_home.read("rpr_scores", "digits").to_pylist()
    quality = {r["sample_id"]: r for r in scored_home.read("label_quality", "digits").to_pylist()}
    assert index.count(SampleFilter()) == N
    assert index.count(SampleFilter(robust=True)) == sum(r["robust"] for r in rpr)
    fragile = [r for r in rpr if r["steps_to_flip"] is not None and 5 <= r["steps_to_flip"] <= 9]
    assert index.count(SampleFilter(min_steps=5, max_steps=9)) == len(fragile)
    issues = sum(q["is_label_issue"] for q in quality.values())
    assert index.count(SampleFilter(label_issue=True)) == issues
    assert index.count(SampleFilter(reason="label_issue")) == issues
    assert index.count(SampleFilter(reason="kept")) == len(quality) - issues
    assert index.count(SampleFilter(split="test", label_issue=True)) == 0
    group = next(q["near_duplicate_group"] for q in quality.values() if q["near_duplicate_group"])
    assert len(index.group_members(group)) == 3
    assert index.count(SampleFilter(group=group)) == 3


def test_pages_sort_by_any_score_and_filters_parse_from_the_url(scored_home: Store) -> None:
    index = SampleIndex(scored_home, "digits")
    page = index.page(SampleFilter(), "steps_to_flip", False, 0, 10)
    steps = [r["steps_to_flip"] for r in page]
    assert steps == sorted(steps) and None not in steps  # robust ones (NULL) sort last
    worst = index.page(SampleFilter(split="train"), "label_quality", False, 0, 5)
    assert [r["label_quality"] for r in worst] == sorted(r["label_quality"] for r in worst)
    second = index.page(SampleFilter(), "sample_id", False, 10, 10)
    assert [r["sample_id"] for r in second] == sorted(index.sample_ids)[10:20]
    parsed = SampleFilter.from_query({"robust": "false", "min_steps": "3", "split": ""})
    assert parsed == SampleFilter(robust=False, min_steps=3)
    with pytest.raises(ValueError, match="expected true or false for robust; found 'maybe'"):
        SampleFilter.from_query({"robust": "maybe"})
    with pytest.raises(ValueError, match="expected a sort column"):
        index.page(SampleFilter(), "image; DROP TABLE samples")


@pytest.fixture
def app_url(scored_home: Store) -> Iterator[str]:
    import uvicorn

    from pipelines.browser import build_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(SampleIndex(scored_home, "digits")), "127.0.0.1", port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers["content-type"], response.read()


def test_the_app_serves_grid_sample_images_and_records_reviews(
    app_url: str, scored_home: Store
) -> None:
    status, _, body = _get(f"{app_url}/?robust=true&split=train")
    index = SampleIndex(scored_home, "digits")
    expected = index.count(SampleFilter(robust=True, split="train"))
    count = re.search(r'<b id="count">([\d,]+)</b>', body.decode())
    assert status == 200 and count and int(count.group(1).replace(",", "")) == expected
    first = re.search(r'data-sample="([^"]+)"', body.decode()).group(1)
    status, kind, png = _get(f"{app_url}/image?id={urllib.parse.quote(first)}")
    assert kind == "image/png" and png.startswith(b"\x89PNG") and png == index.image(first)
    status, _, page = _get(f"{app_url}/sample?id={urllib.parse.quote(first)}")
    assert first in page.decode() and 'id="scores"' in page.decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', body.decode()).group(1)
    form = urllib.parse.urlencode(
        [
            ("csrf_token", token),
            ("sample_id", first),
            ("decision", "relabel"),
            ("new_label", "7"),
            ("note", "a 7"),
            ("next", "/"),
        ]
    ).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{app_url}/review", form), timeout=30):
        pass  # 303 to the grid, followed
    reviews = load_reviews(scored_home, "digits").to_pylist()
    assert [
        (r["sample_id"], r["decision"], r["new_label"], r["note"], r["source"]) for r in reviews
    ] == [(first, "relabel", 7, "a 7", "browser")]
    bad = urllib.parse.urlencode(
        [("csrf_token", token), ("sample_id", "nope"), ("decision", "keep")]
    ).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{app_url}/review", bad), timeout=30)
    assert refused.value.code == 400
    assert load_reviews(scored_home, "digits").num_rows == 1
    # the browser wrote the reviews table and nothing else
    assert sorted(p.parent.name for p in scored_home.storage_root.rglob("*.parquet")) == [
        "curation_ledger",
        "label_quality",
        "raw_samples",
        "reviews",
        "rpr_scores",
    ]


def test_embedding_points_link_to_samples(scored_home: Store) -> None:
    train = scored_home.read("label_quality", "digits").column("sample_id").to_pylist()
    rng = np.random.default_rng(1)
    oof = pa.table(
        {
            "sample_id": train,
            "label": np.zeros(len(train), np.int64),
            "fold": np.zeros(len(train), np.int32),
            "pred_probs": [[0.5, 0.5]] * len(train),
            "embedding": rng.normal(size=(len(train), 6)).astype(np.float32).tolist(),
        },
        schema=OOF_SCHEMA,
    )
    scored_home.write(oof, "oof_predictions", "digits")
    points = SampleIndex(scored_home, "digits").embedding_2d(max_points=50)
    assert len(points) == 50 and {p["sample_id"] for p in points} <= set(train)
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in points)
    assert points == SampleIndex(scored_home, "digits").embedding_2d(max_points=50)  # seeded


def test_review_csv_round_trip_through_the_cli(
    scored_home: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    ids = scored_home.read("raw_samples", "digits").column("sample_id").to_pylist()
    source = tmp_path / "in.csv"
    source.write_text(
        f"sample_id,decision,new_label,note\n{ids[0]},relabel,4,fix\n{ids[1]},drop,,\n"
    )
    home = ["--home", str(scored_home.home)]
    assert main(["review", "import", "digits", str(source), *home]) == 0
    assert "imported 2 review decisions" in capsys.readouterr().out
    assert main(["review", "export", "digits", str(tmp_path / "out.csv"), *home]) == 0
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "sample_id,decision,new_label,note,reviewed_at"
    assert [line.split(",")[:4] for line in lines[1:]] == [
        [ids[0], "relabel", "4", "fix"],
        [ids[1], "drop", "", ""],
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,decision,new_label\nnot-a-sample,keep,\n")
    assert main(["review", "import", "digits", str(bad), *home]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "expected a sample id of this dataset" in err
    assert load_reviews(scored_home, "digits").num_rows == 2  # the refused file wrote nothing


def test_score_histograms_count_what_the_range_filters_keep(scored_home: Store) -> None:
    index = SampleIndex(scored_home, "digits")
    quality = np.array(scored_home.read("label_quality", "digits").column("label_quality"))
    hist = index.histogram("quality", SampleFilter(min_quality=0.5))
    counts = [b["count"] for b in hist["bins"]]
    # the histogram leaves out its own range, so it shows every scored training sample
    assert sum(counts) == len(quality) and hist["selected"] == (0.5, None)
    assert counts == np.histogram(np.minimum(quality, 0.999999), bins=20, range=(0, 1))[0].tolist()
    assert index.count(SampleFilter(min_quality=0.5)) == int((quality >= 0.5).sum())
    both = SampleFilter(min_quality=0.25, max_quality=0.75, label_issue=False)
    issue = np.array(scored_home.read("label_quality", "digits").column("is_label_issue"))
    assert index.count(both) == int(((quality >= 0.25) & (quality <= 0.75) & ~issue).sum())
    steps = index.histogram("steps", SampleFilter(split="train"))
    rpr = scored_home.read("rpr_scores", "digits").to_pylist()
    train = [r for r in rpr if r["split"] == "train"]
    # the last bin holds the robust ones (the made-up scores also flip past max_steps there)
    beyond = sum(r["robust"] or r["steps_to_flip"] > r["max_steps"] for r in train)
    assert steps["bins"][-1]["count"] == beyond
    assert sum(b["count"] for b in steps["bins"]) == len(train)


def test_neighbours_follow_the_grid_order_and_tags_filter(scored_home: Store) -> None:
    from robust_data.explore.tags import load_tags, record_tags

    index = SampleIndex(scored_home, "digits")
    where = SampleFilter(split="train")
    order = [r["sample_id"] for r in index.page(where, "label_quality", True, 0, 1000)]
    assert index.neighbours(where, "label_quality", True, order[0]) == (
        None, order[1], 1, len(order),
    )  # fmt: skip
    assert index.neighbours(where, "label_quality", True, order[7])[:3] == (
        order[6], order[8], 8,
    )  # fmt: skip
    assert index.neighbours(where, "label_quality", True, order[-1])[1] is None
    test_id = next(i for i in index.sample_ids if ":test:" in i)
    assert index.neighbours(where, "label_quality", True, test_id)[2] == 0  # not in the view
    record_tags(scored_home, "digits", order[:3], "check", known=index.sample_ids)
    record_tags(scored_home, "digits", order[:1], "check", present=False)
    index.refresh_tags()
    assert index.ids(SampleFilter(tag="check")) == sorted(order[1:3])
    assert index.tag_names() == ["check"]
    rows = load_tags(scored_home, "digits").num_rows
    for bad, words in ((" ", "expected a tag of 1-40"), ("a/b", "found 'a/b'"), ("x" * 41, "40")):
        with pytest.raises(ValueError, match=words):
            record_tags(scored_home, "digits", order[:1], bad)
    with pytest.raises(ValueError, match="expected a sample id of this dataset; found 'nope'"):
        record_tags(scored_home, "digits", ["nope"], "ok", known=index.sample_ids)
    assert load_tags(scored_home, "digits").num_rows == rows  # refused: nothing written


def test_new_filters_parse_from_the_url_with_one_line_errors() -> None:
    parsed = SampleFilter.from_query(
        {"min_quality": ".25", "max_outlier": "1", "misclassified": "true", "tag": " blurry "}
    )
    assert parsed == SampleFilter(
        min_quality=0.25, max_outlier=1.0, misclassified=True, tag="blurry"
    )
    assert SampleFilter.from_query(parsed.query()) == parsed
    for query, words in (
        ({"min_quality": "1.5"}, "expected min_quality as a number in 0..1; found '1.5'"),
        ({"max_outlier": "nan"}, "found 'nan'"),
        ({"max_quality": "-0"}, "found '-0'"),
        ({"box": "0,0,1"}, "expected box as x0,y0,x1,y1"),
        ({"box": "0,0,1,2"}, "expected box as a number in 0..1; found '2'"),
        ({"tag": "<script>"}, "expected a tag of 1-40"),
    ):
        with pytest.raises(ValueError, match=re.escape(words)):
            SampleFilter.from_query(query)


def test_the_embedding_shows_both_splits_and_a_box_selects_its_points(tmp_path: Path) -> None:
    from robust_data.explore.embedding import projection_method, umap_installed
    from tests.pipelines.browse_home import build_browse_home

    store = build_browse_home(tmp_path / "home")
    index = SampleIndex(store, "digits")
    points = index.embedding_2d()
    assert {p["split"] for p in points} == {"train", "test"} and len(points) == 240
    assert points == SampleIndex(store, "digits").embedding_2d()  # same model, same picture
    box = (0.2, 0.1, 0.7, 0.6)
    inside = {
        p["sample_id"] for p in points if box[0] <= p["x"] <= box[2] and box[1] <= p["y"] <= box[3]
    }
    where = SampleFilter(box=",".join(map(str, box)))
    assert set(index.ids(where)) == inside and inside
    assert SampleIndex(store, "digits").count(where) == len(inside)  # a fresh index projects
    fewer = index.embedding_2d(max_points=50, method="pca")
    assert len(fewer) == 50 and {p["split"] for p in fewer} == {"train", "test"}
    if not umap_installed():  # the extra is not installed: PCA, and asking for UMAP says how
        assert projection_method() == "pca"
        with pytest.raises(ValueError, match=r"pip install 'robust-data\[umap\]'"):
            projection_method("umap")
    with pytest.raises(ValueError, match="expected a projection in auto, pca, umap"):
        projection_method("tsne")


def test_umap_projects_when_the_extra_is_installed() -> None:
    pytest.importorskip("umap", reason="the umap extra (umap-learn) is not installed")
    from robust_data.explore.embedding import project_2d, projection_method

    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal(0, 1, (40, 8)), rng.normal(6, 1, (40, 8))])
    xy = project_2d(vectors, projection_method("auto"))
    assert xy.shape == (80, 2) and xy.min() >= 0 and xy.max() <= 1
    assert np.array_equal(xy, project_2d(vectors, "umap"))  # seeded
    # the two clusters stay apart
    gap = np.linalg.norm(xy[:40].mean(axis=0) - xy[40:].mean(axis=0))
    assert gap > 0.5


def test_the_browser_indexes_a_dataset_again_when_its_tables_change(scored_home: Store) -> None:
    from pipelines.browser import Indexes

    indexes = Indexes(SampleIndex(scored_home, "digits"))
    first = indexes.get("digits")
    assert indexes.get("digits") is first  # unchanged tables: the same index
    ledger = scored_home.read("curation_ledger", "digits")
    none_kept = ledger.set_column(
        ledger.schema.get_field_index("kept"), "kept", pa.array([False] * ledger.num_rows)
    )
    scored_home.write(none_kept, "curation_ledger", "digits")  # a new curation, say
    fresh = indexes.get("digits")
    assert fresh is not first
    assert fresh.count(SampleFilter(kept=False)) == ledger.num_rows
    assert first.count(SampleFilter(kept=False)) < ledger.num_rows  # what was shown before
