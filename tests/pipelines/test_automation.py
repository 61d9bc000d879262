"""The inbox sensor and the schedule, evaluated with Dagster's test contexts on a real inbox."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    job,
    op,
)

from assets import resources
from assets.resources import HomeResource, transient, transient_failures_retried
from pipelines.automation import curation_schedule, inbox_sensor
from robust_data import Store
from robust_data.ingest.inbox import scan_inbox
from tests.fixtures import make_imagefolder, write_parquet

TICK = datetime(2026, 11, 22, 3, tzinfo=UTC)


@pytest.fixture
def inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "inbox"
    monkeypatch.setenv("ROBUST_DATA_INBOX", str(folder))
    monkeypatch.setenv("ROBUST_DATA_INBOX_SETTLE_SECONDS", "0")
    return folder


def evaluate(home: Path, instance: DagsterInstance, cursor: str | None = None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"home": HomeResource(path=str(home))}
    )
    return inbox_sensor(context)


def test_dropped_folder_is_registered_and_curated_once(isolated_home: Path, inbox: Path) -> None:
    with DagsterInstance.get() as instance:
        assert isinstance(evaluate(isolated_home, instance), SkipReason)  # empty inbox
        make_imagefolder(inbox / "Shapes", {"circle": 4, "square": 4})
        result = evaluate(isolated_home, instance)
        assert isinstance(result, SensorResult)
        (request,) = result.run_requests
        assert request.partition_key == "shapes" and request.job_name in (None, "curation_job")
        (added,) = result.dynamic_partitions_requests
        assert added.partitions_def_name == "datasets" and list(added.partition_keys) == ["shapes"]
        registration = Store.open(isolated_home).lookup("shapes")
        assert registration.source == f"imagefolder:{(inbox / 'Shapes').resolve()}"
        # unchanged: no new run
        again = evaluate(isolated_home, instance, result.cursor)
        assert isinstance(again, SkipReason)
        # re-dropped with a changed file: a new run with a new run key
        (inbox / "Shapes" / "circle" / "000.png").write_bytes(
            (inbox / "Shapes" / "square" / "000.png").read_bytes()
        )
        changed = evaluate(isolated_home, instance, result.cursor)
        assert isinstance(changed, SensorResult)
        (rerun,) = changed.run_requests
        assert rerun.partition_key == "shapes" and rerun.run_key != request.run_key
        assert json.loads(changed.cursor)["shapes"][1] == 2  # second generation


def test_parquet_file_and_hidden_or_unsettled_entries(
    isolated_home: Path, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox.mkdir()
    write_parquet(inbox / "labelled.parquet", {"label": [0, 1], "image": [b"x", b"y"]})
    make_imagefolder(inbox / ".copying", {"a": 2, "b": 2})  # hidden: still being copied
    (inbox / "notes.txt").write_text("not a dataset")
    names = [e.name for e in scan_inbox(inbox, settle_seconds=0)]
    assert names == ["labelled"]
    assert scan_inbox(inbox, settle_seconds=3600) == []  # everything changed just now
    with DagsterInstance.get() as instance:
        result = evaluate(isolated_home, instance)
        assert isinstance(result, SensorResult)
        assert [r.partition_key for r in result.run_requests] == ["labelled"]
        assert Store.open(isolated_home).lookup("labelled").source.startswith("parquet:")


def test_schedule_requests_one_run_per_registered_dataset(isolated_home: Path) -> None:
    with DagsterInstance.get() as instance:
        empty = curation_schedule(
            build_schedule_context(instance=instance, scheduled_execution_time=TICK)
        )
        assert isinstance(empty, SkipReason)
        instance.add_dynamic_partitions("datasets", ["digits", "mnist-5k"])
        requests = curation_schedule(
            build_schedule_context(instance=instance, scheduled_execution_time=TICK)
        )
        assert sorted(r.partition_key for r in requests) == ["digits", "mnist-5k"]
        assert len({r.run_key for r in requests}) == 2
    assert curation_schedule.cron_schedule == os.environ.get(
        "ROBUST_DATA_SCHEDULE_CRON", "0 3 * * *"
    )


def test_schedule_ships_stopped_and_sensor_running() -> None:
    # opening the UI must not arm an unattended daily re-curation; the inbox stays watched
    assert curation_schedule.default_status == DefaultScheduleStatus.STOPPED
    assert inbox_sensor.default_status == DefaultSensorStatus.RUNNING


def _flaky_job(error: Exception, attempts: Path):
    """A one-op job whose op raises ``error`` on its first attempt and succeeds after."""

    @op
    def flaky(context) -> int:
        with transient_failures_retried(context):
            attempts.write_text(attempts.read_text() + "x" if attempts.exists() else "x")
            if len(attempts.read_text()) == 1:
                raise error
        return len(attempts.read_text())

    @job
    def flaky_job() -> None:
        flaky()

    return flaky_job


def test_only_transient_failures_are_retried_with_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert transient(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert transient(sqlite3.OperationalError("database is locked"))
    assert transient(BlockingIOError(11, "Resource temporarily unavailable"))
    assert not transient(ValueError("expected labels 0..K-1"))
    assert not transient(sqlite3.OperationalError("no such table: runs"))
    monkeypatch.setattr(resources, "TRANSIENT_WAIT_SECONDS", 0.05)
    oom = _flaky_job(torch.cuda.OutOfMemoryError("CUDA out of memory"), tmp_path / "a")
    result = oom.execute_in_process(raise_on_error=False)
    assert result.success and result.output_for_node("flaky") == 2  # failed once, then passed
    assert any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    bad = _flaky_job(ValueError("bad input"), tmp_path / "b")
    result = bad.execute_in_process(raise_on_error=False)
    assert not result.success and (tmp_path / "b").read_text() == "x"  # no second attempt
