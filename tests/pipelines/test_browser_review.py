"""End to end in headless Chromium: browse a curated home, filter, review, re-curate.

`robust-data browse` runs as a real subprocess over a copy of the session's curated digits
home; Chromium is driven over the DevTools protocol (tests/cdp.py) the way a user clicks.
Screenshots go to test-artifacts/ (browse-grid.png, browse-embedding.png, browse-sample.png,
browse-bulk.png); the README's copies of the first three in docs/images/ were taken from this
test (its bulk review is tests/pipelines/test_browser_tools.py's browse-bulk-confirm.png).
"""

from __future__ import annotations

import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from robust_data.curation.reviews import load_reviews
from robust_data.store.store import Store
from tests.cdp import Chromium
from tests.conftest import CuratedHome
from tests.pipelines.browse_home import start_browse, stop_browse
from tests.pipelines.test_browser import chromium  # noqa: F401  (the fixture: found or installed)

PROJECT = Path(__file__).resolve().parents[2]
IMAGES = PROJECT / "test-artifacts"
DATASET = "digits"


@pytest.fixture
def review_home(curated_digits: CuratedHome, tmp_path: Path) -> Path:
    """A copy of the curated digits home that this test may change."""
    home = tmp_path / "home-copy"
    shutil.copytree(curated_digits.home, home, ignore=shutil.ignore_patterns(".lock"))
    return home


@pytest.fixture
def browse_url(review_home: Path) -> Iterator[str]:
    """``robust-data browse digits`` running over the copy; its URL. The group is killed after."""
    process, port = start_browse(review_home)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_browse(process)


def _duckdb_count(home: Path, sql: str) -> int:
    """A count straight from the stored Parquet files, independent of the browser's index."""
    store = Store.open(home)
    files = {t: str(store.table_path(t, DATASET)) for t in ("raw_samples", "rpr_scores")}
    query = sql.format(**{t: f"read_parquet('{f}')" for t, f in files.items()})
    return int(duckdb.sql(query).fetchall()[0][0])


def _recurate(home: Path) -> list[dict]:
    """Materialize curation alone (stored upstream tables) in the copied home; its ledger."""
    from dagster import AssetSelection, DagsterInstance, materialize

    from assets import ALL_ASSETS
    from pipelines.definitions import build_definitions
    from pipelines.home import scoped_environ

    env = {"ROBUST_DATA_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    with scoped_environ(env), DagsterInstance.get() as instance:
        resources = build_definitions().resources
        result = materialize(
            list(ALL_ASSETS),
            selection=AssetSelection.assets("curated_samples", "curation_ledger"),
            partition_key=DATASET,
            resources=resources,
            instance=instance,
        )
    assert result.success
    return Store.open(home).read("curation_ledger", DATASET).to_pylist()


@pytest.mark.slow
@pytest.mark.timeout(1200)  # apt-get may install Chromium first (300 s)
def test_filter_review_and_the_next_curation_in_chromium(
    chromium: str,  # noqa: F811
    review_home: Path,
    browse_url: str,
    tmp_path: Path,
) -> None:
    with Chromium(chromium, tmp_path / "profile") as page:
        page.goto(f"{browse_url}/")
        total = page.evaluate("document.getElementById('count').textContent")
        assert int(total.replace(",", "")) == _duckdb_count(
            review_home, "SELECT count(*) FROM {raw_samples}"
        )
        shown = page.evaluate(
            "Array.from(document.querySelectorAll('.cell img'))"
            ".filter(i => i.complete && i.naturalWidth > 0).length"
        )
        assert shown == 60  # one page of thumbnails, every image decoded
        IMAGES.mkdir(parents=True, exist_ok=True)
        # filter: fragile test samples, as a user sets the form and presses Apply
        page.submit(
            "document.getElementById('f-split').value = 'test';"
            "document.getElementById('f-robust').value = 'false';"
            "document.getElementById('apply').click()"
        )
        count = int(page.evaluate("document.getElementById('count').textContent").replace(",", ""))
        expected = _duckdb_count(
            review_home, "SELECT count(*) FROM {rpr_scores} WHERE split = 'test' AND NOT robust"
        )
        assert count == expected > 0
        # review: drop the first kept training sample from its own page
        page.goto(f"{browse_url}/?split=train&kept=true&sort=steps_to_flip")
        page.screenshot(IMAGES / "browse-grid.png")
        first = page.evaluate("document.querySelector('.cell').dataset.sample")
        # the embedding of both splits; a box dragged on it filters the grid
        page.goto(f"{browse_url}/embedding?color=robust")
        assert page.evaluate("document.querySelectorAll('circle.pt.test').length") > 0
        page.evaluate("window.scrollTo(0, 0)")
        left, top = page.evaluate(
            "(() => { const r = document.getElementById('plot').getBoundingClientRect();"
            " return [r.left, r.top]; })()"
        )
        mouse = {"button": "left", "clickCount": 1}
        page.call(
            "Input.dispatchMouseEvent", type="mousePressed", x=left + 150, y=top + 150, **mouse
        )
        for step in range(1, 9):  # drag, and hold the button while the box is photographed
            x, y = left + 150 + 300 * step / 8, top + 150 + 270 * step / 8
            page.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, buttons=1)
        page.screenshot(IMAGES / "browse-embedding.png")
        page.navigated(
            lambda: page.call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, **mouse),
            "the embedding box",
        )
        assert "box=" in page.evaluate("location.href")
        boxed = int(page.evaluate("document.getElementById('count').textContent").replace(",", ""))
        assert 0 < boxed < int(total.replace(",", ""))
        page.goto(f"{browse_url}/sample?id={urllib.parse.quote(first)}")
        assert page.evaluate("document.getElementById('scores').textContent").count(first)
        # the perturbed image that flipped it, regenerated from (seed, sample, try)
        assert page.evaluate("document.getElementById('flip').naturalWidth") > 0
        assert page.evaluate("document.getElementById('flip-pred').textContent").isdigit()
        page.submit(
            "document.getElementById('decision').value = 'drop';"
            "document.getElementById('note').value = 'looks like a 7';"
            "document.getElementById('review-submit').click()"
        )
        page.screenshot(IMAGES / "browse-sample.png")
        # a relabel of two checked samples from the grid: two the curation dropped
        page.goto(f"{browse_url}/?split=train&kept=false&review=none")
        pair = page.evaluate(
            "Array.from(document.querySelectorAll('.cell')).slice(0, 2).map(c => c.dataset.sample)"
        )
        page.submit(
            "document.querySelectorAll('.cell input[type=checkbox]')[0].click();"
            "document.querySelectorAll('.cell input[type=checkbox]')[1].click();"
            "document.getElementById('decision').value = 'relabel';"
            "document.getElementById('new_label').value = '3';"
            "document.getElementById('review-submit').click()"
        )
        # two samples: a page names the count and asks first
        confirm = page.evaluate("document.getElementById('confirm-text').textContent")
        assert "all 2 samples checked" in confirm, confirm
        page.screenshot(IMAGES / "browse-bulk.png")
        page.submit("document.getElementById('confirm-submit').click()")
        reviewed = page.evaluate(
            "Array.from(document.querySelectorAll('.cell.reviewed')).map(c => c.dataset.sample)"
        )
    reviews = load_reviews(Store.open(review_home), DATASET).to_pylist()
    assert [(r["sample_id"], r["decision"], r["note"]) for r in reviews[:1]] == [
        (first, "drop", "looks like a 7")
    ]
    assert {(r["sample_id"], r["decision"], r["new_label"]) for r in reviews[1:]} == {
        (pair[0], "relabel", 3),
        (pair[1], "relabel", 3),
    }
    assert set(pair) <= set(reviewed) or not reviewed  # the filter may hide them once kept
    before = {
        row["sample_id"]: row
        for row in Store.open(review_home).read("curation_ledger", DATASET).to_pylist()
    }
    assert before[first]["kept"]  # the grid was filtered to kept samples
    ledger = {row["sample_id"]: row for row in _recurate(review_home)}
    assert not ledger[first]["kept"] and ledger[first]["reason"] == "review_drop"
    for sample_id in pair:
        assert ledger[sample_id]["kept"] and ledger[sample_id]["new_label"] == 3
        assert not before[sample_id]["kept"]
        assert ledger[sample_id]["overridden"] == before[sample_id]["reason"] is not None
