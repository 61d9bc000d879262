"""End to end with the real webserver: the CLI materializes, dagster-webserver shows it over GraphQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines.cli import main

PROJECT = Path(__file__).resolve().parents[1]

QUERY = """
{
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    assetMaterializations(limit: 1) {
      partition
      metadataEntries { label ... on IntMetadataEntry { intValue } }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"webserver exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(f"no answer from {url} in {timeout} s")


def graphql(port: int, query: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def latest_raw_samples(port: int) -> dict[str, object]:
    """Poll GraphQL until the code location has loaded; the latest raw_samples materialization."""
    nodes: list[dict[str, object]] = []
    deadline = time.monotonic() + 90  # the code location loads after /server_info answers
    while time.monotonic() < deadline and not nodes:
        nodes = graphql(port, QUERY).get("data", {}).get("assetNodes") or []  # type: ignore[union-attr]
        time.sleep(0 if nodes else 1)
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}  # type: ignore[index]
    assert {"raw_samples", "ingest_rejects"} <= set(by_key)
    return by_key["raw_samples"]["assetMaterializations"][0]  # type: ignore[index,return-value]


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_webserver_lists_raw_samples_with_its_materialization(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["curate", "--dataset", "digits", "--home", str(isolated_home)]) == 0
    capsys.readouterr()
    port = free_port()
    env = {
        **os.environ,
        "ROBUST_DATA_HOME": str(isolated_home),
        "DAGSTER_HOME": str(isolated_home / "dagster"),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", process)
        latest = latest_raw_samples(port)
        assert latest["partition"] == "digits"
        entries = {e["label"]: e.get("intValue") for e in latest["metadataEntries"]}  # type: ignore[union-attr]
        assert entries["dagster/row_count"] == 1797
        assert {"class_counts", "split_counts", "preview", "path"} <= set(entries)
    finally:
        stop_group(process)


@pytest.mark.slow
def test_ui_command_serves_the_home(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0
    capsys.readouterr()
    port = free_port()
    script = Path(sys.executable).parent / "robust-data"
    process = subprocess.Popen(
        [str(script), "ui", "--port", str(port), "--home", str(isolated_home)],
        cwd=isolated_home.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", process)
        assert latest_raw_samples(port)["partition"] == "digits"
        process.send_signal(signal.SIGTERM)  # to robust-data alone: it must stop dagster dev too
        assert process.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not group_alive(process.pid), "dagster processes outlived robust-data ui"
    finally:
        if group_alive(process.pid):
            stop_group(process)
    assert (isolated_home / "workspace.yaml").exists()


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
