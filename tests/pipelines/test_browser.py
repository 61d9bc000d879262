"""End to end in a real browser: headless Chromium renders the webserver's global asset lineage.

Only this module needs a browser. Without one (and when it cannot be installed) it skips; set
``ROBUST_DATA_CHROMIUM`` to use a given binary and ``ROBUST_DATA_NO_BROWSER_INSTALL=1`` to never
try ``apt-get install chromium``. The screenshot is kept at ``test-artifacts/lineage.png``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.pipelines.test_webserver import PROJECT, graphql, running_webserver

CHROMIUM_ENV = "ROBUST_DATA_CHROMIUM"
NO_INSTALL_ENV = "ROBUST_DATA_NO_BROWSER_INSTALL"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
INSTALL_TIMEOUT_S = 300
INSTALLED = "installed chromium with apt-get"
CHROMIUM_TIMEOUT_S = 60
VIRTUAL_TIME_MS = 15_000  # page time, fast-forwarded: a run takes ~2-3 s of wall time
WIDTH, HEIGHT = 1600, 1000  # the window grows taller when the graph needs it
TOP_CLEARANCE_PX = 60  # the filter bar floats over the top ~55 px of the graph
ARTIFACT = PROJECT / "test-artifacts" / "lineage.png"
CORE_ASSETS = {
    "raw_samples",
    "reference_model",
    "rpr_scores",
    "label_quality",
    "curated_samples",
    "robustness_report",
}
# With nux on, the UI opens a "Join the Dagster community" modal over the page (only on
# http://127.0.0.1 or localhost, while GraphQL's shouldShowNux is true); every robust-data
# home's dagster.yaml turns it off.
NODES_QUERY = "{ shouldShowNux assetNodes { assetKey { path } groupName } }"
LOCATIONS_QUERY = """
{
  workspaceOrError {
    ... on Workspace {
      locationEntries { name locationOrLoadError { __typename ... on PythonError { message } } }
    }
  }
}
"""
# Dagster 1.13's "Global asset lineage" page (the left nav's "Lineage"). It draws each group
# collapsed (one box, no asset names) unless `expanded` lists it; group ids are
# `global@global:<group>` while the UI flag "asset graph groups per code location" is off.
LINEAGE_PATH = "/asset-groups"
# The graph viewport's pan and zoom: matrix(scale, 0, 0, scale, x, y); group 1 is y.
VIEWPORT_Y = re.compile(
    r"transform:\s*matrix\([-\d.e]+,\s*0,\s*0,\s*[-\d.e]+,\s*[-\d.e]+,\s*([-\d.e]+)\)"
)


def _tail(text: bytes | str, lines: int = 3) -> str:
    """The last lines of a process's output, on one line."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _run_group(
    command: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run in a new process group, output captured; the whole group is killed when it ends
    (helpers such as Chromium's crashpad must not outlive it) or on timeout (re-raised)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        process.communicate()
        raise
    finally:
        _kill_group(process.pid)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _find_chromium() -> tuple[str | None, str]:
    """The browser binary (or None) and what was looked at."""
    override = os.environ.get(CHROMIUM_ENV)
    if override:
        found = shutil.which(override)
        return found, f"{CHROMIUM_ENV}={override} is {'usable' if found else 'not an executable'}"
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found, f"found {found}"
    return None, f"none of {', '.join(CHROMIUM_NAMES)} on PATH"


def _install_chromium() -> str:
    """Try ``apt-get install -y chromium`` (root only); INSTALLED or what went wrong."""
    if os.environ.get(NO_INSTALL_ENV) == "1":
        return f"install disabled by {NO_INSTALL_ENV}=1"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root, so no apt-get install"
    apt = shutil.which("apt-get")
    if apt is None:
        return "no apt-get to install with"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    failures: list[str] = []
    # A fresh container has no package lists, so the first install fails: update, retry once.
    for step in (["install", "-y", "chromium"], ["update"], ["install", "-y", "chromium"]):
        try:
            done = _run_group([apt, "-q", *step], deadline - time.monotonic(), env)
        except subprocess.TimeoutExpired:
            failures.append(f"apt-get {' '.join(step)} ran past the {INSTALL_TIMEOUT_S} s budget")
            break
        if done.returncode == 0 and step[0] == "install":
            return INSTALLED
        if done.returncode != 0:
            failures.append(
                f"apt-get {' '.join(step)} exited {done.returncode}: {_tail(done.stderr)}"
            )
    return "; ".join(failures)


@pytest.fixture(scope="module")
def chromium() -> str:
    """A headless-capable Chromium: found, or installed with apt-get, else skip this module."""
    found, looked = _find_chromium()
    if found:
        return found
    if os.environ.get(CHROMIUM_ENV):  # an explicit binary: installing another would ignore it
        pytest.skip(f"no browser: {looked}")
    installed = _install_chromium()
    if installed == INSTALLED:
        found, after = _find_chromium()
        if found:
            return found
        installed += f", yet {after}"
    pytest.skip(f"no browser: {looked}; {installed}")


@pytest.fixture
def webserver(isolated_home: Path) -> Iterator[int]:
    """A real dagster-webserver on a free port over the isolated home (its dagster.yaml has
    nux off, so no community dialog covers the page); its port."""
    with running_webserver(isolated_home) as port:
        yield port


def loaded_asset_nodes(port: int, timeout: float = 90.0) -> dict[str, object]:
    """Poll GraphQL until the code location has loaded (after /server_info answers); fail fast
    with the error when it cannot load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data: dict[str, object] = graphql(port, NODES_QUERY)["data"]  # type: ignore[assignment]
        if data["assetNodes"]:
            return data
        workspace = graphql(port, LOCATIONS_QUERY)["data"]["workspaceOrError"]  # type: ignore[index]
        for entry in workspace.get("locationEntries") or []:
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                pytest.fail(f"code location {entry['name']} failed to load: {error['message']}")
        time.sleep(1)
    raise TimeoutError(f"no asset nodes over GraphQL in {timeout} s")


def run_chromium(binary: str, profile: Path, size: tuple[int, int], *args: str) -> str:
    """One headless Chromium run with a fresh profile; its stdout (the DOM with --dump-dom)."""
    command = [
        binary,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        *args,
    ]
    try:
        done = _run_group(command, CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"chromium ran past {CHROMIUM_TIMEOUT_S} s: {_tail(exc.stderr or b'')}")
    assert done.returncode == 0, f"chromium exited {done.returncode}: {_tail(done.stderr)}"
    return done.stdout.decode(errors="replace")


class _AssetNodeNames(HTMLParser):
    """The names drawn in the graph's asset nodes (class ``AssetNode_assetName__<hash>``).

    Full and minimal (zoomed-out) nodes both carry that class; the sidebar and the group
    headers do not, so a group named like one of its assets cannot pass for the asset.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self._open = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if any(c.startswith("AssetNode_assetName") for c in classes):
            self._open = True

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.names.add(data.strip())
            self._open = False


def asset_node_names(dom: str) -> set[str]:
    """The asset names the lineage graph drew."""
    parser = _AssetNodeNames()
    parser.feed(dom)
    return parser.names


def growth_to_fit(dom: str) -> int:
    """How many pixels taller the window must be for the whole graph to show (0 if it does).

    The page zooms the graph to fit its *width* and centres it vertically, so a tall graph
    overflows equally above and below the viewport, whose y offset is then negative.
    """
    match = VIEWPORT_Y.search(dom)
    return max(0, math.ceil(2 * (TOP_CLEARANCE_PX - float(match.group(1))))) if match else 0


@pytest.mark.slow
@pytest.mark.timeout(1200)  # apt-get may install Chromium first (300 s)
def test_lineage_page_renders_every_asset_in_chromium(
    chromium: str, webserver: int, tmp_path: Path
) -> None:
    data = loaded_asset_nodes(webserver)
    nodes: list[dict[str, object]] = data["assetNodes"]  # type: ignore[assignment]
    expected = {"/".join(n["assetKey"]["path"]) for n in nodes}  # type: ignore[index]
    assert expected >= CORE_ASSETS
    assert data["shouldShowNux"] is False, "nux: enabled: false in dagster.yaml was not picked up"

    groups = sorted({str(n["groupName"]) for n in nodes if n["groupName"]})
    expanded = urllib.parse.quote(",".join(f"global@global:{g}" for g in groups), safe="")
    url = f"http://127.0.0.1:{webserver}{LINEAGE_PATH}?expanded={expanded}"
    print(f"\nlineage url: {url}")

    # One run both dumps the DOM and takes the screenshot of the same rendered page. Nodes
    # outside the viewport are not rendered at all: if the graph overflows, run again in a
    # window tall enough for all of it.
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.unlink(missing_ok=True)
    render = ("--dump-dom", f"--screenshot={ARTIFACT}", url)
    size = (WIDTH, HEIGHT)
    dom = run_chromium(chromium, tmp_path / "profile-0", size, *render)
    if extra := growth_to_fit(dom):
        size = (WIDTH, HEIGHT + extra)
        dom = run_chromium(chromium, tmp_path / "profile-1", size, *render)
    print(f"lineage screenshot ({size[0]}x{size[1]}): {ARTIFACT}")

    assert "Global asset lineage" in dom, dom[-2000:]
    assert "Join the Dagster community" not in dom, "the community modal is open over the graph"
    drawn = asset_node_names(dom)
    assert expected <= drawn, f"assets missing from the lineage graph: {sorted(expected - drawn)}"
    png = ARTIFACT.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", "not a PNG"
    assert struct.unpack(">II", png[16:24]) == size
    assert len(png) > 30_000, f"suspiciously small screenshot: {len(png)} bytes"
