"""Launching Dagster runs for the CLI: run config, execution, and failures as one line."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.cli.common import CliError, flagged
from pipelines.home import dagster_environment, run_tags, scoped_environ
from robust_data.errors import DatasetError
from robust_data.ingest.build import IngestOptions, parse_size
from robust_data.ingest.sources import PATH_SOURCES, registration_for, resolve_source
from robust_data.ingest.sources.base import Source, require_root
from robust_data.store.lock import WRITER_ENV, writer_token
from robust_data.store.store import Store


@dataclass(frozen=True)
class RunOutcome:
    """What a CLI-launched Dagster run did."""

    run_id: str
    seconds: float
    warnings: tuple[str, ...] = ()  # failed non-blocking checks (the guards), one line each
    # Asset name -> the metadata it logged in this run (raw_samples: its latest, when the
    # run read it without making it); the summary is built from these.
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_metadata(instance: Any, run_id: str, partition: str) -> dict[str, dict[str, Any]]:
    """Asset name -> the plain values of the metadata it logged in run ``run_id``.

    ``raw_samples`` comes from its latest materialization for ``partition`` when the run did
    not make it (the scoring job reads the stored samples).
    """
    from dagster import AssetKey, AssetRecordsFilter, DagsterEventType

    def values(materialization: Any) -> dict[str, Any]:
        return {key: value.value for key, value in materialization.metadata.items()}

    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is not None:
            found[materialization.asset_key.to_user_string()] = values(materialization)
    if "raw_samples" not in found:
        latest = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("raw_samples"), asset_partitions=[partition]),
            limit=1,
        ).records
        if latest:
            found["raw_samples"] = values(latest[0].asset_materialization)
    return found


def failed_checks(result: Any) -> list[str]:
    """'asset.check: description' of every failed asset check of a run, one line each."""
    failed = []
    for event in result.all_events:
        data = event.event_specific_data
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and not data.passed:
            description = " ".join((data.description or "no description").split())
            failed.append(f"{data.asset_key.to_user_string()}.{data.check_name}: {description}")
    return failed


#: The product's own errors (robust_data.errors.RobustDataError and its subclasses, and
#: CliError): their message is the one line to show (``expected ...; found ...; how to fix``),
#: whatever library error they were raised from. A step's error arrives as its class name.
PRODUCT_ERRORS = (
    "RobustDataError",
    "DatasetError",
    "HomeLockedError",
    "TargetError",
    "ExportError",
    "QueryError",
    "ImageDecodeError",
    "CliError",
)


#: Thread-count settings of the math libraries (torch reads them when a process imports it).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def worker_threads(
    workers: int, cores: int | None = None, environ: dict[str, str] | None = None
) -> dict[str, str]:
    """The thread settings for ``workers`` step processes sharing this machine's cores.

    Each process gets ``cores // workers`` threads (at least 1), so that two workers on two
    cores run one thread each instead of two each (four threads fighting over two cores).
    Nothing is set for one worker, or when the user set ``OMP_NUM_THREADS`` themselves.

    Returns
    -------
    dict
        Variables to add to the run's environment (empty: none).
    """
    environ = dict(os.environ) if environ is None else environ
    if workers <= 1 or "OMP_NUM_THREADS" in environ:
        return {}
    share = str(max(1, (cores or os.cpu_count() or 1) // workers))
    return {name: share for name in THREAD_ENV}


#: How a step or run stopped by Ctrl-C or SIGTERM (the executor passes both on) reports it.
INTERRUPTIONS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")


def _interrupted(run_id: str) -> str:
    """The one line of a run stopped by Ctrl-C or SIGTERM."""
    return (
        "expected the run to finish; found it interrupted (Ctrl-C or SIGTERM) and its steps "
        f"stopped (run {run_id[:8]}); run the command again to redo it"
    )


def _failure_message(result: Any) -> str:
    """The cause of a failed run's first failed step, as one line.

    The outermost product error (:data:`PRODUCT_ERRORS`) in the step error's cause chain
    (Dagster wraps it in ``DagsterExecutionStepExecutionError``; it may itself be raised from
    a library's error, such as pyarrow's ``ArrowInvalid``), with the options it names as
    this command's flags (:func:`flagged`), else the innermost cause.
    """
    for event in result.all_events:
        if event.is_step_failure:
            chain = [event.step_failure_data.error]
            while chain[-1].cause is not None:
                chain.append(chain[-1].cause)
            if any(e.cls_name in INTERRUPTIONS for e in chain):
                return _interrupted(result.run_id)
            error = next((e for e in chain if e.cls_name in PRODUCT_ERRORS), chain[-1])
            if error.cls_name == "DagsterAssetCheckFailedError":
                checks = "; ".join(failed_checks(result)) or "no check evaluation recorded"
                return (
                    f"expected the data to pass its blocking checks; found failed check {checks}; "
                    f"fix the input and run again (run {result.run_id[:8]})"
                )
            lines = error.message.strip().splitlines()
            text = lines[0] if lines else error.cls_name
            _, sep, rest = text.partition(f"{error.cls_name}: ")
            text = rest if sep else text
            if error.cls_name in PRODUCT_ERRORS:
                text = flagged(text)  # only the text crossed from the step
            else:
                text = (
                    f"{error.cls_name}: {text} "
                    f"(run {result.run_id[:8]}; its logs are in robust-data ui)"
                )
            return text
    for event in result.all_events:  # no step failed: the executor did (a worker lost)
        error = event.job_failure_data.error if event.is_run_failure else None
        if error is not None and error.cls_name in INTERRUPTIONS:
            return _interrupted(result.run_id)
        if error is not None:
            lines = [line.strip() for line in error.message.strip().splitlines() if line.strip()]
            return (
                f"{' '.join(lines)[:400]} (run {result.run_id[:8]}; re-execute it from "
                "failure in robust-data ui)"
            )
    return f"run {result.run_id[:8]} failed; its logs are in robust-data ui"


def run_job(
    store: Store,
    job: str,
    partition: str,
    config: dict[str, Any],
    ops: dict[str, dict[str, Any]] | None = None,
    workers: int = 1,
) -> RunOutcome:
    """Materialize ``job`` for one dataset partition in the home's Dagster instance.

    ``ops`` adds run config per asset (``{"rpr_scores": {"shards": 2}}``). With ``workers``
    above 1 the multiprocess executor runs up to that many steps at once, each in its own
    process (the RPR shards in parallel) with its share of the cores (:func:`worker_threads`);
    with 1, everything runs in this process. With
    ``ROBUST_DATA_EXECUTOR=celery`` the curation and scoring jobs' steps go to the Celery
    workers (:func:`cluster_execution`).

    Every process the run starts carries this command's :func:`writer_token` in
    ``ROBUST_DATA_WRITER``: step processes die with it (:func:`pipelines.home.worker_job`),
    and the next writer kills any that outlive it.

    Raises
    ------
    CliError
        With the failing step's one-line error.
    """
    execution = check_execution(job, workers)
    run_config = {
        "ops": {
            # The scoring job reads the stored raw_samples: no ingestion config there.
            **({} if job == "scoring_job" else {"raw_samples_assets": {"config": config}}),
            **{name: {"config": value} for name, value in (ops or {}).items()},
        },
        # The console logger stays quiet: a failure is reported below as one line.
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    }
    from dagster import DagsterInstance

    from assets.partitions import DATASETS_NAME
    from assets.resources import MAX_CONCURRENT_ENV

    if execution is not None:
        run_config["execution"] = execution

    # The run's environment (read by the assets and inherited by worker processes) is set
    # for the run only: this process's environment is as it was afterwards.
    environment = {**dagster_environment(store), WRITER_ENV: writer_token()}
    if workers > 1:
        environment[MAX_CONCURRENT_ENV] = str(workers)
        environment.update(worker_threads(workers))  # the cores divided between the workers
    started = time.perf_counter()
    with scoped_environ(environment), DagsterInstance.get() as instance:
        if not instance.has_dynamic_partition(DATASETS_NAME, partition):
            instance.add_dynamic_partitions(DATASETS_NAME, [partition])
        if workers > 1 or execution is not None:
            result = _execute_in_workers(instance, job, partition, run_config)
        else:
            result = _execute_here(instance, store, job, partition, run_config)
        metadata = run_metadata(instance, result.run_id, partition) if result.success else {}
    if not result.success:
        raise CliError(_failure_message(result))
    store.remove_step_outputs(result.run_id)  # shard outputs, merged into the stored table
    # The run succeeded, so any failed check is a non-blocking guard: shown as a warning.
    warnings = tuple(failed_checks(result))
    return RunOutcome(result.run_id, time.perf_counter() - started, warnings, metadata)


def check_execution(job: str, workers: int) -> dict[str, Any] | None:
    """Check ``--workers`` and the executor settings of the environment, writing nothing.

    Returns
    -------
    dict or None
        The run's ``execution`` config (:func:`cluster_execution`).

    Raises
    ------
    CliError
        For ``--workers`` below 1 or an executor a CLI run cannot use.
    ValueError
        For a malformed ``ROBUST_DATA_*`` setting (one line naming it).
    """
    from assets.resources import Settings

    if workers < 1:
        raise CliError(f"expected --workers >= 1; found {workers}; pass --workers 2")
    return cluster_execution(Settings.from_environ().executor, job, dict(os.environ))


#: The broker settings a CLI run on Celery workers reads from the environment.
CELERY_ENV = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def cluster_execution(executor: str, job: str, environ: dict[str, str]) -> dict[str, Any] | None:
    """The run's ``execution`` config when its steps go to a cluster; None to run here.

    ``celery``: the curation and scoring jobs' steps go to the Celery workers, with the broker
    and result backend named by ``env:`` entries (the run record in Postgres holds no
    password). Ingestion runs in this process whatever the executor. ``k8s`` runs are
    launched with deploy/k8s-executor.yaml, not from here.

    Raises
    ------
    CliError
        For ``k8s``, or ``celery`` without both :data:`CELERY_ENV` variables set.
    """
    if executor == "multiprocess" or job not in ("curation_job", "scoring_job"):
        return None
    if executor == "k8s":
        raise CliError(
            "expected ROBUST_DATA_EXECUTOR=multiprocess or celery for a CLI run; found k8s; "
            "launch with dagster job launch -c deploy/k8s-executor.yaml (deploy/README.md)"
        )
    missing = [name for name in CELERY_ENV if not environ.get(name)]
    if missing:
        raise CliError(
            f"expected {' and '.join(missing)} set for ROBUST_DATA_EXECUTOR=celery; found "
            "unset; set them to the broker's redis:// URL (deploy/celery/worker.env.example)"
        )
    return {"config": {"broker": {"env": CELERY_ENV[0]}, "backend": {"env": CELERY_ENV[1]}}}


def _execute_here(
    instance: Any, store: Store, job: str, partition: str, run_config: dict[str, Any]
) -> Any:
    """Run ``job`` step by step in this process, no step's output kept after its consumers.

    Not ``execute_in_process``: that captures every output value for the result object, so
    memory grew with each step (see :func:`pipelines.definitions.in_process_job`).
    """
    from dagster import build_reconstructable_job, execute_job

    target = build_reconstructable_job(
        "pipelines.definitions",
        "in_process_job",
        # dagster annotates this tuple[object] (one item), meaning any number
        reconstructable_args=(job, str(store.home), store.tables_root),  # type: ignore[arg-type]
    )
    return execute_job(
        target,
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": partition, **run_tags()},
        raise_on_error=False,
    )


#: The jobs whose steps run in worker processes (``--workers`` above 1, or Celery).
WORKER_JOBS = ("curation_job", "scoring_job")


def _execute_in_workers(instance: Any, job: str, partition: str, run_config: dict[str, Any]) -> Any:
    """Run ``job`` with the executor of ``$ROBUST_DATA_EXECUTOR``: local processes (steps at
    once: ``$ROBUST_DATA_MAX_CONCURRENT``) or Celery workers."""
    from dagster import build_reconstructable_job, execute_job

    if job not in WORKER_JOBS:
        raise CliError(f"expected curation_job or scoring_job with --workers; found {job}")
    return execute_job(
        build_reconstructable_job("pipelines.home", "worker_job", reconstructable_args=(job,)),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": partition, **run_tags()},
        raise_on_error=False,
    )


def ingest_config(args: argparse.Namespace, spec: str, root: str | None) -> dict[str, Any]:
    """The ingestion run config, checked as the ingest step checks it (IngestOptions)."""
    IngestOptions(  # fail fast, before anything is written, with the step's one-line message
        seed=args.seed,
        test_fraction=args.test_fraction,
        resize=parse_size(args.resize) if args.resize else None,
        channels=args.channels or None,
    )
    return {
        "source": spec,
        "root": root or None,
        "seed": args.seed,
        "test_fraction": args.test_fraction,
        "resize": args.resize or None,
        "channels": args.channels,
    }


def resolve_dataset(
    store: Store, args: argparse.Namespace, dataset: str
) -> tuple[str, str, str | None]:
    """(partition name, source spec, root) for a source spec or a registered dataset name."""
    found = registration_for(dataset, store.registrations(), args.root, args.name)
    return found.name, found.source, found.root


def check_source(spec: str, root: str | None) -> None:
    """Refuse a source whose data is not here, before anything is written (the run reads it).

    Only what can be told without reading it: the path of a path source exists; a source
    that needs ``--root`` has one (or its default root: Fashion-MNIST's Debian folder), a
    folder, holding the files it looks for.

    Raises
    ------
    DatasetError
        One line naming the path, what it should hold and how to fix it.
    """
    resolved = resolve_source(spec, root=root)
    source, where = resolved.source, resolved.root
    if not source.needs_root:
        return
    if source.name in PATH_SOURCES:
        if where is None or not where.exists():
            raise DatasetError(
                f"{source.name}:PATH to {source.expected}",
                f"{where} does not exist",
                f"check the path after '{source.name}:'",
            )
        return
    if where is None and source.default is not None:
        _check_default_root(source)
        return
    require_root(source.name, where, source.expected)
    available, why = source.availability(where)
    if not available:
        raise DatasetError(
            f"the {source.name} files under --root {where}",
            why,
            "check the --root path (nothing is downloaded)",
            options=("root",),  # `why` may name it
        )


def _check_default_root(source: Source) -> None:
    """Refuse a source read from its default root when the files are not there."""
    assert source.default is not None
    where = require_root(source.name, None, source.expected, source.default)
    missing = source.find(where) if source.find else None
    if missing:
        raise DatasetError(
            f"the {source.name} files in its default root",
            missing,
            source.default.fix(),
            options=("root",),
        )


def curation_ops(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run config of the main job's options (preset, seeds), checked first."""
    from robust_data.curation.presets import DEFAULT_PRESET, PRESETS, customized

    if args.seeds < 1:
        raise CliError(f"expected --seeds >= 1; found {args.seeds}; pass --seeds 3")
    if args.preset is not None and args.preset not in PRESETS:
        raise CliError(
            f"expected --preset in {sorted(PRESETS)}; found {args.preset!r}; "
            f"pass --preset {DEFAULT_PRESET}"
        )
    if args.class_focus is not None and args.class_focus < 0:
        raise CliError(
            f"expected --class-focus >= 0; found {args.class_focus}; pass --class-focus 2"
        )
    # the plan the run would use, refused here (one line, nothing run) when invalid
    customized(args.preset or DEFAULT_PRESET, class_focus=args.class_focus)
    ops: dict[str, dict[str, Any]] = {"retrained_model": {"seeds": args.seeds}}
    curation = {"preset": args.preset, "class_focus": args.class_focus}
    curation = {k: v for k, v in curation.items() if v is not None}
    if curation:
        ops["curation_assets"] = curation
    return ops


def model_ops(store: Store, args: argparse.Namespace, partition: str) -> dict[str, dict[str, Any]]:
    """Run config of ``--model`` / ``--arch`` for the reference model, checked first.

    Your factory is imported and your TorchScript file loaded here, before anything is
    written; when the dataset's samples are already stored, the model also runs on two of
    them and must give one logit per class. A TorchScript path is passed on absolute, so a
    step running in another folder finds it.

    Raises
    ------
    RobustDataError
        One line: both options, an unknown built-in, a missing or unreadable file, a factory
        that does not import or gives no fitting ``nn.Module``.
    """
    from robust_data.scoring.models import ModelOptions
    from robust_data.scoring.reference import check_model_for
    from robust_data.scoring.spec import ModelSpec

    spec = ModelSpec.from_flags(args.model, args.arch)
    if spec is None:
        return {}
    if spec.kind == "torchscript":
        spec = ModelSpec("torchscript", str(Path(spec.source).expanduser().resolve()))
    spec.check()
    if spec.kind != "builtin" and store.has("raw_samples", partition):
        check_model_for(store.read("raw_samples", partition), ModelOptions(model=spec.source))
    return {"reference_model": spec.fields()}
