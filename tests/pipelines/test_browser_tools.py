"""The browser's tools in headless Chromium: tiles, histograms, next/previous, saved views, tags,
the embedding's box, bulk review behind a confirm page, the dataset switcher and error pages.

`robust-data browse` runs as a real subprocess over a small home (tests/pipelines/browse_home:
240 real digits images with seeded made-up scores, a reference model trained for one epoch,
and a second dataset); Chromium is driven over the DevTools protocol (tests/cdp.py) with real
mouse events for the drags. Every count the page shows is compared with the stored tables
read independently (DuckDB over the Parquet files, or the index). Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from robust_data.curation.reviews import load_reviews
from robust_data.explore.filters import SampleFilter
from robust_data.explore.sample_index import SampleIndex
from robust_data.explore.tags import load_tags
from robust_data.store.store import Store
from tests.cdp import Chromium
from tests.pipelines.browse_home import (
    DATASET,
    OTHER,
    build_browse_home,
    misclassified_ids,
    start_browse,
    stop_browse,
)
from tests.pipelines.test_browser import chromium  # noqa: F401  (the fixture: found or installed)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    """``robust-data browse digits`` over a fresh small home: its URL and store."""
    home = tmp_path_factory.mktemp("browse-tools") / "home"
    store = build_browse_home(home)
    process, port = start_browse(home)
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        stop_browse(process)


def _count(page: Chromium) -> int:
    return int(page.evaluate("document.getElementById('count').textContent").replace(",", ""))


def _query(page: Chromium) -> dict[str, str]:
    """The current page's URL parameters."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.evaluate("location.href")).query))


def _sql(store: Store, sql: str) -> int:
    """A count straight from the stored Parquet files (``{rpr}``, ``{quality}``)."""
    files = {"rpr": "rpr_scores", "quality": "label_quality"}
    paths = {k: f"read_parquet('{store.table_path(t, DATASET)}')" for k, t in files.items()}
    return int(duckdb.sql(sql.format(**paths)).fetchall()[0][0])


@pytest.mark.timeout(900)  # apt-get may install Chromium first
def test_tiles_histograms_neighbours_views_and_tags(
    chromium: str,  # noqa: F811
    served: tuple[str, Store],
    tmp_path: Path,
) -> None:
    url, store = served
    wrong = set(misclassified_ids(store))
    with Chromium(chromium, tmp_path / "profile") as page:
        page.goto(f"{url}/?dataset={DATASET}&split=train&sort=label_quality")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(ARTIFACTS / "browse-tiles.png")
        tiles = page.evaluate(
            "Array.from(document.querySelectorAll('.cell')).map(c => [c.dataset.sample,"
            " c.querySelector('.status').textContent.trim(),"
            " (c.querySelector('.suggest') || {textContent: ''}).textContent.trim()])"
        )
        assert len(tiles) == 60
        for sample_id, status, _ in tiles:  # misclassified is not shown as a flip
            assert status.startswith("misclassified as") == (sample_id in wrong), (
                sample_id,
                status,
            )
            assert status.startswith(("misclassified as", "flips at try", "robust")), status
        issues = _sql(store, "SELECT count(*) FROM {quality} WHERE is_label_issue")
        assert issues and any(s == "suggests 3" for _, _, s in tiles)  # the fixture suggests 3
        # drag across the first five bars of the label-quality histogram: a range filter
        first, fifth = "#hist-quality rect.hit[data-k='0']", "#hist-quality rect.hit[data-k='4']"
        start, end = page.centre(first), page.centre(fifth)
        page.navigated(lambda: page.drag(start, end), "the histogram drag")
        query = _query(page)
        assert (query["min_quality"], query["max_quality"]) == ("0", "0.25")
        expected = _sql(
            store, "SELECT count(*) FROM {quality} WHERE label_quality BETWEEN 0 AND 0.25"
        )
        assert _count(page) == expected > 0
        selected = page.evaluate("document.querySelectorAll('#hist-quality rect.bar.in').length")
        assert selected == 5
        # next / previous on the sample page follow the grid's order
        order = page.evaluate(
            "Array.from(document.querySelectorAll('.cell')).map(c => c.dataset.sample)"
        )
        page.submit("document.querySelector('.cell a').click()")
        assert page.evaluate("document.querySelector('h1').textContent") == order[0]
        page.submit("document.getElementById('next-sample').click()")
        assert page.evaluate("document.querySelector('h1').textContent") == order[1]
        assert "sample 2 of" in page.evaluate("document.getElementById('pager').textContent")
        page.submit("document.getElementById('prev-sample').click()")
        assert page.evaluate("document.querySelector('h1').textContent") == order[0]
        # a saved view is a named link to this URL, kept by the browser
        page.goto(f"{url}/?dataset={DATASET}&misclassified=true")
        page.evaluate(
            "document.getElementById('view-name').value = 'wrong ones';"
            "document.getElementById('view-save').click()"
        )
        page.goto(f"{url}/?dataset={DATASET}")
        saved = page.evaluate(
            "Array.from(document.querySelectorAll('a.saved-view')).map(a => [a.textContent,"
            " a.getAttribute('href')])"
        )
        assert saved == [["wrong ones", f"/?dataset={DATASET}&misclassified=true"]]
        page.submit("document.querySelector('a.saved-view').click()")
        assert _count(page) == len(wrong)
        # tag two checked samples, then filter by the tag
        pair = page.evaluate(
            "Array.from(document.querySelectorAll('.cell')).slice(0, 2).map(c => c.dataset.sample)"
        )
        page.submit(
            "document.querySelectorAll('.cell input[type=checkbox]')[0].click();"
            "document.querySelectorAll('.cell input[type=checkbox]')[1].click();"
            "document.getElementById('tag').value = 'blurry';"
            "document.getElementById('tag-add').click()"
        )
        page.goto(f"{url}/?dataset={DATASET}&tag=blurry")
        assert _count(page) == 2
        assert sorted(page.evaluate(
            "Array.from(document.querySelectorAll('.cell .tag')).map(t => t.textContent)"
        )) == ["blurry", "blurry"]  # fmt: skip
    tags = load_tags(store, DATASET).to_pylist()
    assert sorted((t["sample_id"], t["tag"], t["present"]) for t in tags) == sorted(
        (s, "blurry", True) for s in pair
    )
    assert not load_reviews(store, DATASET).num_rows  # tagging is not reviewing


@pytest.mark.timeout(900)
def test_bulk_review_embedding_box_switcher_and_error_pages(
    chromium: str,  # noqa: F811
    served: tuple[str, Store],
    tmp_path: Path,
) -> None:
    url, store = served
    wrong = sorted(misclassified_ids(store))
    before = load_reviews(store, DATASET).num_rows
    with Chromium(chromium, tmp_path / "profile") as page:
        # no decision chosen: the browser does not send the form
        page.goto(f"{url}/?dataset={DATASET}&misclassified=true")
        here = page.evaluate("location.href")
        page.evaluate(
            "document.getElementById('scope-filter').click();"
            "document.getElementById('review-submit').click()"
        )
        assert page.evaluate("location.href") == here
        assert load_reviews(store, DATASET).num_rows == before
        # drop every misclassified sample: a confirm page names the count first
        page.submit(
            "document.getElementById('scope-filter').click();"
            "document.getElementById('decision').value = 'drop';"
            "document.getElementById('note').value = 'wrong at rest';"
            "document.getElementById('review-submit').click()"
        )
        text = page.evaluate("document.getElementById('confirm-text').textContent")
        assert f"all {len(wrong)} samples matching the filters" in text, text
        assert load_reviews(store, DATASET).num_rows == before  # nothing until confirmed
        page.screenshot(ARTIFACTS / "browse-bulk-confirm.png")
        page.submit("document.getElementById('confirm-submit').click()")
        assert "misclassified=true" in page.evaluate("location.href")
        # the embedding: a legend, test points as rings, a box that filters the grid
        page.goto(f"{url}/embedding?dataset={DATASET}")
        legend = page.evaluate("document.querySelectorAll('#legend span').length")
        assert legend == 10
        rings = page.evaluate("document.querySelectorAll('circle.pt.test').length")
        dots = page.evaluate("document.querySelectorAll('circle.pt.train').length")
        assert rings == _sql(store, "SELECT count(*) FROM {rpr} WHERE split = 'test'")
        assert dots == _sql(store, "SELECT count(*) FROM {rpr} WHERE split = 'train'")
        page.evaluate("window.scrollTo(0, 0)")
        left, top = page.evaluate(
            "(() => { const r = document.getElementById('plot').getBoundingClientRect();"
            " return [r.left, r.top]; })()"
        )
        start, end = (left + 10, top + 10), (left + 370, top + 370)
        page.navigated(lambda: page.drag(start, end), "the embedding drag")
        box = _query(page)["box"]
        inside = SampleIndex(store, DATASET).count(SampleFilter(box=box))
        assert _count(page) == inside > 0
        assert page.evaluate("document.getElementById('box-note') !== null")
        # the dataset switcher, then a styled 404 for a mistyped dataset and page
        page.submit(
            f"document.getElementById('dataset').value = {OTHER!r};"
            "document.getElementById('dataset').dispatchEvent(new Event('change'))"
        )
        assert _count(page) == 60
        page.goto(f"{url}/?dataset=digts")
        error = page.evaluate("document.getElementById('error').textContent")
        assert error.endswith("found 'digts'; did you mean 'digits'?"), error
        assert page.evaluate("document.querySelector('header') !== null")
        page.goto(f"{url}/no-such-page")
        assert page.evaluate("document.querySelector('h1').textContent") == "No such page"
    reviews = load_reviews(store, DATASET).to_pylist()[before:]
    assert sorted(r["sample_id"] for r in reviews) == wrong
    assert {(r["decision"], r["note"], r["source"]) for r in reviews} == {
        ("drop", "wrong at rest", "browser")
    }


def _token(url: str) -> str:
    """The CSRF token of the running browser's forms."""
    with urllib.request.urlopen(f"{url}/?dataset={DATASET}", timeout=30) as response:
        return re.search(r'name="csrf_token" value="([^"]+)"', response.read().decode()).group(1)


def _post(url: str, fields: list[tuple[str, str]]) -> tuple[int, str]:
    """POST a review form (no Origin, as a script would): status and page, refusals too."""
    body = urllib.parse.urlencode(fields).encode()
    try:
        with urllib.request.urlopen(f"{url}/review", body, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_bulk_review_whose_selection_changed_is_refused(served: tuple[str, Store]) -> None:
    url, store = served
    before = load_reviews(store, DATASET).num_rows
    fields = [
        ("csrf_token", _token(url)),
        ("dataset", DATASET),
        ("scope", "filter"),
        ("view", "split=test"),
        ("decision", "keep"),
        ("confirmed", "3"),  # the page said 3; far more match
    ]
    status, page = _post(url, fields)
    assert status == 409 and "expected the 3 samples you confirmed" in page
    status, page = _post(url, [f for f in fields if f[0] not in ("decision", "confirmed")])
    assert status == 400 and "found none chosen" in page
    assert load_reviews(store, DATASET).num_rows == before


def test_a_bulk_review_confirmed_for_other_samples_of_the_same_count_is_refused(
    served: tuple[str, Store],
) -> None:
    """The hostile review's case: the confirm page showed samples A and B; by the time it was
    confirmed the filter matched A and C. Two still match, but not the two shown."""
    from robust_data.explore.tags import record_tags

    url, store = served
    a, b, c = sorted(SampleIndex(store, DATASET).sample_ids)[:3]
    record_tags(store, DATASET, [a, b], "swap")
    fields = [
        ("csrf_token", _token(url)),
        ("dataset", DATASET),
        ("scope", "filter"),
        ("view", "tag=swap"),
        ("decision", "drop"),
    ]
    status, page = _post(url, fields)
    assert status == 200 and f'value="{a}"' not in page, page[-600:]  # ids not re-posted
    selection = re.search(r'name="selection" value="([0-9a-f]+)"', page).group(1)
    record_tags(store, DATASET, [b], "swap", present=False)
    record_tags(store, DATASET, [c], "swap")
    before = load_reviews(store, DATASET).num_rows
    status, page = _post(url, [*fields, ("confirmed", "2"), ("selection", selection)])
    assert status == 409 and "as many samples match now, but not the same ones" in page
    assert load_reviews(store, DATASET).num_rows == before
