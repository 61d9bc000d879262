"""Re-execute a failed run from failure: only its failed and not-run steps, in a new run.

    python deploy/celery/reexecute.py RUN_ID

Dagster 1.13's CLI has no re-execute command (`dagster run` and `dagster job` offer none); the
UI's "Re-execute > From failure" does the same from the run's page. Run this where runs are
launched, with the workers' environment (worker.env: DAGSTER_HOME, ROBUST_DATA_EXECUTOR, the
broker and store variables): the new run takes the failed run's config (the celery.yaml
broker entries included), its partition, and the job as the code defines it now; steps that
succeeded are not run again, their outputs are read from the store. Prints the new run's id
and exits 0 when it succeeded.
"""

from __future__ import annotations

import sys
from typing import Any


def reexecute_from_failure(run_id: str, instance: Any) -> Any:
    """Re-execute run ``run_id`` of ``instance`` from failure; the new run's result."""
    from dagster import ReexecutionOptions, build_reconstructable_job, execute_job

    parent = instance.get_run_by_id(run_id)
    if parent is None:
        raise ValueError(f"expected a run id of this instance; found no run {run_id!r}")
    # The partition tag is not carried over by execute_job: pass it on.
    tags = {key: value for key, value in parent.tags.items() if key == "dagster/partition"}
    job = build_reconstructable_job(
        "pipelines.definitions", "resolved_job", reconstructable_args=(parent.job_name,)
    )
    return execute_job(
        job,
        instance=instance,
        tags=tags,
        reexecution_options=ReexecutionOptions.from_failure(run_id, instance),
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python deploy/celery/reexecute.py RUN_ID", file=sys.stderr)
        return 2
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        result = reexecute_from_failure(argv[0], instance)
    print(result.run_id)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
