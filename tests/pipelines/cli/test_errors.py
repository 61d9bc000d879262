"""The command's one-line errors: the product's error family, with the core's options as flags."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import robust_data
from pipelines.cli import COMMANDS, main
from pipelines.cli.common import error_line, flagged
from pipelines.cli.launch import PRODUCT_ERRORS, _failure_message
from robust_data.errors import DatasetError, RobustDataError


def test_core_options_print_as_the_commands_flags() -> None:
    text = "pass `resize=28x28`, `force=True`, `test_fraction=0.2` or another `root`"
    assert flagged(text, ("resize", "force", "test_fraction", "root")) == (
        "pass --resize 28x28, --force, --test-fraction 0.2 or another --root"
    )
    assert flagged(text, ("root",)) == (
        "pass `resize=28x28`, `force=True`, `test_fraction=0.2` or another --root"
    )
    assert flagged("set `compile=max` or `root`") == "set `compile=max` or --root"  # no --compile


def test_an_error_line_names_only_the_options_of_its_error() -> None:
    error = DatasetError("a folder", "`root` given twice", "pass `root=DIR`", options=("root",))
    assert error_line(error) == "expected a folder; found --root given twice; pass --root DIR"
    assert error_line(RobustDataError("x", "`root`", "y")) == "expected x; found `root`; y"
    assert error_line(ValueError("as it is")) == "as it is"


def _subclasses(cls: type) -> set[type]:
    return {cls} | {s for sub in cls.__subclasses__() for s in _subclasses(sub)}


def test_every_product_error_is_named_for_runs() -> None:
    for module in pkgutil.walk_packages(robust_data.__path__, "robust_data."):
        importlib.import_module(module.name)
    names = {cls.__name__ for cls in _subclasses(RobustDataError)}
    assert names <= set(PRODUCT_ERRORS), names - set(PRODUCT_ERRORS)


def test_the_family_is_one_line_and_a_bug_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(args: object) -> int:
        raise DatasetError("channels 1 or 3", "2", "pass `channels=1`", options=("channels",))

    monkeypatch.setitem(COMMANDS, "datasets", refuse)
    assert main(["datasets"]) == 1
    assert capsys.readouterr().err == (
        "robust-data datasets: error: expected channels 1 or 3; found 2; pass --channels 1\n"
    )

    def bug(args: object) -> int:
        raise ValueError("an internal invariant")

    monkeypatch.setitem(COMMANDS, "datasets", bug)
    with pytest.raises(ValueError, match="an internal invariant"):
        main(["datasets"])


def test_a_steps_product_error_shows_the_commands_flags() -> None:
    from dagster import asset, materialize

    @asset
    def images() -> None:
        raise DatasetError("one image size", "2 sizes", "pass `resize=28x28`", options=("resize",))

    result = materialize([images], raise_on_error=False)
    assert _failure_message(result) == "expected one image size; found 2 sizes; pass --resize 28x28"
