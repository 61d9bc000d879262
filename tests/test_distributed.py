"""Steps on separate Celery workers that share only PostgreSQL and an S3-compatible store.

Started by the test on loopback ports: a PostgreSQL server (Dagster's run, event and schedule
storage), moto's S3 server (the tables: ``ROBUST_DATA_STORE=s3://...``), a Redis broker
(Debian's ``redis-server``) and two ``dagster-celery`` workers of one process each. The
scoring job runs with 2 RPR shards under the Celery executor; its scores must equal those of
the single-process run, and the two shard steps must run in different worker processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from robust_data.store import Store
from tests.test_object_store import s3_store  # noqa: F401  (fixture)
from tests.test_postgres_instance import (  # noqa: F401  (postgres: the fixture)
    Postgres,
    apt_install,
    postgres,
    postgres_instance_yaml,
)
from tests.test_sharding import _step_spans
from tests.test_webserver import free_port

WORKERS = 2


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


@pytest.mark.slow
def test_shards_run_on_two_celery_workers_sharing_postgres_and_s3(
    postgres: Postgres,  # noqa: F811
    s3_store: str,  # noqa: F811
    redis_url: str,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("dagster_celery", reason="pip install dagster-celery")
    from dagster import DagsterInstance, execute_job, reconstructable

    from pipelines import definitions
    from pipelines.cli import main
    from pipelines.cli.launch import run_job

    dagster_home = isolated_home / "dagster"
    (dagster_home / "dagster.yaml").write_text(postgres_instance_yaml(postgres))
    monkeypatch.setenv("ROBUST_DATA_STORE", s3_store)
    assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0
    capsys.readouterr()
    store = Store.open(isolated_home)
    ops = {"reference_model": {"epochs": 1}, "rpr_scores": {"max_steps": 30, "shards": 2}}
    run_config = {"ops": {name: {"config": config} for name, config in ops.items()}}
    # the single-process run first, then its scores aside
    run_job(store, "scoring_job", "digits", {}, ops)  # raises CliError when the run fails
    expected = store.read("rpr_scores", "digits")

    broker = {"broker": redis_url, "backend": redis_url}
    config = tmp_path / "celery.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": broker}}))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "ROBUST_DATA_HOME": str(isolated_home),
        "ROBUST_DATA_EXECUTOR": "celery",
        "TQDM_DISABLE": "1",
        # dagster-celery starts the `celery` command of this environment
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    worker = Path(sys.executable).parent / "dagster-celery"
    workers = [
        subprocess.Popen(
            [
                str(worker),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(config),
                "-n",
                f"w{i}@robust-data",
                "--",
                "--concurrency=1",
            ],
            env=env,
            cwd=tmp_path,
            stdout=(tmp_path / f"w{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for i in range(WORKERS)
    ]
    try:
        _wait_ready(workers, [tmp_path / f"w{i}.log" for i in range(WORKERS)])
        for key in ("DAGSTER_HOME", "ROBUST_DATA_HOME", "ROBUST_DATA_EXECUTOR"):
            monkeypatch.setenv(key, env[key])
        with DagsterInstance.get() as instance:
            result = execute_job(
                reconstructable(definitions.scoring_job_def),
                instance=instance,
                run_config={**run_config, "execution": {"config": broker}},
                tags={"dagster/partition": "digits"},
                raise_on_error=False,
            )
            logs = " | ".join((tmp_path / f"w{i}.log").read_text()[-400:] for i in range(WORKERS))
            assert result.success, logs
            spans = _step_spans(instance, result.run_id)
    finally:
        for process in workers:
            _kill(process)
    pids = {span["pid"] for span in spans.values()}
    assert len(spans) == 2 and len(pids) == 2, spans  # each shard on its own worker process
    assert os.getpid() not in pids
    # tables and weights went to the object store, runs and events to Postgres
    local = [p for p in (isolated_home / "store").rglob("*") if p.is_file()]
    assert local == [] and list(dagster_home.rglob("*.db")) == [], local
    distributed = store.read("rpr_scores", "digits")
    assert distributed.select(["sample_id", "steps_to_flip", "robust", "flip_pred"]).equals(
        expected.select(["sample_id", "steps_to_flip", "robust", "flip_pred"])
    )
