"""End to end with the real webserver.

The CLI materializes, dagster-webserver shows it over GraphQL.
"""

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipelines.cli import main
from robust_data import Store
from tests.conftest import CuratedHome

PROJECT = Path(__file__).resolve().parents[2]

QUERY = """
{
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    assetMaterializations(limit: 1) {
      partition
      runId
      metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on FloatMetadataEntry { floatValue }
        ... on TableMetadataEntry { table { records } }
      }
    }
  }
}
"""

#: The whole graph: each asset and the assets it depends on.
EDGES = {
    "raw_samples": set(),
    "ingest_rejects": set(),
    "reference_model": {"raw_samples"},
    "rpr_scores": {"raw_samples", "reference_model"},
    "oof_predictions": {"raw_samples", "reference_model"},
    "label_quality": {"oof_predictions", "raw_samples"},
    "variants": {"curated_samples", "curation_ledger", "rpr_scores", "reference_model"},
    "reviews": set(),  # external: written by robust-data browse / review import, never by a run
    "curated_samples": {"raw_samples", "rpr_scores", "label_quality", "reviews"},
    "curation_ledger": {"raw_samples", "rpr_scores", "label_quality", "reviews"},
    "curated_dataset": {
        "raw_samples",
        "rpr_scores",
        "label_quality",
        "curated_samples",
        "curation_ledger",
        "reference_model",
        "variants",
    },
    "retrained_model": {
        "raw_samples",
        "rpr_scores",
        "curation_ledger",
        "reference_model",
        "curated_dataset",
        "variants",
    },
    "corrupted_test": {"raw_samples"},
    "robustness_report": {
        "retrained_model",
        "raw_samples",
        "rpr_scores",
        "curation_ledger",
        "corrupted_test",
    },
}


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


def asset_nodes(port: int) -> dict[str, dict]:
    """Poll GraphQL until the code location has loaded; the asset nodes by name."""
    nodes: list[dict[str, object]] = []
    deadline = time.monotonic() + 90  # the code location loads after /server_info answers
    while time.monotonic() < deadline and not nodes:
        nodes = graphql(port, QUERY).get("data", {}).get("assetNodes") or []  # type: ignore[union-attr]
        time.sleep(0 if nodes else 1)
    return {"/".join(n["assetKey"]["path"]): n for n in nodes}  # type: ignore[index,misc]


def latest_raw_samples(port: int) -> dict[str, object]:
    """The latest raw_samples materialization, once the code location has loaded."""
    by_key = asset_nodes(port)
    assert {"raw_samples", "ingest_rejects"} <= set(by_key)
    return by_key["raw_samples"]["assetMaterializations"][0]


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def running_webserver(home: Path) -> Iterator[int]:
    """A real dagster-webserver on a free loopback port over ``home``; its port.

    The whole process group is stopped on exit.
    """
    port = free_port()
    env = {**os.environ, "ROBUST_DATA_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    command = [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml"]
    process = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", process)
        yield port
    finally:
        stop_group(process)


@pytest.mark.slow
def test_webserver_shows_the_whole_graph_with_the_cli_materializations(
    curated_digits: CuratedHome,
) -> None:
    store = Store.open(curated_digits.home)
    with running_webserver(curated_digits.home) as port:
        nodes = asset_nodes(port)
        # the whole graph, with its dependency edges
        assert set(nodes) == set(EDGES)
        for name, node in nodes.items():
            assert {"/".join(k["path"]) for k in node["dependencyKeys"]} == EDGES[name], name
        # every asset materialized by the CLI's one run, for the digits partition
        latest = {
            n: node["assetMaterializations"][0] for n, node in nodes.items() if n != "reviews"
        }
        assert len(latest) == len(EDGES) - 1
        assert {m["partition"] for m in latest.values()} == {"digits"}
        assert len({m["runId"] for m in latest.values()}) == 1
        entries = {e["label"]: e for e in latest["raw_samples"]["metadataEntries"]}
        assert entries["dagster/row_count"]["intValue"] == 1797
        assert {"class_counts", "split_counts", "preview", "path"} <= set(entries)
        counts = [json.loads(r) for r in entries["class_counts"]["table"]["records"]]
        assert counts[0] == {"class": "0", "samples": 178}  # a table shown in place
        scores = {e["label"]: e for e in latest["rpr_scores"]["metadataEntries"]}
        table = store.read("rpr_scores", "digits")
        fraction = table.column("robust").to_numpy()
        test_rows = table.column("split").to_numpy(zero_copy_only=False) == "test"
        assert scores["robust_fraction_test"]["floatValue"] == pytest.approx(
            fraction[test_rows].mean(), abs=1e-4
        )


@pytest.mark.slow
def test_ui_command_serves_the_home(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0
    capsys.readouterr()
    port, process = start_ui(isolated_home)
    try:
        assert latest_raw_samples(port)["partition"] == "digits"
        # the daemon runs too, so the inbox sensor and the schedule are evaluated
        assert daemon_healthy(port, "SENSOR") and daemon_healthy(port, "SCHEDULER")
        process.send_signal(signal.SIGTERM)  # to robust-data alone: it must stop dagster dev too
        assert process.wait(timeout=60) == 0
        assert group_ends(process.pid, 30), "dagster processes outlived robust-data ui"
    finally:
        if group_alive(process.pid):
            stop_group(process)
    assert (isolated_home / "workspace.yaml").exists()


DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


def daemon_healthy(port: int, daemon: str, timeout: float = 90.0) -> bool:
    """Poll GraphQL until ``daemon`` (SENSOR, SCHEDULER, ...) reports healthy, or give up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = graphql(port, DAEMONS)["data"]["instance"]["daemonHealth"]  # type: ignore[index]
        statuses = {d["daemonType"]: d["healthy"] for d in data["allDaemonStatuses"]}
        if statuses.get(daemon):
            return True
        time.sleep(2)
    return False


def start_ui(home: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """``robust-data ui`` over ``home`` on a free port, in a process group of its own, once
    ``/server_info`` answers; its port and process."""
    port = free_port()
    script = Path(sys.executable).parent / "robust-data"
    process = subprocess.Popen(
        [str(script), "ui", "--port", str(port), "--home", str(home)],
        cwd=home.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", process)
    except BaseException:
        stop_group(process)
        raise
    return port, process


def group_ends(pgid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for every process of the group to end; whether they did."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    return not group_alive(pgid)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
