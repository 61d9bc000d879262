"""CLI niceties: "did you mean" for commands, choices and datasets; the query table's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main
from robust_data.store.registry import Registration
from robust_data.store.store import Store

VALUES = (
    "SELECT * FROM (VALUES ('a', 0.95971234::DOUBLE, 3), ('bbbbbb', 12.5::DOUBLE, 1797)) "
    "t(name, acc, n)"
)


def exit_status(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    return int(stopped.value.code or 0)


def test_unknown_command_is_one_line_with_a_suggestion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert exit_status(["curat"]) == 2
    assert capsys.readouterr().err == (
        "robust-data: error: unknown command 'curat'; did you mean 'curate'?\n"
    )
    assert exit_status(["score_model"]) == 2
    assert capsys.readouterr().err.endswith("did you mean 'score-model'?\n")
    assert exit_status(["xyzzy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown command 'xyzzy'; expected one of [" in err
    assert "did you mean" not in err


def test_mistyped_choice_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status(["query", "SELECT 1", "--format", "jsn"]) == 2
    err = capsys.readouterr().err
    assert "argument --format: invalid choice: 'jsn'; did you mean 'json'?" in err
    assert exit_status(["query", "SELECT 1", "--format", "yaml"]) == 2
    assert "invalid choice: 'yaml' (choose from" in capsys.readouterr().err


def test_unknown_dataset_gets_a_suggestion(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "mnst-5k"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected a dataset source, one of [" in err
    assert err.endswith(
        "found 'mnst-5k'; run 'robust-data datasets' to list them; did you mean 'mnist-5k'?\n"
    )
    assert main(["curate", "--dataset", "nosuch"]) == 1
    assert "did you mean" not in capsys.readouterr().err
    # registered names are candidates too, and a path source's prefix is corrected
    Store.open(isolated_home).bind(Registration(name="pets-set", source="imagefolder:/data/pets"))
    assert main(["curate", "--dataset", "pet-set"]) == 1
    assert capsys.readouterr().err.endswith("did you mean 'pets-set'?\n")
    assert main(["ingest", "imagefoldr:/data/pets"]) == 1
    assert capsys.readouterr().err.endswith("did you mean 'imagefolder:/data/pets'?\n")
    # an error about something else is left as it was
    assert main(["ingest", "digits", "--name", "Bad Name"]) == 1
    err = capsys.readouterr().err
    assert err.endswith("pass --name bad-name\n") and "did you mean" not in err


def test_query_table_rounds_floats_and_right_aligns_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["query", VALUES]) == 0
    assert capsys.readouterr().out == (
        "name        acc     n\n"
        "------  -------  ----\n"
        "a        0.9597     3\n"
        "bbbbbb  12.5000  1797\n"
        "(2 rows)\n"
    )
    sql = "SELECT 1.234e-7::DOUBLE AS tiny, NULL::DOUBLE AS nothing, [0.123456, 1]::DOUBLE[] AS v"
    assert main(["query", sql]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "1.234e-07     NULL  [0.1235, 1.0000]"


def test_query_csv_and_json_keep_full_precision(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", VALUES, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == {"name": "a", "acc": 0.95971234, "n": 3}
    assert main(["query", VALUES, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "a,0.95971234,3"


def test_cluster_execution_names_the_broker_by_environment_variable() -> None:
    from pipelines.cli.common import CliError
    from pipelines.cli.launch import cluster_execution

    broker = {"CELERY_BROKER_URL": "redis://h:6379/0", "CELERY_RESULT_BACKEND": "redis://h/1"}
    assert cluster_execution("multiprocess", "curation_job", broker) is None
    assert cluster_execution("celery", "ingest_job", {}) is None  # ingestion runs here
    assert cluster_execution("celery", "curation_job", broker) == {
        "config": {
            "broker": {"env": "CELERY_BROKER_URL"},
            "backend": {"env": "CELERY_RESULT_BACKEND"},
        }
    }
    with pytest.raises(CliError, match="expected CELERY_RESULT_BACKEND set for ROBUST_DATA_EXEC"):
        cluster_execution("celery", "scoring_job", {"CELERY_BROKER_URL": "redis://h:6379/0"})
    with pytest.raises(CliError, match="found k8s; launch with dagster job launch"):
        cluster_execution("k8s", "curation_job", broker)
