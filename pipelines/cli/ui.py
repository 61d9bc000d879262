"""``robust-data ui``: ``dagster dev`` over a home, tied to this command's lifetime."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys

from pipelines.cli.common import CliError
from pipelines.home import dagster_environment, writing_home
from robust_data.io.atomic import write_text_atomic
from robust_data.store.lock import HomeLockedError, die_with_parent
from robust_data.store.store import Store

WORKSPACE = """\
# Written by robust-data ui: the project's code location.
load_from:
  - python_module:
      module_name: pipelines.definitions
      location_name: robust_data
"""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ui_home(home: str | None) -> Store:
    """The home for the UI: locked only while its instance is created and cleaned up.

    The UI runs beside other commands; when another command holds the lock and the
    instance already exists, it starts at once (without the cleanup) instead of waiting.
    """
    try:
        with writing_home(home, "robust-data ui", timeout=0) as store:
            return store
    except HomeLockedError as busy:
        store = Store.open(home)
        if not (store.dagster_home / "history" / "runs.db").exists():
            with writing_home(home, "robust-data ui") as store:  # wait: the instance is new
                return store
        print(f"robust-data ui: {busy.found}; the UI starts beside it", file=sys.stderr)
        return store


def cmd_ui(args: argparse.Namespace) -> int:
    if not _port_free(args.port):
        raise CliError(
            f"expected a free port on 127.0.0.1; found {args.port} in use; pass --port 3001"
        )
    store = _ui_home(args.home)
    workspace = write_text_atomic(WORKSPACE, store.home / "workspace.yaml")
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(workspace),
        "-h",
        "127.0.0.1",
        "-p",
        str(args.port),
    ]
    print(
        f"Dagster UI for {store.home}: http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True
    )
    # Same process group as this command: Ctrl-C (or killing the group) reaches dagster dev too.
    # dagster dev treats SIGTERM as SIGINT, so SIGINT must not be inherited as ignored (as it is
    # under `cmd &` in a script); a SIGTERM to this command alone is passed on. If this command
    # is killed outright (SIGKILL), the kernel sends dagster dev SIGTERM (PR_SET_PDEATHSIG), and
    # dagster dev stops the webserver and the daemon: no server outlives the command.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parent = os.getpid()
    process = subprocess.Popen(
        command,
        env={**os.environ, **dagster_environment(store)},
        preexec_fn=lambda: die_with_parent(parent),
    )
    signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGTERM))
    try:
        return process.wait()
    except KeyboardInterrupt:
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            return 130
