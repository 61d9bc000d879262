"""The ``robust-data`` command: datasets, ingest, curate, score-model, gallery, export, report,
query, ui, browse, review.

It lives beside the Dagster wiring because it drives Dagster runs; the core library stays
framework-free. One module per concern: ``parser`` (arguments), ``launch`` (run config and
Dagster execution, with the home's environment set for the run only), ``summary`` (what a
run prints), ``ui`` (``dagster dev`` tied to this command) and ``commands`` (one function per
command). Dagster is imported only inside the commands that run it, so ``robust-data query``
and ``robust-data datasets`` start fast.
"""

from __future__ import annotations

import logging
import sys

from pipelines.cli.commands import (
    cmd_curate,
    cmd_datasets,
    cmd_export,
    cmd_gallery,
    cmd_ingest,
    cmd_query,
    cmd_report,
    cmd_score_model,
)
from pipelines.cli.common import CliError, error_line
from pipelines.cli.launch import run_job
from pipelines.cli.parser import build_parser
from pipelines.cli.review import cmd_browse, cmd_review
from pipelines.cli.ui import cmd_ui
from robust_data.errors import RobustDataError

__all__ = ["COMMANDS", "CliError", "build_parser", "main", "run_job"]


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
    "browse": cmd_browse,
    "review": cmd_review,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``robust-data`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    # torch.compile logs that a CUDA build found no CUDA runtime: expected on CPU machines.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        return COMMANDS[args.command](args)
    # Bad input, as one line. Anything else (a bug, a library's own error) keeps its traceback.
    except (RobustDataError, CliError, FileNotFoundError) as exc:
        print(f"robust-data {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM during a run) outside a run's own handling
        print(f"robust-data {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
