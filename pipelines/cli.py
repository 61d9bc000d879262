"""The ``robust-data`` command: datasets, ingest, curate, query, ui.

It lives beside the Dagster wiring because it drives Dagster runs; the core library stays
framework-free. Dagster is imported only inside the commands that run it, so
``robust-data query`` and ``robust-data datasets`` start fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.home import dagster_environment, run_tags, writing_home
from robust_data.errors import DatasetError
from robust_data.ingest import IngestResult, parse_size
from robust_data.lock import HomeLockedError
from robust_data.query import FORMATS, QueryError, max_rows_for, stream_query
from robust_data.schema import read_params
from robust_data.sources import PATH_SOURCES, SOURCES, check_name, resolve_source
from robust_data.store import HOME_ENV, Registration, Store, table_location, write_text_atomic

DEFAULT_DATASET = "mnist-5k"
EXAMPLE_SQL = "SELECT label_name, count(*) FROM raw_samples GROUP BY 1"
PARTITIONS = "datasets"
PR_SET_PDEATHSIG = 1  # prctl option: the signal a child gets when its parent dies


class CliError(Exception):
    """A failure reported to the user as one line, exit status 1."""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        default=None,
        help=f"home folder for the store and the Dagster instance (env {HOME_ENV}; default ./.robust-data)",
    )


def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", help="local folder holding the dataset's files (mnist, cifar10, svhn, ...)"
    )
    parser.add_argument(
        "--name", help="dataset (partition) name; default: the source name or the path's slug"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the stratified split (default 0)"
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="test share when the source has no test split",
    )
    parser.add_argument(
        "--resize", default="", help="HEIGHTxWIDTH: resize images of mixed sizes instead of failing"
    )
    parser.add_argument(
        "--channels", type=int, choices=(1, 3), help="convert every image to 1 or 3 channels"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="the name is registered with another source: drop its old tables and use this one",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-data",
        description="Curate image-classification datasets for robustness (Dagster assets over a Parquet store).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list dataset sources and whether each is available here")
    _common(p)
    p.add_argument("--root", help="check the local-root sources against this folder")

    p = sub.add_parser("ingest", help="read a dataset into raw_samples (a Dagster materialization)")
    _common(p)
    p.add_argument("dataset", help="source name (see 'datasets'), imagefolder:PATH or parquet:PATH")
    _source_options(p)

    p = sub.add_parser("curate", help="run the main job (the whole asset graph) for one dataset")
    _common(p)
    p.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        help=f"dataset source or registered name (default {DEFAULT_DATASET})",
    )
    _source_options(p)
    p.add_argument(
        "--shards",
        type=int,
        default=1,
        help="score RPR in N shards, each its own step (default 1)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run up to N steps at once, each in its own process (default 1: one process)",
    )
    p.add_argument(
        "--preset",
        help="curation preset: paper, clean or focus (default clean; README 'Does curation help?')",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="seeds per model in the report (default 3; 2 is the least that gives intervals)",
    )

    p = sub.add_parser(
        "score-model",
        help="estimate a model's RPR robustness on a dataset split and print its robustness curve",
    )
    _common(p)
    p.add_argument("dataset", help="a dataset already ingested in this home (see 'datasets')")
    p.add_argument(
        "--model", help="weight file from robust-data (default: the dataset's reference_model)"
    )
    p.add_argument("--split", default="test", help="split to score (default test)")
    p.add_argument("--scheme", default="pixels", help="perturbation spec (default pixels)")
    p.add_argument("--max-steps", type=int, default=250, help="tries per image (default 250)")
    p.add_argument("--seed", type=int, default=0, help="perturbation seed (default 0)")
    p.add_argument("--limit", type=int, help="score only the split's first N samples")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--precision", default="auto", help="auto, fp32 or bf16 (default auto)")
    p.add_argument("--plot", help="also write the robustness curve as a PNG to this path")

    p = sub.add_parser("report", help="print a dataset's robustness report table and its path")
    _common(p)
    p.add_argument("dataset", help="a dataset curated in this home (robust-data curate)")

    p = sub.add_parser(
        "export",
        help="export a curated dataset as Parquet or an ImageFolder, with card and lineage",
    )
    _common(p)
    p.add_argument("dataset", help="a dataset curated in this home (robust-data curate)")
    p.add_argument("--format", choices=("parquet", "imagefolder"), default="parquet")
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument("--with-variants", action="store_true", help="add the kept samples' variants")
    p.add_argument(
        "--force", action="store_true", help="replace a non-empty folder that is not an export"
    )

    p = sub.add_parser(
        "gallery",
        help="draw every corruption at every severity on an MNIST digit and a 32x32 photo",
    )
    p.add_argument("--out", default="docs/gallery", help="output folder (default docs/gallery)")
    p.add_argument("--seed", type=int, default=0, help="corruption seed (default 0)")

    p = sub.add_parser(
        "query", help="read-only DuckDB SQL over the materialized tables (one view per table)"
    )
    _common(p)
    p.add_argument("sql", help='e.g. "SELECT label_name, count(*) FROM raw_samples GROUP BY 1"')
    p.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default table)"
    )
    p.add_argument(
        "--max-rows",
        type=int,
        default=None,
        metavar="N",
        help="stop after N rows (default 10000 for --format table, every row for csv/json; 0: no cap)",
    )

    p = sub.add_parser("ui", help="start the Dagster UI and daemon on 127.0.0.1 for this home")
    _common(p)
    p.add_argument("--port", type=int, default=3000, help="port on 127.0.0.1 (default 3000)")
    return parser


# ---------------------------------------------------------------------------------------------
# datasets


def cmd_datasets(args: argparse.Namespace) -> int:
    store = Store.open(args.home)
    root = Path(args.root).resolve() if args.root else None
    registered = store.registrations()
    rows = []
    for name, source in SOURCES.items():
        if name in PATH_SOURCES:
            rows.append((f"{name}:PATH", "-", source.description))
            continue
        check_root = root
        if check_root is None and name in registered and registered[name].root:
            check_root = Path(registered[name].root)
        available, why = source.availability(check_root)
        rows.append((name, "yes" if available else "no", f"{source.description}; {why}"))
    width = max(len(r[0]) for r in rows)
    print(f"{'source'.ljust(width)}  available  notes")
    for name, available, notes in rows:
        print(f"{name.ljust(width)}  {available.ljust(9)}  {notes}")
    if registered:
        print(f"\nregistered in {store.home}:")
        for reg in registered.values():
            print(f"  {reg.name}: {reg.source}" + (f" (root {reg.root})" if reg.root else ""))
    return 0


# ---------------------------------------------------------------------------------------------
# ingest / curate: Dagster runs


@dataclass(frozen=True)
class RunOutcome:
    """What a CLI-launched Dagster run did."""

    run_id: str
    seconds: float
    warnings: tuple[str, ...] = ()  # failed non-blocking checks (the guards), one line each


def _dataset_name(name: str) -> str:
    """A dataset name given to report, export or score-model, checked like ingest's."""
    try:
        return check_name(name)
    except DatasetError as error:
        raise DatasetError(
            error.expected, error.found, "pass a dataset listed by 'robust-data datasets'"
        ) from None


def _failed_checks(result: Any) -> list[str]:
    """'asset.check: description' of every failed asset check of a run, one line each."""
    failed = []
    for event in result.all_events:
        data = event.event_specific_data
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and not data.passed:
            description = " ".join((data.description or "no description").split())
            failed.append(f"{data.asset_key.to_user_string()}.{data.check_name}: {description}")
    return failed


def _failure_message(result: Any) -> str:
    """The root cause of a failed run's first failed step, as one line."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            if error.cls_name == "DagsterAssetCheckFailedError":
                checks = "; ".join(_failed_checks(result)) or "no check evaluation recorded"
                return (
                    f"expected the data to pass its blocking checks; found failed check {checks}; "
                    f"fix the input and run again (run {result.run_id[:8]})"
                )
            lines = error.message.strip().splitlines()
            text = lines[0] if lines else error.cls_name
            _, sep, rest = text.partition(f"{error.cls_name}: ")
            text = rest if sep else text
            if error.cls_name not in ("DatasetError", "HomeLockedError"):
                text = f"{error.cls_name}: {text} (run {result.run_id[:8]}; its logs are in robust-data ui)"
            return text
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
    process (the RPR shards in parallel); with 1, everything runs in this process.

    Raises
    ------
    CliError
        With the failing step's one-line error.
    """
    from dagster import DagsterInstance

    os.environ.update(dagster_environment(store))  # read by the assets and by worker processes
    if workers < 1:
        raise CliError(f"expected --workers >= 1; found {workers}; pass --workers 2")
    run_config = {
        "ops": {
            # The scoring job reads the stored raw_samples: no ingestion config there.
            **({} if job == "scoring_job" else {"raw_samples_assets": {"config": config}}),
            **{name: {"config": value} for name, value in (ops or {}).items()},
        },
        # The console logger stays quiet: a failure is reported below as one line.
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    }
    started = time.perf_counter()
    with DagsterInstance.get() as instance:
        if not instance.has_dynamic_partition(PARTITIONS, partition):
            instance.add_dynamic_partitions(PARTITIONS, [partition])
        if workers > 1:
            result = _execute_in_workers(instance, job, partition, run_config, workers)
        else:
            result = _execute_here(instance, store, job, partition, run_config)
    if not result.success:
        raise CliError(_failure_message(result))
    store.remove_step_outputs(result.run_id)  # shard outputs, merged into the stored table
    # The run succeeded, so any failed check is a non-blocking guard: shown as a warning.
    warnings = tuple(_failed_checks(result))
    return RunOutcome(result.run_id, time.perf_counter() - started, warnings)


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
        reconstructable_args=(job, str(store.home), store.tables_root),
    )
    return execute_job(
        target,
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": partition, **run_tags()},
        raise_on_error=False,
    )


def _execute_in_workers(
    instance: Any, job: str, partition: str, run_config: dict[str, Any], workers: int
) -> Any:
    """Run ``job`` with the multiprocess executor, ``workers`` steps at a time."""
    from dagster import execute_job, reconstructable

    from pipelines import definitions

    os.environ[definitions.MAX_CONCURRENT_ENV] = str(workers)  # read by each worker process too
    target = {
        "curation_job": definitions.curation_job_def,
        "scoring_job": definitions.scoring_job_def,
    }.get(job)
    if target is None:
        raise CliError(f"expected curation_job or scoring_job with --workers; found {job}")
    return execute_job(
        reconstructable(target),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": partition, **run_tags()},
        raise_on_error=False,
    )


def _ingest_config(args: argparse.Namespace, spec: str, root: str | None) -> dict[str, Any]:
    if args.resize:
        parse_size(args.resize)  # fail fast with the one-line message
    return {
        "source": spec,
        "root": root or "",
        "seed": args.seed,
        "test_fraction": args.test_fraction,
        "resize": args.resize,
        "channels": args.channels or 0,
    }


def _resolve_dataset(
    store: Store, args: argparse.Namespace, dataset: str
) -> tuple[str, str, str | None]:
    """(partition name, source spec, root) for a source spec or a registered dataset name."""
    registered = store.registrations()
    if dataset in registered and not args.root and not args.name:
        reg = registered[dataset]
        return reg.name, reg.source, reg.root
    resolved = resolve_source(dataset, root=args.root, name=args.name)
    if resolved.source.name in PATH_SOURCES:
        # stored resolved: a relative path must not re-resolve against a later directory
        return resolved.name, f"{resolved.source.name}:{resolved.root}", None
    return resolved.name, resolved.spec, str(resolved.root) if resolved.root else None


def _scoring_lines(store: Store, name: str, job: str) -> list[str]:
    """Summary lines of the reference model and the RPR scores, when the job made them."""
    if job == "ingest_job" or not store.has("rpr_scores", name):
        return []
    from robust_data.rpr.table import robust_fraction_by_split

    model = store.read("reference_model", name).to_pylist()[0]
    scores = store.read("rpr_scores", name)
    test = model["test_accuracy"]
    lines = [
        f"  reference_model: {model['arch']}, train accuracy {model['train_accuracy']:.2%}, "
        + (f"test accuracy {test:.2%}" if test is not None else "no test split")
        + f" (sha256 {model['sha256'][:12]})"
    ]
    params = read_params(scores.schema)
    fractions = robust_fraction_by_split(scores)
    lines.append(
        f"  rpr_scores: {params.get('scheme')}, max_steps {params.get('max_steps')}: robust fraction "
        + ", ".join(f"{split} {fraction:.4f}" for split, fraction in fractions.items())
    )
    if store.has("label_quality", name):
        quality = store.read("label_quality", name)
        issues = sum(quality.column("is_label_issue").to_pylist())
        extra = ""
        if quality.column("is_outlier").null_count == 0:
            outliers = sum(quality.column("is_outlier").to_pylist())
            dups = sum(quality.column("is_near_duplicate").to_pylist())
            extra = f", {outliers:,} outliers, {dups:,} near-duplicates"
        lines.append(
            f"  label_quality: {issues:,} label issues in {quality.num_rows:,} training samples "
            f"({issues / max(quality.num_rows, 1):.1%}){extra}"
        )
    if store.has("variants", name):
        made = store.read("variants", name)
        kinds = sorted(set(made.column("transform").to_pylist()))
        lines.append(
            f"  variants: {made.num_rows:,} images from {len(kinds)} transforms ({', '.join(kinds)})"
        )
    if store.has("curation_ledger", name):
        reasons = store.read("curation_ledger", name).column("reason").to_pylist()
        dropped = ", ".join(f"{r} {reasons.count(r):,}" for r in sorted({r for r in reasons if r}))
        lines.append(
            f"  curated_samples: kept {reasons.count(None):,} of {len(reasons):,} training samples"
            f" (dropped: {dropped or 'none'})"
        )
    export = store.home / "exports" / name
    if (export / "lineage.json").exists():
        lines.append(f"  curated_dataset: {export} (train.parquet, test.parquet, README.md)")
    return lines


def _report_lines(store: Store, name: str) -> list[str]:
    """The paper's table from the stored report, and where the full report is."""
    from robust_data.report import paper_table_markdown

    table = store.read("robustness_report", name)
    return [
        f"Robustness report for {name!r} (test split):",
        paper_table_markdown(table),
        f"Full report: {store.home / 'reports' / name / 'report.md'}",
    ]


def _summary(store: Store, name: str, outcome: RunOutcome, job: str) -> str:
    result = IngestResult(name, store.read("raw_samples", name), store.read("ingest_rejects", name))
    counts = result.class_counts()
    splits = ", ".join(f"{s} {n:,}" for s, n in result.split_counts().items())
    per_class = f"{min(counts.values()):,}-{max(counts.values()):,} per class"
    return "\n".join(
        [
            f"{job} for dataset {name!r}: run {outcome.run_id[:8]} succeeded in {outcome.seconds:.1f} s",
            *_verdict_lines(store, name, job),
            *(f"  warning: {warning}" for warning in outcome.warnings),
            f"  raw_samples: {result.samples.num_rows:,} rows, {len(counts)} classes ({per_class}); splits: {splits}",
            f"  rejects: {result.rejects.num_rows:,} unreadable images left out",
            *(f"  note: {note}" for note in _ingest_notes(result.samples)),
            *_scoring_lines(store, name, job),
            f"  Parquet: {table_location(store.tables_root, 'raw_samples', name)} "
            "(and beside it, one folder per table)",
            f"  Dagster instance: {store.dagster_home}",
            f"Open the UI: robust-data ui --home {store.home}   (then http://127.0.0.1:3000, Assets)",
            f'Query:       robust-data query --home {store.home} "{EXAMPLE_SQL}"',
            *_report_section(store, name, job),
        ]
    )


def _ingest_notes(samples: Any) -> list[str]:
    """What ingestion changed on the way in (16-bit pixels scaled, ...), from the table's params."""
    params = read_params(samples.schema)
    return [str(note) for note in params.get("notes", [])]


def _verdict_lines(store: Store, name: str, job: str) -> list[str]:
    """The report's verdicts on the headline metrics, first in the summary."""
    if job == "ingest_job" or not store.has("robustness_report", name):
        return []
    from robust_data.report import headline_verdicts
    from robust_data.schema import read_params

    table = store.read("robustness_report", name)
    params = read_params(table.schema)
    return [
        f"  verdict (preset {params.get('preset', '?')}, {params.get('seeds', '?')} seeds, "
        "95% intervals; all metrics in report.md):",
        *(f"    {line}" for line in headline_verdicts(table)),
    ]


def _report_section(store: Store, name: str, job: str) -> list[str]:
    """The report table, last, when the job made one."""
    if job == "ingest_job" or not store.has("robustness_report", name):
        return []
    return ["", *_report_lines(store, name)]


def _run_dataset(args: argparse.Namespace, dataset: str, job: str) -> int:
    shards = getattr(args, "shards", 1)
    if shards < 1:
        raise CliError(f"expected --shards >= 1; found {shards}; pass --shards 2")
    with writing_home(args.home, f"robust-data {args.command}") as store:
        name, spec, root = _resolve_dataset(store, args, dataset)
        config = _ingest_config(args, spec, root)
        # Checked before anything is written, so two sources never mix under one name; bound
        # once the source's samples are stored (a refused ingest binds nothing).
        registration = Registration(name=name, source=spec, root=root)
        removed = store.claim(registration, args.replace)
        if removed:
            print(
                f"--replace: removed {len(removed)} stored items of the old {name!r}",
                file=sys.stderr,
            )
        ops = _curation_ops(args) if job == "curation_job" else {}
        if shards > 1:
            ops["rpr_scores"] = {"shards": shards}
        try:
            outcome = run_job(store, job, name, config, ops, getattr(args, "workers", 1))
        finally:
            if store.has("raw_samples", name):
                store.register(registration)
        print(_summary(store, name, outcome, job))
    return 0


def _curation_ops(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run config of the main job's options (preset, seeds), checked first."""
    from robust_data.policies import PRESETS

    if args.seeds < 1:
        raise CliError(f"expected --seeds >= 1; found {args.seeds}; pass --seeds 3")
    if args.preset is not None and args.preset not in PRESETS:
        raise CliError(
            f"expected --preset in {sorted(PRESETS)}; found {args.preset!r}; pass --preset clean"
        )
    ops: dict[str, dict[str, Any]] = {"retrained_model": {"seeds": args.seeds}}
    if args.preset is not None:
        ops["curation_assets"] = {"preset": args.preset}
    return ops


def cmd_ingest(args: argparse.Namespace) -> int:
    return _run_dataset(args, args.dataset, "ingest_job")


def cmd_curate(args: argparse.Namespace) -> int:
    return _run_dataset(args, args.dataset, "curation_job")


# ---------------------------------------------------------------------------------------------
# score-model

CURVE_POINTS = (1, 5, 10, 25, 50, 100, 150, 200, 250)


def cmd_score_model(args: argparse.Namespace) -> int:
    import pyarrow.compute as pc

    from robust_data.models import load_model
    from robust_data.reference import load_reference
    from robust_data.rpr.engine import RprOptions
    from robust_data.rpr.plots import plot_curves
    from robust_data.rpr.scoring import score_samples

    store = Store.open(args.home)
    samples = store.read("raw_samples", _dataset_name(args.dataset))
    split = samples.filter(pc.equal(samples.column("split"), args.split))
    if split.num_rows == 0:
        found = sorted(set(samples.column("split").to_pylist()))
        raise CliError(
            f"expected samples in split {args.split!r}; found splits {found}; pass --split"
        )
    if args.limit is not None:
        split = split.slice(0, max(args.limit, 0))
    if args.model:
        model, weights = load_model(args.model)
    else:
        model, weights = load_reference(store.read("reference_model", args.dataset))
    options = RprOptions(
        scheme=args.scheme,
        max_steps=args.max_steps,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
    )
    scores = score_samples(
        samples, model, weights.sha256, options, splits=(args.split,), limit=args.limit
    )
    result = scores.result
    curve = scores.curves()[args.split]
    print(
        f"{args.dataset} {args.split}: {split.num_rows:,} images, model {weights.path} "
        f"(sha256 {weights.sha256[:12]}), scheme {result.scheme}, seed {result.seed}"
    )
    print(f"clean accuracy  {result.clean_correct.mean():.4f}")
    print(f"robust fraction {curve[-1]:.4f}  (survived all {result.max_steps} tries)")
    print("still robust after k tries:")
    for k in [k for k in CURVE_POINTS if k < result.max_steps] + [result.max_steps]:
        print(f"  k={k:>4}  {curve[k - 1]:.4f}  {'#' * round(40 * curve[k - 1])}")
    print(
        f"{result.tries:,} perturbed forward passes in {result.seconds:.1f} s on "
        f"{result.device} ({result.precision})"
    )
    if args.plot:
        from robust_data.store import write_bytes_atomic

        path = write_bytes_atomic(plot_curves({args.split: curve}), args.plot)
        print(f"curve: {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# report


def cmd_report(args: argparse.Namespace) -> int:
    store = Store.open(args.home)
    print("\n".join(_report_lines(store, _dataset_name(args.dataset))))
    return 0


# ---------------------------------------------------------------------------------------------
# export


def cmd_export(args: argparse.Namespace) -> int:
    from robust_data.export import UPSTREAM, export_dataset

    dataset = _dataset_name(args.dataset)
    with writing_home(args.home, "robust-data export") as store:
        from dagster import DagsterInstance

        from assets.curated_dataset import latest_runs

        with DagsterInstance.get() as instance:
            runs = latest_runs(instance, dataset, (*UPSTREAM, "variants"))
        result = export_dataset(
            store, dataset, args.out, args.format, args.with_variants, args.force, runs
        )
    rows = ", ".join(f"{split} {n:,}" for split, n in result.rows.items())
    print(f"exported {args.dataset} as {result.format} to {result.path}: {rows} rows")
    print(f"  dataset card: {result.path / 'README.md'}; lineage: {result.path / 'lineage.json'}")
    for path in result.removed:
        print(f"  removed {path}: left by an export that was stopped", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# gallery


def cmd_gallery(args: argparse.Namespace) -> int:
    from robust_data.corrupt.gallery import corruption_table, gallery_png, sample_images
    from robust_data.store import write_bytes_atomic

    titles = {"mnist": "MNIST digit (28x28)", "rgb32": "32x32 RGB photo"}
    for name, image in sample_images().items():
        png = gallery_png(image, f"Corruptions on a {titles[name]}, seed {args.seed}", args.seed)
        path = write_bytes_atomic(png, Path(args.out) / f"{name}.png")
        print(f"{path}")
    print(write_text_atomic(corruption_table(), Path(args.out) / "README.md"))
    return 0


# ---------------------------------------------------------------------------------------------
# query


def cmd_query(args: argparse.Namespace) -> int:
    max_rows = max_rows_for(args.format, args.max_rows)
    try:
        stream_query(Store.open(args.home), args.sql, sys.stdout, args.format, max_rows)
        sys.stdout.flush()
    except BrokenPipeError:  # `robust-data query ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# ---------------------------------------------------------------------------------------------
# ui

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


def _die_with(parent: int) -> None:
    """In a child before exec: get SIGTERM when ``parent`` ends, even by SIGKILL (Linux)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


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
        os.environ.update(dagster_environment(store))
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
        preexec_fn=lambda: _die_with(parent),
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


COMMANDS = {
    "datasets": cmd_datasets,
    "ingest": cmd_ingest,
    "curate": cmd_curate,
    "score-model": cmd_score_model,
    "gallery": cmd_gallery,
    "export": cmd_export,
    "report": cmd_report,
    "query": cmd_query,
    "ui": cmd_ui,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``robust-data`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    # torch.compile logs that a CUDA build found no CUDA runtime: expected on CPU machines.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        return COMMANDS[args.command](args)
    except (DatasetError, QueryError, CliError, FileNotFoundError, ValueError) as exc:
        print(f"robust-data {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
