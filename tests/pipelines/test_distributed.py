"""The curation job on separate Celery workers that share only PostgreSQL and an S3 store.

Started by the test on loopback ports: a PostgreSQL server (Dagster's run, event and schedule
storage), moto's S3 server (``ROBUST_DATA_STORE=s3://...``: tables, weights, reports, exports,
step outputs, the dataset registry and the step logs), a Redis broker (Debian's
``redis-server``) and two ``dagster-celery`` workers of one process each, each with a home of
its own. The curation job, launched by the CLI's ``run_job`` with ROBUST_DATA_EXECUTOR=celery,
runs on digits with 2 RPR shards, 3 fold steps and one evaluation step per model. The process
running ``retrained_model`` is killed mid-step, the run fails, that worker is stopped, and a
re-execution from failure on the other worker completes it. Every table equals the
single-process run's, and no home holds anything but configuration.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from robust_data.io.atomic import pid_alive
from robust_data.io.parquet import read_parquet
from robust_data.store.store import Store
from tests.pipelines.test_postgres_instance import (  # noqa: F401  (postgres: the fixture)
    PROJECT,
    Postgres,
    apt_install,
    postgres,
    postgres_instance_yaml,
)
from tests.pipelines.test_webserver import free_port
from tests.store.test_object_store import _objects, s3_store  # noqa: F401  (fixture)

WORKERS = 2


def cluster_instance_yaml(server: Postgres, store: str) -> str:
    """The Postgres instance (deploy/dagster.yaml's storage) with step logs in the S3 store.

    The compute log block is deploy/dagster.yaml's, with the test's bucket and prefix; boto
    reads the endpoint and credentials from the AWS_* environment.
    """
    config = yaml.safe_load(postgres_instance_yaml(server))
    deployed = yaml.safe_load((PROJECT / "deploy" / "dagster.yaml").read_text())["compute_logs"]
    assert set(deployed["config"]) == {"bucket", "prefix"}, deployed
    bucket, _, prefix = store.removeprefix("s3://").partition("/")
    deployed["config"] = {"bucket": bucket, "prefix": f"{prefix}/compute_logs".lstrip("/")}
    config["compute_logs"] = deployed
    return yaml.safe_dump(config)


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (no persistence)."""
    server = shutil.which("redis-server")
    if server is None:
        installed = apt_install("redis-server")
        server = shutil.which("redis-server")
        if server is None:
            pytest.skip(f"no redis-server: {installed}")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("redis-server did not listen in 20 s")
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _kill(process)


def _wait_ready(workers: list[subprocess.Popen], logs: list[Path], timeout: float = 120) -> None:
    """Wait until every worker's log says ``ready``; fail with its log when one exits."""
    deadline = time.monotonic() + timeout
    while True:
        for process, log in zip(workers, logs, strict=True):
            if process.poll() is not None:
                pytest.fail(f"celery worker exited {process.returncode}: {log.read_text()[-600:]}")
        if all(" ready." in log.read_text() for log in logs):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"celery workers not ready in {timeout} s: {logs[0].read_text()[-600:]}")
        time.sleep(0.5)


#: The curation job's settings in both runs: small enough for CI, every fan-out present.
OPS = {
    "reference_model": {"epochs": 2},
    "rpr_scores": {"max_steps": 40, "shards": 2},
    "oof_predictions": {"folds": 3},
    "corrupted_test": {"corruptions": ["gaussian_noise", "contrast"]},
    "retrained_model": {"seeds": 2, "baselines": ["random_subset"]},
}

#: Every table the curation job writes for a partition.
TABLES = (
    "raw_samples",
    "reference_model",
    "rpr_scores",
    "oof_predictions",
    "label_quality",
    "curation_ledger",
    "curated_samples",
    "variants",
    "corrupted_test",
    "retrained_model",
    "robustness_report",
    "curated_dataset",
)

#: The step the test kills: long enough (six models trained) to be caught running.
VICTIM = "retrained_model"


def _comparable(table: pa.Table) -> pd.DataFrame:
    """A table without wall-clock columns, as a frame (NaN equals NaN in ``DataFrame.equals``)."""
    timed = [n for n in table.column_names if "seconds" in n]
    return table.drop_columns(timed).to_pandas()


def _difference(name: str, got: pa.Table, expected: pa.Table) -> str:
    """'' when ``got`` equals ``expected`` (schema, schema metadata, data less wall-clock
    columns), else what differs first, for the assertion message."""
    if not got.schema.equals(expected.schema, check_metadata=False):
        return f"{name}: schema {got.schema} != {expected.schema}"
    meta, want = got.schema.metadata or {}, expected.schema.metadata or {}
    for key in sorted(set(meta) | set(want)):
        if meta.get(key) != want.get(key):
            return f"{name}: metadata {key!r}: {meta.get(key)!r} != {want.get(key)!r}"
    if not _comparable(got).equals(_comparable(expected)):
        return f"{name}: data"
    return ""


def _start_workers(
    env: dict[str, str], config: Path, folder: Path, instance_yaml: str
) -> list[subprocess.Popen]:
    """``WORKERS`` dagster-celery workers of one process each, each in its own process group
    and with a home of its own (``w<i>-home``: only the instance's dagster.yaml), so that they
    share nothing with the launcher but PostgreSQL, the object store and the broker."""
    start = [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start"]
    app = ["-A", "dagster_celery.app", "-y", str(config)]
    workers = []
    for i in range(WORKERS):
        home = folder / f"w{i}-home"
        (home / "dagster").mkdir(parents=True)
        (home / "dagster" / "dagster.yaml").write_text(instance_yaml)
        own = {**env, "ROBUST_DATA_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
        workers.append(
            subprocess.Popen(
                [*start, *app, "-n", f"w{i}@robust-data", "--", "--concurrency=1"],
                env=own,
                cwd=folder,
                stdout=(folder / f"w{i}.log").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return workers


def _files(folder: Path) -> list[str]:
    """Every file under ``folder``, relative, sorted, less the Celery settings module that
    ``dagster-celery`` generates under DAGSTER_HOME (dagster_celery/config/<id>/)."""
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    generated = [p for p in found if "dagster_celery/config/" in p]
    assert all(p.endswith("dagster_celery_config.py") for p in generated), generated
    return [p for p in found if p not in generated]


def _step_pids(instance, run_id: str) -> dict[str, int]:
    """Process id of every step that started in the run, by step key."""
    from dagster import DagsterEventType

    records = instance.get_records_for_run(
        run_id, of_type={DagsterEventType.STEP_START}, limit=10_000
    ).records
    return {r.event_log_entry.step_key: r.event_log_entry.dagster_event.pid for r in records}


class _Killer(threading.Thread):
    """Watches the newest run; SIGKILLs the process that runs ``VICTIM`` once it starts."""

    def __init__(self, instance, workers: list[subprocess.Popen], known: set[str]) -> None:
        super().__init__(daemon=True)
        self.instance, self.workers, self.known = instance, workers, known
        self.victim: int | None = None  # index of the worker whose step process was killed
        self.run_id: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            runs = [r for r in self.instance.get_runs(limit=1) if r.run_id not in self.known]
            if runs:
                self.run_id = runs[0].run_id
                pid = _step_pids(self.instance, self.run_id).get(VICTIM)
                if pid:
                    group = os.getpgid(pid)
                    self.victim = next(i for i, w in enumerate(self.workers) if w.pid == group)
                    os.kill(pid, signal.SIGKILL)  # the worker's step process, mid-step
                    return
            time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(3000)  # apt-get may install PostgreSQL and redis, 1200 s each
def test_curation_job_on_two_celery_workers_survives_a_killed_worker(
    postgres: Postgres,  # noqa: F811
    s3_store: str,  # noqa: F811
    redis_url: str,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("dagster_celery", reason="pip install dagster-celery")
    from dagster import DagsterInstance, ReexecutionOptions, execute_job, reconstructable

    from pipelines import definitions
    from pipelines.cli import main
    from pipelines.cli.common import CliError
    from pipelines.cli.launch import CELERY_ENV, run_job

    dagster_home = isolated_home / "dagster"
    instance_yaml = cluster_instance_yaml(postgres, s3_store)
    (dagster_home / "dagster.yaml").write_text(instance_yaml)
    monkeypatch.setenv("ROBUST_DATA_STORE", s3_store)
    assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0
    capsys.readouterr()
    store = Store.open(isolated_home)
    # the single-process run first (in this process), its tables aside
    single = run_job(store, "curation_job", "digits", {"source": "digits"}, OPS)
    expected = {name: store.read(name, "digits") for name in TABLES}
    exported = {p: read_parquet(p) for p in expected["curated_dataset"].column("path").to_pylist()}

    broker = {"broker": redis_url, "backend": redis_url}
    config = tmp_path / "celery.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": broker}}))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "ROBUST_DATA_HOME": str(isolated_home),
        "ROBUST_DATA_EXECUTOR": "celery",
        # the run config names the broker by these (as deploy/celery/worker.env does)
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "TQDM_DISABLE": "1",
        # dagster-celery starts the `celery` command of this environment
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    workers = _start_workers(env, config, tmp_path, instance_yaml)
    logs = [tmp_path / f"w{i}.log" for i in range(WORKERS)]
    try:
        _wait_ready(workers, logs)
        # the CLI's launcher sends the steps to the workers, the broker named by variables
        for key in ("DAGSTER_HOME", "ROBUST_DATA_HOME", "ROBUST_DATA_EXECUTOR", *CELERY_ENV):
            monkeypatch.setenv(key, env[key])
        with DagsterInstance.get() as instance:
            killer = _Killer(instance, workers, {single.run_id})
            killer.start()
            with pytest.raises(CliError, match=VICTIM) as failed:
                run_job(store, "curation_job", "digits", {"source": "digits"}, OPS)
            killer.stop.set()
            killer.join(10)
            tails = " | ".join(log.read_text()[-600:] for log in logs)
            assert killer.victim is not None and killer.run_id, (str(failed.value), tails)
            first_id = killer.run_id
            assert instance.get_run_by_id(first_id).run_config["execution"] == {
                "config": {
                    "broker": {"env": "CELERY_BROKER_URL"},
                    "backend": {"env": "CELERY_RESULT_BACKEND"},
                }
            }  # no broker URL in the run record
            first_pids = _step_pids(instance, first_id)
            _kill(workers[killer.victim])  # the rest of that worker goes too
            survivor = workers[1 - killer.victim]
            second = execute_job(
                reconstructable(definitions.curation_job_def),
                instance=instance,
                reexecution_options=ReexecutionOptions.from_failure(first_id, instance),
                tags={"dagster/partition": "digits"},
                raise_on_error=False,
            )
            tails = " | ".join(log.read_text()[-600:] for log in logs)
            assert second.success, tails
            second_pids = _step_pids(instance, second.run_id)
    finally:
        for process in workers:
            _kill(process)
    # every fan-out ran as steps of their own, on the workers, not in this process
    shards = {k: v for k, v in first_pids.items() if "score_rpr_shard" in k}
    folds = [k for k in first_pids if "train_oof_fold" in k]
    evaluations = [k for k in second_pids if "evaluate_model" in k]
    assert len(shards) == 2 and len(set(shards.values())) == 2, shards  # two worker processes
    assert len(folds) == 3 and len(evaluations) == 2 * 3, (folds, evaluations)  # seeds x models
    assert os.getpid() not in {*first_pids.values(), *second_pids.values()}
    # the re-execution ran what had not succeeded, on the surviving worker only
    assert VICTIM in second_pids and not set(shards) & set(second_pids), second_pids
    assert {os.getpgid(pid) for pid in second_pids.values() if pid_alive(pid)} <= {survivor.pid}
    # the local home holds configuration only: runs in Postgres, everything else in S3
    # (.lock: the CLI's lock file of the launcher's home, "pid N: what"; it serializes
    # writers on one machine only)
    assert _files(isolated_home) == [".lock", "dagster/dagster.yaml"]
    for i in range(WORKERS):
        assert _files(tmp_path / f"w{i}-home") == ["dagster/dagster.yaml"]
    # step logs of both runs are in the store, whichever worker ran the step
    logs = _objects(f"{s3_store}/compute_logs")
    runs = {key.split("/")[1] for key in logs if key.startswith("storage/")}  # storage/<run>/...
    assert {first_id, second.run_id} <= runs, logs[:5]
    # the same tables as the single-process run: data, schema and schema metadata
    differ = [_difference(name, store.read(name, "digits"), expected[name]) for name in TABLES[:-1]]
    assert [d for d in differ if d] == [], differ
    # and the same export: its files table less the file hashes, each file's rows; the files'
    # provenance metadata differs only in the upstream tables' file hashes (equal tables, but
    # Parquet bytes follow how the writer was handed the chunks)
    files = store.read("curated_dataset", "digits")
    assert files.drop_columns(["sha256"]).equals(
        expected["curated_dataset"].drop_columns(["sha256"])
    )
    for path, want in exported.items():
        got = read_parquet(path)
        assert got.replace_schema_metadata(None).equals(want.replace_schema_metadata(None)), path
        meta, want_meta = got.schema.metadata, want.schema.metadata
        assert {k for k in {*meta, *want_meta} if meta.get(k) != want_meta.get(k)} <= {
            b"robust_data.upstream"
        }
