"""The layers: robust_data (core, no Dagster) <- assets (definitions, resources) <- pipelines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
#: Top-level packages each layer must never import.
FORBIDDEN = {
    "robust_data": {"dagster", "dagster_k8s", "assets", "pipelines"},
    "assets": {"pipelines"},
}


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (anywhere in the file)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_a_layer_above_it(layer: str) -> None:
    files = sorted((PROJECT / layer).rglob("*.py"))
    assert files, f"no Python files under {layer}/"
    bad = {str(f.relative_to(PROJECT)): sorted(imported_roots(f) & FORBIDDEN[layer]) for f in files}
    assert {f: names for f, names in bad.items() if names} == {}


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from pipelines.cli import main\n    import dagster.core\n")
    assert imported_roots(module) == {"pipelines", "dagster"}
