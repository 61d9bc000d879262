"""The core library never imports dagster; the CLI parser imports no framework."""

from __future__ import annotations

import subprocess
import sys

CORE_MODULES = [
    "robust_data",
    "robust_data.ingest.build",
    "robust_data.explore.query",
    "robust_data.scoring.rpr",
    "robust_data.ingest.preview",
    "robust_data.ingest.sources",
    "robust_data.store.store",
    "robust_data.io.parquet",
    "robust_data.io.publish",
]


def fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter; its stdout (the test fails on a non-zero exit)."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_core_import_does_not_import_dagster() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}: importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.'))\n"
        "print(len(leaked)); print(leaked[:5])\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    assert fresh_python(code).splitlines()[0] == "0"


def test_the_cli_parser_imports_neither_dagster_nor_torch() -> None:
    """``robust-data query`` and ``datasets`` start fast: building the parser loads no framework."""
    code = (
        "import sys\n"
        "from pipelines.cli.parser import build_parser\n"
        "build_parser()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'torch'}))\n"
    )
    assert fresh_python(code).strip() == "[]"
