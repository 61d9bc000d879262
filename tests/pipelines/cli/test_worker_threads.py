"""`curate --workers N` divides the cores between its step processes (issue 32, item 2)."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines.cli.launch import worker_threads


def test_workers_share_the_cores_unless_the_user_chose() -> None:
    assert worker_threads(2, cores=2, environ={}) == {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    assert worker_threads(2, cores=16, environ={})["OMP_NUM_THREADS"] == "8"
    assert worker_threads(4, cores=2, environ={})["OMP_NUM_THREADS"] == "1"  # at least one
    assert worker_threads(1, cores=2, environ={}) == {}  # one worker keeps every core
    assert worker_threads(2, cores=2, environ={"OMP_NUM_THREADS": "2"}) == {}  # the user's


def test_a_step_process_started_with_its_share_runs_that_many_torch_threads() -> None:
    env = {**os.environ, **worker_threads(2, cores=2, environ={})}
    probe = "import torch; print(torch.get_num_threads())"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "1"
