"""A Dagster instance on a real PostgreSQL server that the test starts itself.

Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl``) run a throwaway cluster in a temp
folder on a free loopback port; as root they run as the ``postgres`` user. The home's
``dagster.yaml`` holds the storage block of deploy/dagster.yaml with the test's connection,
and ``robust-data ingest`` runs against it: the run, its events and the asset
materializations land in Postgres, and no SQLite storage is created under the home. Skipped,
with the reason, when the binaries are missing and cannot be installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.pipelines.test_webserver import free_port

PROJECT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Postgres:
    """A running throwaway server: connect as ``user`` on 127.0.0.1:``port``."""

    port: int
    user: str = "postgres"
    db_name: str = "dagster"


def _binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def apt_install(package: str) -> str:
    """Try ``apt-get install -y PACKAGE`` as root; what happened, in one line."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"not root or no apt-get: install Debian's {package} package"
    for step in (["update"], ["install", "-y", package]):
        done = subprocess.run(
            ["apt-get", *step], capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode:
            return f"apt-get {' '.join(step)} failed: {done.stderr.strip()[-200:]}"
    return "installed"


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """initdb + pg_ctl start on a free loopback port; stopped and removed after the module.

    The cluster lives in its own folder under the system temp dir (pytest's is private to
    root, and the server user must reach its data folder).
    """
    binaries = _binaries()
    if binaries is None:
        installed = apt_install("postgresql")
        binaries = _binaries()
        if binaries is None:
            pytest.skip(f"no PostgreSQL binaries under /usr/lib/postgresql: {installed}")
    folder = Path(tempfile.mkdtemp(prefix="robust-data-pg-"))
    data, socket_dir = folder / "data", folder / "socket"
    socket_dir.mkdir()
    if os.geteuid() == 0:  # the server user must own its folders
        shutil.chown(folder, "postgres")
        shutil.chown(socket_dir, "postgres")
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    subprocess.run(_as_server_user(initdb), check=True, capture_output=True, timeout=120)
    port = free_port()
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log")]
    subprocess.run(
        _as_server_user([*start, "-w", "-t", str(START_TIMEOUT_S), "start"]),
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_S + 10,
    )
    server = Postgres(port)
    try:
        psql = [str(binaries / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        subprocess.run(
            [*psql, "-c", f"CREATE DATABASE {server.db_name}"], check=True, capture_output=True
        )
        yield server
    finally:
        stop = [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(_as_server_user(stop), capture_output=True, timeout=60, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def postgres_instance_yaml(server: Postgres) -> str:
    """deploy/dagster.yaml's storage block, with this server's connection (trust auth)."""
    deployed = yaml.safe_load((PROJECT / "deploy" / "dagster.yaml").read_text())
    db = deployed["storage"]["postgres"]["postgres_db"]
    assert set(db) == {"username", "password", "hostname", "db_name", "port"}
    local = {
        "username": server.user,
        "password": "",
        "hostname": "127.0.0.1",
        "db_name": server.db_name,
        "port": server.port,
    }
    return yaml.safe_dump(
        {
            "storage": {"postgres": {"postgres_db": local}},
            "telemetry": {"enabled": False},
            "nux": {"enabled": False},
        }
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)  # apt-get update and install may take 600 s each
def test_a_cli_run_records_everything_in_postgres(
    postgres: Postgres, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("dagster_postgres", reason="pip install dagster-postgres")
    from dagster import AssetKey, DagsterInstance

    from pipelines.cli import main
    from pipelines.home import scoped_environ

    dagster_home = isolated_home / "dagster"
    (dagster_home / "dagster.yaml").write_text(postgres_instance_yaml(postgres))
    assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0
    assert "run " in capsys.readouterr().out
    env = {"DAGSTER_HOME": str(dagster_home)}
    with scoped_environ(env), DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()
        assert [run.job_name for run in runs] == ["ingest_job"]
        assert runs[0].is_success
        event = instance.get_latest_materialization_event(AssetKey("raw_samples"))
        assert event is not None and event.run_id == runs[0].run_id
    sqlite = [p.name for p in dagster_home.rglob("*.db")]
    assert sqlite == [], f"SQLite storage was created under the home: {sqlite}"
