"""The argument parser of ``robust-data``: one subcommand per command, nothing run here."""

from __future__ import annotations

import argparse
import functools
from typing import Any, NoReturn

from pipelines.cli.common import DEFAULT_DATASET
from pipelines.cli.review import add_parsers as add_review_parsers
from robust_data.defaults import MAX_STEPS
from robust_data.errors import did_you_mean
from robust_data.explore.formats import FORMATS
from robust_data.store.home import HOME_ENV


class Parser(argparse.ArgumentParser):
    """``argparse`` with "did you mean" for a mistyped command or choice.

    An unknown command is one line, ``robust-data: error: unknown command 'curat'; did you
    mean 'curate'?``, exit status 2 (Python 3.11's argparse has no ``suggest_on_error``).
    """

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is None or value in choices or not isinstance(value, str):
            super()._check_value(action, value)
            return
        names = [str(c) for c in choices]
        hint = did_you_mean(value, names)
        if isinstance(action, argparse._SubParsersAction):
            self._fail(f"unknown command {value!r}; " + (hint or f"expected one of {names}"))
        if hint:
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}; {hint}")
        super()._check_value(action, value)

    def _fail(self, message: str) -> NoReturn:
        """One error line on stderr (no usage), exit status 2 like argparse's errors."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        default=None,
        help=(
            "home folder for the store and the Dagster instance "
            f"(env {HOME_ENV}; default ./.robust-data)"
        ),
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


def _model_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--model`` (your own) and ``--arch`` (a built-in): at most one (checked by the command)."""
    parser.add_argument(
        "--model",
        metavar="PATH_OR_IMPORT",
        help=f"{what}: a TorchScript file (torch.jit.save) or a factory package.module:function "
        "called as function(num_classes, (C, H, W)) (README 'Your own model')",
    )
    parser.add_argument(
        "--arch",
        metavar="{simple_cnn,resnet}",
        help="a built-in architecture instead of --model (default simple_cnn)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="robust-data",
        description=(
            "Curate image-classification datasets for robustness "
            "(Dagster assets over a Parquet store)."
        ),
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
        help=(
            "curation preset: paper, clean, focus or mined "
            "(default mined; README 'Does curation help?')"
        ),
    )
    p.add_argument(
        "--class-focus",
        type=int,
        help="extra variant copies per sample for the most fragile class, fewer for the "
        "others, spread at random within each class (default: the preset's; 2 for mined, "
        "0 for the others)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="seeds per model in the report (default 3; 2 is the least that gives intervals)",
    )
    _model_options(p, "the reference model, the label-quality folds and the report's models")

    p = sub.add_parser(
        "score-model",
        help="estimate a model's RPR robustness on a dataset split and print its robustness curve",
    )
    _common(p)
    p.add_argument("dataset", help="a dataset already ingested in this home (see 'datasets')")
    _model_options(
        p,
        "the model to score (default: the dataset's reference_model); a robust-data weight "
        "file or your TorchScript file is used as is, a built-in or a factory is trained on the "
        "train split first (nothing stored)",
    )
    p.add_argument("--split", default="test", help="split to score (default test)")
    p.add_argument("--scheme", default="pixels", help="perturbation spec (default pixels)")
    p.add_argument(
        "--max-steps", type=int, default=MAX_STEPS, help=f"tries per image (default {MAX_STEPS})"
    )
    p.add_argument("--seed", type=int, default=0, help="perturbation seed (default 0)")
    p.add_argument("--limit", type=int, help="score only the split's first N samples")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--precision", default="auto", help="auto, fp32 or bf16 (default auto)")
    p.add_argument("--plot", help="also write the robustness curve as a PNG to this path")
    p.add_argument("--force", action="store_true", help="replace an existing --plot file")

    p = sub.add_parser(
        "report", help="print a dataset's robustness verdicts, report table and its path"
    )
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
    contents = p.add_mutually_exclusive_group()
    contents.add_argument(
        "--with-variants",
        dest="with_variants",
        action="store_const",
        const=True,
        default=None,
        help="add the kept samples' stored variants even if the curation's plan makes none "
        "(default: variants exactly when the plan makes them, as the curate job's export)",
    )
    contents.add_argument(
        "--originals-only",
        dest="with_variants",
        action="store_const",
        const=False,
        help="leave the variants out: the kept originals and the test split only",
    )
    p.add_argument(
        "--force", action="store_true", help="replace a non-empty folder that is not an export"
    )

    p = sub.add_parser(
        "gallery",
        help="draw every corruption at every severity on an MNIST digit and a 32x32 photo",
    )
    p.add_argument("--out", default="docs/gallery", help="output folder (default docs/gallery)")
    p.add_argument("--seed", type=int, default=0, help="corruption seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace the gallery's existing files")

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
        help=(
            "stop after N rows "
            "(default 10000 for --format table, every row for csv/json; 0: no cap)"
        ),
    )

    p = sub.add_parser("ui", help="start the Dagster UI and daemon on 127.0.0.1 for this home")
    _common(p)
    p.add_argument("--port", type=int, default=3000, help="port on 127.0.0.1 (default 3000)")
    add_review_parsers(sub, _common)
    return parser


@functools.cache
def option_names() -> frozenset[str]:
    """The options of every command by their Python name: ``max_rows`` for ``--max-rows``."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return frozenset(
        flag[2:].replace("-", "_")
        for parser in commands.choices.values()
        for action in parser._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    )
