"""``robust-data browse`` and ``robust-data review export|import``: look at samples, judge them.

Neither takes the home's writer lock: they write only the reviews table, under its own lock
(robust_data.curation.reviews), so a review can be recorded while a curation run holds the home.
"""

from __future__ import annotations

import argparse

from pipelines.cli.common import stored_dataset
from robust_data.store.store import Store

DEFAULT_PORT = 8765


def add_parsers(sub: argparse._SubParsersAction, common: object) -> None:
    """The ``browse`` and ``review`` subcommands; ``common`` adds ``--home``."""
    p = sub.add_parser("browse", help="browse, filter and review a dataset's samples in a web page")
    common(p)  # type: ignore[operator]
    p.add_argument("dataset", help="a dataset already ingested in this home")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})"
    )

    p = sub.add_parser("review", help="export or import review decisions as CSV")
    common(p)  # type: ignore[operator]
    p.add_argument("action", choices=("export", "import"))
    p.add_argument("dataset", help="a dataset already ingested in this home")
    p.add_argument("csv", help="the CSV file to write (export) or read (import)")
    p.add_argument("--force", action="store_true", help="export: replace an existing file")


def _store(args: argparse.Namespace) -> tuple[Store, str]:
    """The home's store and the checked dataset name; one-line error when it has no samples
    (with "did you mean" for a name close to a stored dataset's)."""
    store = Store.open(args.home)
    return store, stored_dataset(store, args.dataset)


def cmd_browse(args: argparse.Namespace) -> int:
    from pipelines.browser import listen, serve
    from robust_data.explore.sample_index import SampleIndex

    store, dataset = _store(args)
    sock = listen(args.port)  # a port in use fails now, not after the indexing
    port = sock.getsockname()[1]
    print(f"indexing {dataset} in {store.home} ...", flush=True)
    index = SampleIndex(store, dataset)
    print(
        f"browse {dataset} ({len(index.sample_ids):,} samples): http://127.0.0.1:{port}/ "
        "(Ctrl-C to stop)",
        flush=True,
    )
    serve(index, sock)
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from robust_data.curation.reviews_csv import export_reviews_csv, import_reviews_csv

    store, dataset = _store(args)
    if args.action == "export":
        rows = export_reviews_csv(store, dataset, args.csv, args.force)
        print(f"exported {rows:,} review decisions of {dataset} to {args.csv}")
        return 0
    reviews, table = import_reviews_csv(store, dataset, args.csv)
    print(
        f"imported {len(reviews):,} review decisions into {dataset} ({table.num_rows:,} in all); "
        "the next curation honours them"
    )
    return 0
