"""Unattended runs: the inbox sensor and the curation schedule.

- ``inbox_sensor`` watches ``$ROBUST_DATA_INBOX`` (default ``<home>/inbox``) for image folders
  and Parquet files, registers each as a dataset partition and requests a curation run; a
  re-dropped, changed dataset gets a new run, an unchanged one none.
- ``curation_schedule`` re-runs curation for every registered dataset on
  ``$ROBUST_DATA_SCHEDULE_CRON`` (default daily at 03:00 UTC).

The sensor starts RUNNING: with the daemon up (``robust-data ui``), a dropped dataset is
curated with nothing else to do. The schedule starts STOPPED, so opening the UI never arms an
unattended daily re-curation of everything (with catch-up of missed ticks); start it with the
UI's toggle or ``dagster schedule start curation_schedule -w <home>/workspace.yaml`` (with
``DAGSTER_HOME=<home>/dagster``).
"""

import json
from pathlib import Path

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from assets.partitions import DATASETS, DATASETS_NAME
from assets.resources import CRON_ENV, DEFAULT_CRON, HomeResource, Settings
from pipelines.jobs import curation_job
from robust_data.errors import DatasetError, RobustDataError
from robust_data.ingest.inbox import scan_inbox
from robust_data.store.registry import Registration
from robust_data.store.store import Store


def inbox_folder(store: Store) -> Path:
    """The inbox: ``$ROBUST_DATA_INBOX``, else ``<home>/inbox``."""
    configured = Settings.from_environ().inbox
    return Path(configured).expanduser().resolve() if configured else store.home / "inbox"


@sensor(
    job=curation_job,
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="New or changed image folders / Parquet files in the inbox -> register the "
    "dataset and run curation for it.",
)
def inbox_sensor(context: SensorEvaluationContext, home: HomeResource):
    """Register and curate what was dropped into the inbox since the last evaluation.

    The cursor maps dataset name -> [fingerprint, generation]; the generation makes a
    changed-back dataset (A, then B, then A again) a new run too.
    """
    store = home.store()
    folder = inbox_folder(store)
    seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    changed = [
        e
        for e in scan_inbox(folder, Settings.from_environ().settle_seconds)
        if seen.get(e.name, [None])[0] != e.fingerprint
    ]
    if not changed:
        return SkipReason(f"no new or changed dataset in {folder}")
    cursor = dict(seen)
    requests = []
    for entry in changed:
        try:  # a name bound to another source is never overwritten from the inbox
            store.bind(Registration(name=entry.name, source=entry.source))
        except DatasetError as error:
            context.log.warning(f"inbox: {entry.path} left out: {error}")
            cursor[entry.name] = [entry.fingerprint, seen.get(entry.name, [None, 0])[1]]
            continue
        generation = seen.get(entry.name, [None, 0])[1] + 1
        cursor[entry.name] = [entry.fingerprint, generation]
        context.log.info(f"inbox: {entry.name} from {entry.path} ({entry.fingerprint[:12]})")
        requests.append(
            RunRequest(
                run_key=f"{entry.name}:{entry.fingerprint[:16]}:{generation}",
                partition_key=entry.name,
                tags={"robust_data/inbox": str(entry.path)},
            )
        )
    requested = {r.partition_key for r in requests if r.partition_key}  # each has one
    new = [
        name
        for name in sorted(requested)
        if not context.instance.has_dynamic_partition(DATASETS_NAME, name)
    ]
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[DATASETS.build_add_request(new)] if new else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )


def _cron() -> str:
    from dagster._utils.schedules import is_valid_cron_string

    cron = Settings.from_environ().cron
    if not is_valid_cron_string(cron):
        raise RobustDataError(
            f"{CRON_ENV} to be a cron string like '{DEFAULT_CRON}'",
            repr(cron),
            "set one, or unset it for the default",
        )
    return cron


@schedule(
    job=curation_job,
    cron_schedule=_cron(),
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,  # opt in: UI toggle or `dagster schedule start`
    description=f"Re-run curation for every registered dataset (cron from ${CRON_ENV}).",
)
def curation_schedule(context: ScheduleEvaluationContext):
    """One curation run per registered dataset partition."""
    names = sorted(context.instance.get_dynamic_partitions(DATASETS_NAME))
    if not names:
        return SkipReason("no dataset registered yet: robust-data ingest, or drop one in the inbox")
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else ""
    return [RunRequest(run_key=f"{name}:{tick}", partition_key=name) for name in names]
