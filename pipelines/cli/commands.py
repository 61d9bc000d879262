"""The commands: each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.cli.common import CliError, dataset_name, flagged, stored_dataset
from pipelines.cli.launch import (
    check_execution,
    check_source,
    curation_ops,
    ingest_config,
    model_ops,
    resolve_dataset,
    run_job,
)
from pipelines.cli.summary import report_lines, summary
from pipelines.home import writing_home
from robust_data.defaults import MAX_STEPS
from robust_data.explore.query import TABLE_MAX_ROWS, stream_query
from robust_data.ingest.sources import PATH_SOURCES, SOURCES
from robust_data.store.registry import Registration
from robust_data.store.store import Store


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
        registered_root = registered[name].root if name in registered else None
        if check_root is None and registered_root:
            check_root = Path(registered_root)
        found, why = source.availability(check_root)
        why = flagged(why)
        rows.append((name, "yes" if found else "no", f"{source.description}; {why}"))
    width = max(len(r[0]) for r in rows)
    print(f"{'source'.ljust(width)}  available  notes")
    for name, available, notes in rows:
        print(f"{name.ljust(width)}  {available.ljust(9)}  {notes}")
    if registered:
        print(f"\nregistered in {store.home}:")
        for reg in registered.values():
            print(f"  {reg.name}: {reg.source}" + (f" (root {reg.root})" if reg.root else ""))
    return 0


@dataclass(frozen=True)
class RunPlan:
    """An ingest or curate run with every input checked: source, options, executor."""

    registration: Registration
    config: dict[str, Any]
    ops: dict[str, dict[str, Any]]
    workers: int


def run_plan(store: Store, args: argparse.Namespace, dataset: str, job: str) -> RunPlan:
    """Check every input of an ingest or curate run, writing nothing (the home may not exist).

    Raises
    ------
    RobustDataError, CliError
        The one-line refusal of the first bad input.
    """
    shards = getattr(args, "shards", 1)
    if shards < 1:
        raise CliError(f"expected --shards >= 1; found {shards}; pass --shards 2")
    name, spec, root = resolve_dataset(store, args, dataset)  # with its "did you mean"
    check_source(spec, root)
    config = ingest_config(args, spec, root)
    ops = {**curation_ops(args), **model_ops(store, args, name)} if job == "curation_job" else {}
    if shards > 1:
        ops["rpr_scores"] = {"shards": shards}
    workers = getattr(args, "workers", 1)
    check_execution(job, workers)
    return RunPlan(Registration(name=name, source=spec, root=root), config, ops, workers)


def run_dataset(args: argparse.Namespace, dataset: str, job: str) -> int:
    def check(store: Store) -> RunPlan:
        return run_plan(store, args, dataset, job)

    with writing_home(args.home, f"robust-data {args.command}", check=check) as store:
        plan = check(store)  # again under the lock: another writer may have bound the name
        registration, name = plan.registration, plan.registration.name
        # Checked before anything is written, so two sources never mix under one name; bound
        # once the source's samples are stored (a refused ingest binds nothing).
        removed = store.claim(registration, args.replace)
        if removed:
            print(
                f"--replace: removed {len(removed)} stored items of the old {name!r}",
                file=sys.stderr,
            )
        try:
            outcome = run_job(store, job, name, plan.config, plan.ops, plan.workers)
        finally:
            if store.has("raw_samples", name):
                store.register(registration)
        print(summary(store, name, outcome, job))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    return run_dataset(args, args.dataset, "ingest_job")


def cmd_curate(args: argparse.Namespace) -> int:
    return run_dataset(args, args.dataset, "curation_job")


# ---------------------------------------------------------------------------------------------
# score-model

CURVE_POINTS = (1, 5, 10, 25, 50, 100, 150, 200, MAX_STEPS)


def cmd_score_model(args: argparse.Namespace) -> int:
    from robust_data.scoring.spec import ModelSpec

    spec = ModelSpec.from_flags(args.model, args.arch)  # before any reading: one line
    store = Store.open(args.home)
    needs = ("raw_samples",) if spec is not None else ("raw_samples", "reference_model")
    dataset = stored_dataset(store, args.dataset, needs, "curate" if spec is None else "ingest")
    plot = None
    if args.plot:  # checked before the scoring, not after it
        plot = _output_file(store, args.plot, "--plot", f"{dataset}-curve.png", args.force)

    import pyarrow.compute as pc

    from robust_data.scoring.reference import load_reference, scoring_model
    from robust_data.scoring.rpr.engine import RprOptions
    from robust_data.scoring.rpr.plots import plot_curves
    from robust_data.scoring.rpr.score import score_samples

    samples = store.read("raw_samples", dataset)
    split = samples.filter(pc.equal(samples.column("split"), args.split))
    if split.num_rows == 0:
        found = sorted(set(samples.column("split").to_pylist()))
        raise CliError(
            f"expected samples in split {args.split!r}; found splits {found}; pass --split"
        )
    if args.limit is not None:
        split = split.slice(0, max(args.limit, 0))
    options = RprOptions(
        scheme=args.scheme,
        max_steps=args.max_steps,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
    )
    if spec is not None:
        model, weights = scoring_model(spec, samples, device=args.device)
    else:
        model, weights = load_reference(store.read("reference_model", dataset))
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
    if plot is not None:
        from robust_data.store.targets import write_output

        print(f"curve: {write_output(plot_curves({args.split: curve}), plot)}")
    return 0


def _output_file(store: Store, path: str, option: str, example: str, force: bool) -> Path:
    """A file a command writes for the user, checked before any work (robust_data.store.targets).

    ``option`` names it in a refusal (``--plot``); ``example`` is a file name that would do.
    """
    from robust_data.store.targets import Output, check_output, example_file

    output = Output(f"a {option} file", option, example_file(store, example))
    return check_output(store, path, output, force)


# ---------------------------------------------------------------------------------------------
# report


def cmd_report(args: argparse.Namespace) -> int:
    store = Store.open(args.home)
    dataset = stored_dataset(store, args.dataset, ("robustness_report",), "curate")
    print("\n".join(report_lines(store, dataset)))
    return 0


# ---------------------------------------------------------------------------------------------
# export


def check_export(store: Store, args: argparse.Namespace, dataset: str) -> None:
    """Refuse an export before anything is created: no curated dataset, no variants it is to
    hold, or a bad ``--out``.

    Raises
    ------
    DatasetError, ExportError
        One line: the tables to make first, or the ``--out`` rule it breaks.
    """
    from robust_data.export.export import variant_choice
    from robust_data.export.layout import FORMATS, ExportError
    from robust_data.export.swap import check_target
    from robust_data.export.tables import UPSTREAM

    if args.format not in FORMATS:
        raise ExportError(f"a format in {FORMATS}", repr(args.format), "pass --format parquet")
    check_target(store, Path(args.out).expanduser().resolve(), dataset, args.force)
    stored_dataset(store, dataset, UPSTREAM, "curate")
    variant_choice(store, dataset, args.with_variants)


def cmd_export(args: argparse.Namespace) -> int:
    from robust_data.export.card import LINEAGE_TABLES
    from robust_data.export.export import export_dataset

    dataset = dataset_name(args.dataset)
    check = lambda store: check_export(store, args, dataset)  # noqa: E731
    with writing_home(args.home, "robust-data export", check=check) as store:
        from dagster import DagsterInstance

        from assets.curation.curated_dataset import latest_runs

        with DagsterInstance.get() as instance:
            runs = latest_runs(instance, dataset, LINEAGE_TABLES)
        result = export_dataset(
            store, dataset, args.out, args.format, args.with_variants, args.force, runs
        )
    rows = ", ".join(f"{split} {n:,}" for split, n in result.rows.items())
    print(f"exported {args.dataset} as {result.format} to {result.path}: {rows} rows")
    print(
        f"  dataset card: {result.path / 'README.md'}; lineage: {result.path / 'lineage.json'}; "
        f"ledger: {result.path / 'ledger.csv'}"
    )
    for line in result.cleanup_lines():
        print(f"  {line}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# gallery


def cmd_gallery(args: argparse.Namespace) -> int:
    store = Store.open()  # the default home's folders are protected too
    out = Path(args.out)
    files = {  # every file checked before the first is drawn or written
        name: _output_file(store, str(out / name), "--out", f"gallery/{name}", args.force)
        for name in ("mnist.png", "rgb32.png", "README.md")
    }
    from robust_data.perturb.corrupt.gallery import corruption_table, gallery_png, sample_images
    from robust_data.store.targets import write_output

    titles = {"mnist": "MNIST digit (28x28)", "rgb32": "32x32 RGB photo"}
    for name, image in sample_images().items():
        png = gallery_png(image, f"Corruptions on a {titles[name]}, seed {args.seed}", args.seed)
        print(write_output(png, files[f"{name}.png"]))
    print(write_output(corruption_table().encode(), files["README.md"]))
    return 0


# ---------------------------------------------------------------------------------------------
# query


def max_rows_for(fmt: str, flag: int | None) -> int | None:
    """The row cap of ``--max-rows`` (None when not given): 0 means none.

    Without the flag the table format stops at ``TABLE_MAX_ROWS`` rows and CSV and JSON
    lines stream every row.

    Raises
    ------
    CliError
        For a negative count.
    """
    if flag is None:
        return TABLE_MAX_ROWS if fmt == "table" else None
    if flag < 0:
        raise CliError(f"expected --max-rows 0 (no cap) or more; found {flag}; pass --max-rows 0")
    return flag or None


def truncation_note(max_rows: int) -> str:
    """The line that says the output stopped at the row cap, and which flag raises it."""
    return (
        f"output truncated at {max_rows:,} rows; "
        "pass --max-rows N to raise the cap, or --max-rows 0 for no cap"
    )


def cmd_query(args: argparse.Namespace) -> int:
    max_rows = max_rows_for(args.format, args.max_rows)
    try:
        store = Store.open(args.home)
        stream_query(store, args.sql, sys.stdout, args.format, max_rows, truncated=truncation_note)
        sys.stdout.flush()
    except BrokenPipeError:  # `robust-data query ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
