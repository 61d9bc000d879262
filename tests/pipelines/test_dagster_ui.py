"""What the Dagster UI shows of a curated home: rounded numbers, data versions, per-dataset
checks, and the robustness report's page in a real webserver and headless Chromium.

All read the session's curated digits home (one ``robust-data curate`` run); nothing here
changes it. The report page's screenshot goes to test-artifacts/dagster-report.png; the
README's copy, docs/images/dagster-report.png, was taken from this test.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    FloatMetadataValue,
    JsonMetadataValue,
    MarkdownMetadataValue,
    MetadataValue,
    TableMetadataValue,
)
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime

from assets.metadata import INLINE_MARKDOWN_LIMIT
from pipelines.cli import main
from pipelines.definitions import build_definitions
from robust_data.present.summary import rounded
from robust_data.report.render import curve_budgets
from robust_data.report.table import headline_verdicts
from robust_data.store.schema import table_fingerprint
from robust_data.store.store import Store
from tests.cdp import Chromium
from tests.conftest import CuratedHome
from tests.pipelines.test_browser import chromium, loaded_asset_nodes  # noqa: F401 (fixture)
from tests.pipelines.test_webserver import PROJECT, running_webserver

DATASET = "digits"
ARTIFACT = PROJECT / "test-artifacts" / "dagster-report.png"
#: Columns a stored table's data version leaves out (see the assets' ``versioned`` calls).
IGNORED = {"raw_samples": ("image",), "reference_model": ("train_seconds",)}
PAGE_TIMEOUT_S = 60
#: A full-HD window: the asset page's metadata column is then wide enough for every table.
WINDOW = (1920, 1400)


@pytest.fixture
def instance(curated_digits: CuratedHome) -> Iterator[DagsterInstance]:
    """The curated home's Dagster instance, opened for reading."""
    with DagsterInstance.from_config(str(curated_digits.home / "dagster")) as opened:
        yield opened


def _latest(instance: DagsterInstance, asset: str) -> Any:
    """The latest materialization of an asset's digits partition."""
    found = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[DATASET]), limit=1
    ).records
    assert found, f"{asset} was not materialized"
    return found[0].asset_materialization


def _floats(value: Any) -> Iterator[float]:
    """Every float a metadata value shows: typed numbers, table cells, JSON leaves."""
    if isinstance(value, FloatMetadataValue):
        value = value.value
    elif isinstance(value, TableMetadataValue):
        value = [record.data for record in value.records]
    elif isinstance(value, JsonMetadataValue):
        value = value.data
    elif isinstance(value, MetadataValue):  # text, Markdown, paths, ints: no float to show
        return
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _floats(item)


def _unrounded(metadata: dict[str, Any]) -> list[str]:
    return [
        f"{key}: {f!r}"
        for key, value in metadata.items()
        for f in _floats(value)
        if math.isfinite(f) and rounded(f) != f
    ]


@pytest.mark.slow
def test_metadata_floats_are_rounded_and_versions_are_content_hashes(
    curated_digits: CuratedHome, instance: DagsterInstance
) -> None:
    store = Store.open(curated_digits.home)
    graph = build_definitions(store).resolve_asset_graph()
    assets = [k.to_user_string() for k in graph.materializable_asset_keys]
    for asset in assets:
        event = _latest(instance, asset)
        assert _unrounded(dict(event.metadata)) == [], asset
        # the data version is the stored table's fingerprint: a re-run that stores the same
        # table keeps it, and leaves what was computed from it fresh
        expected = table_fingerprint(store.read(asset, DATASET), IGNORED.get(asset, ()))
        assert event.tags["dagster/data_version"] == expected, asset
    # every check evaluation is recorded for the dataset it checked, with rounded figures
    infos = instance.event_log_storage.get_asset_check_partition_info(list(graph.asset_check_keys))
    assert {i.check_key for i in infos} == set(graph.asset_check_keys)
    assert {i.partition_key for i in infos} == {DATASET}
    for key in graph.asset_check_keys:
        (record,) = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        evaluation = record.event.dagster_event.event_specific_data  # AssetCheckEvaluation
        assert evaluation.partition == DATASET
        assert _unrounded(dict(evaluation.metadata)) == [], key


def _status(instance: DagsterInstance, graph: Any, asset: str) -> StaleStatus:
    """What the UI shows for the digits partition of an asset: fresh, stale or missing."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance, graph, view)
    return resolver.get_status(AssetKey(asset), DATASET)


@pytest.mark.slow
def test_reingesting_identical_data_leaves_scores_and_report_fresh(
    curated_digits: CuratedHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home-copy"  # this test ingests again: a copy of the session's home
    shutil.copytree(curated_digits.home, home, ignore=shutil.ignore_patterns(".lock"))
    graph = build_definitions(Store.open(home)).resolve_asset_graph()
    downstream = ("rpr_scores", "robustness_report")
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        before = _latest(instance, "raw_samples")
        assert {_status(instance, graph, a) for a in downstream} == {StaleStatus.FRESH}
    assert main(["ingest", DATASET, "--home", str(home)]) == 0
    capsys.readouterr()
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        after = _latest(instance, "raw_samples")
        assert (
            after is not before
            and after.tags["dagster/data_version"] == (before.tags["dagster/data_version"])
        )
        filtered = AssetRecordsFilter(asset_key=AssetKey("raw_samples"))
        assert len(instance.fetch_materializations(filtered, limit=5).records) == 2  # re-run
        for asset in downstream:
            assert _status(instance, graph, asset) == StaleStatus.FRESH, asset


@pytest.mark.slow
def test_report_metadata_opens_with_the_verdict_and_the_curves(
    curated_digits: CuratedHome, instance: DagsterInstance
) -> None:
    report = _latest(instance, "robustness_report").metadata
    assert list(report)[:4] == [
        "verdict",
        "robustness_curves_table",
        "robustness_curves",
        "verdicts",
    ]
    verdict = report["verdict"]
    assert isinstance(verdict, MarkdownMetadataValue)
    assert len(verdict.value.encode("utf-16-le")) // 2 < INLINE_MARKDOWN_LIMIT  # in place
    table = Store.open(curated_digits.home).read("robustness_report", DATASET)
    first = headline_verdicts(table)[0]
    assert verdict.value.splitlines()[0] == f"- {first}"
    curves = report["robustness_curves_table"]
    assert isinstance(curves, TableMetadataValue)
    tries = [r.data["tries"] for r in curves.records]
    assert tries == curve_budgets(tries[-1])
    models = [c.name for c in curves.schema.columns][1:]
    assert {"reference", "curated"} <= set(models)
    for model in models:  # a robustness curve never rises
        shares = [r.data[model] for r in curves.records]
        assert shares == sorted(shares, reverse=True) and 0 <= shares[-1] <= 1


def _wait(page: Chromium, expression: str, what: str) -> Any:
    """Poll a JavaScript expression until it is truthy; its value."""
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(0.25)
    body = page.evaluate("document.body.innerText")
    raise TimeoutError(f"{what} not shown in {PAGE_TIMEOUT_S} s; page: {body[:1500]!r}")


#: The metadata table row whose key cell reads ``name`` (the asset page's Metadata section).
ROW = (
    "Array.from(document.querySelectorAll('tr')).find(r => r.cells.length > 1"
    " && r.cells[0].innerText.trim() === {name!r})"
)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # apt-get may install Chromium first (300 s)
def test_report_page_shows_the_verdict_and_the_main_figure_in_chromium(
    chromium: str,  # noqa: F811
    curated_digits: CuratedHome,
    tmp_path: Path,
) -> None:
    table = Store.open(curated_digits.home).read("robustness_report", DATASET)
    first = headline_verdicts(table)[0]
    with running_webserver(curated_digits.home) as port:
        loaded_asset_nodes(port)
        with Chromium(chromium, tmp_path / "profile", size=WINDOW) as page:
            page.goto(f"http://127.0.0.1:{port}/assets/robustness_report?view=overview")
            verdict = ROW.format(name="verdict")
            # the verdict, rendered as Markdown in place: a list item, no click
            shown = _wait(
                page,
                f"(() => {{ const r = {verdict}; const md = r && r.querySelector('li');"
                " return md ? md.innerText : ''; })()",
                "the verdict",
            )
            assert shown.strip() == first
            assert "Show Markdown" not in page.evaluate(f"{verdict}.innerText")
            # ... and whole: the metadata table is no wider than the page shows (its widest
            # table sets the width the verdict's lines wrap at), so nothing is cut off
            widths = page.evaluate(
                f"(() => {{ const c = {verdict}.closest('table').parentElement;"
                " return [c.scrollWidth, c.clientWidth]; })()"
            )
            assert widths[0] <= widths[1] + 2, f"the Metadata section scrolls sideways: {widths}"
            # the main figure's numbers, as a table in place
            curves = ROW.format(name="robustness_curves_table")
            headers = _wait(
                page,
                f"(() => {{ const r = {curves}; return r ? Array.from(r.querySelectorAll('th'))"
                ".map(h => h.innerText.trim()) : null; })()",
                "the robustness curves table",
            )
            assert headers[0] == "tries" and {"reference", "curated"} <= set(headers)
            cells = page.evaluate(
                f"Array.from({curves}.querySelectorAll('tr')).filter(r => r.querySelector('td'))"
                ".map(r => r.cells[0].innerText.trim())"
            )
            assert cells[0] == "1"
            # scroll the verdict to the top of the page's scroller, then take the screenshot
            page.evaluate(f"{verdict}.scrollIntoView({{block: 'start'}})")
            page.evaluate(
                "(() => { let e = document.querySelector('table');"
                " while (e && e.scrollHeight <= e.clientHeight) e = e.parentElement;"
                " if (e) e.scrollTop -= 140; })()"
            )
            time.sleep(0.5)
            ARTIFACT.unlink(missing_ok=True)
            page.screenshot(ARTIFACT)
            # the figure itself: one click on its "[Show Markdown]", the PNG decoded in the dialog
            page.evaluate(f"{ROW.format(name='robustness_curves')}.querySelector('a').click()")
            width = _wait(
                page,
                "(() => { const i = document.querySelector('.bp5-dialog img, [role=dialog] img');"
                " return i && i.complete ? i.naturalWidth : 0; })()",
                "the robustness curves figure",
            )
            assert width > 300
            # the check's latest evaluation names its dataset, and there is a Partitions view
            page.goto(f"http://127.0.0.1:{port}/assets/robustness_report?view=checks")
            text = _wait(
                page,
                "(() => { const t = document.body.innerText;"
                " return t.includes('Latest execution') && t.includes('Partition') ? t : ''; })()",
                "the check's latest execution",
            )
            assert f"Partition\n{DATASET}" in text
            # the check's own Partitions tab (the last tab so named; the asset has one too)
            page.evaluate(
                "(() => { const t = Array.from(document.querySelectorAll('[role=tab]'))"
                ".filter(t => t.innerText.trim() === 'Partitions'); t[t.length - 1].click(); })()"
            )
            statuses = _wait(
                page,
                "(() => { const t = document.body.innerText;"
                " return t.includes('Passed (') && t.includes('Execution Failed (') ? t : ''; })()",
                "the check's partition statuses",
            )
            assert "Passed (1)" in statuses and "Failed (0)" in statuses
            assert DATASET in statuses.split("Passed (1)")[-1]  # listed under the counts
    png = ARTIFACT.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 30_000
