"""The robust-data command end to end: ingest/curate through Dagster, query, datasets, errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance

from pipelines.cli import main
from robust_data.store.store import Store
from tests.conftest import CuratedHome
from tests.fixtures import make_idx_root, make_imagefolder, png_bytes


def run_cli(*argv: str) -> int:
    return main(list(argv))


def test_ingest_mnist_root_counts_match_the_labels(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = make_idx_root(tmp_path / "data", n_train=40, n_test=25)
    assert (
        run_cli("ingest", "mnist", "--root", str(tmp_path / "data"), "--home", str(isolated_home))
        == 0
    )
    out = capsys.readouterr().out
    assert "65 rows, 10 classes" in out and "train 40" in out and "test 25" in out
    assert str(Store.open(isolated_home).table_path("raw_samples", "mnist")) in out
    assert (
        run_cli(
            "query",
            "SELECT label, count(*) AS n FROM raw_samples GROUP BY label ORDER BY label",
            "--format",
            "json",
        )
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = Counter(np.concatenate([labels["train"], labels["test"]]).tolist())
    assert {r["label"]: r["n"] for r in rows} == dict(expected)
    # the run is recorded in the home's Dagster instance, and the dataset is registered
    with DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(AssetKey("raw_samples"))
        assert event is not None and event.dagster_event.partition == "mnist"
    assert Store.open(isolated_home).lookup("mnist").root == str((tmp_path / "data").resolve())


@pytest.mark.slow
def test_curate_digits_then_query_formats(
    curated_digits: CuratedHome,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, out = curated_digits.home, curated_digits.out
    monkeypatch.setenv("ROBUST_DATA_HOME", str(home))  # the commands below read this home
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    capsys.readouterr()
    assert (
        "curation_job for dataset 'digits'" in out
        and "1,797 rows" in out
        and "robust-data ui" in out
    )
    # the verdicts come right after the first line: 4 headline metrics x 3 baselines
    lines = out.splitlines()
    assert lines[1] == "  verdict (preset mined, 2 seeds, 95% intervals; all metrics in report.md):"
    verdicts = [line for line in lines if line.startswith("    curated ")]
    assert len(verdicts) == 12 and all("(2 seeds" in v for v in verdicts)
    assert any(" than the reference" in v or "and the reference are" in v for v in verdicts)
    assert not any("no better than" in v for v in verdicts)  # "not distinguishable" instead
    # the guards' warnings follow the first line when they fire (digits' default keeps few)
    ledger = Store.open(home).read("curation_ledger", "digits")
    share = sum(ledger.column("kept").to_pylist()) / ledger.num_rows
    warned = "\n  warning: curation_ledger.kept_share: curation kept " in out
    assert warned == (share < 0.5), (share, out[:600])
    assert (
        run_cli(
            "query",
            "SELECT split, count(*) AS n FROM raw_samples GROUP BY split ORDER BY split",
            "--format",
            "csv",
        )
        == 0
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows == [{"split": "test", "n": "359"}, {"split": "train", "n": "1438"}]
    # the main job ends with the report table; `report` prints it again
    assert "Robustness report for 'digits' (test split):" in out
    assert (
        "| reference | 1,438 |" in out and "| curated |" in out and "| all_with_variants |" in out
    )
    assert run_cli("report", "digits") == 0
    reported = capsys.readouterr().out
    assert "| random_subset |" in reported
    # with the run's verdicts, as its summary printed them (heading and 12 lines)
    assert reported.splitlines()[1:14] == lines[1:14]
    # the curation job trained the reference model and scored every sample
    assert "reference_model: simple_cnn" in out and "rpr_scores: pixels, max_steps 250" in out
    assert (
        run_cli(
            "query",
            "SELECT r.split, avg(CAST(r.robust AS INT)) AS robust, count(*) AS n FROM rpr_scores r "
            "JOIN raw_samples s USING (sample_id) GROUP BY 1 ORDER BY 1",
            "--format",
            "json",
        )
        == 0
    )
    fractions = {r["split"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert fractions["test"]["n"] == 359 and fractions["train"]["n"] == 1438
    assert f"test {fractions['test']['robust']:.4f}" in out
    # label_quality joins rpr_scores on sample_id (training samples only)
    assert "label_quality: " in out and "label issues in 1,438 training samples" in out
    assert (
        run_cli(
            "query",
            "SELECT count(*) AS n, sum(CAST(q.is_label_issue AS INT)) AS issues, "
            "sum(CAST(q.is_label_issue AND NOT r.robust AS INT)) AS fragile_issues "
            "FROM label_quality q JOIN rpr_scores r USING (sample_id)",
            "--format",
            "json",
        )
        == 0
    )
    joined = json.loads(capsys.readouterr().out)
    assert joined["n"] == 1438 and 0 < joined["issues"] < 1438
    assert 0 <= joined["fragile_issues"] <= joined["issues"]
    # score-model repeats the test split's scoring exactly (same model, seed and scheme)
    plot = tmp_path / "curve.png"
    assert run_cli("score-model", "digits", "--plot", str(plot)) == 0
    scored = capsys.readouterr().out
    assert f"robust fraction {fractions['test']['robust']:.4f}" in scored
    assert "k=  10" in scored and plot.read_bytes().startswith(b"\x89PNG")
    # a limited run still knows all ten classes (the first test image is not a 9), and any
    # corruption is a scheme
    assert run_cli("score-model", "digits", "--limit", "1", "--scheme", "rotate(severity=2)") == 0
    assert "digits test: 1 images" in capsys.readouterr().out
    assert run_cli("score-model", "digits", "--split", "valid") == 1
    assert "expected samples in split 'valid'; found splits ['test', 'train']" in (
        capsys.readouterr().err
    )
    assert (
        run_cli("query", "SELECT sample_id, image FROM raw_samples ORDER BY sample_id LIMIT 1") == 0
    )
    text = capsys.readouterr().out
    assert "digits:test:" in text and "bytes>" in text and "(1 row)" in text


@pytest.mark.slow
def test_ingest_imagefolder_reports_rejects(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_imagefolder(tmp_path / "Pets Set", {"cat": 4, "dog": 4})
    (root / "cat" / "bad.png").write_bytes(png_bytes(np.zeros((12, 12, 3), np.uint8))[:20])
    assert run_cli("ingest", f"imagefolder:{root}") == 0
    out = capsys.readouterr().out
    assert "dataset 'pets-set'" in out and "rejects: 1 unreadable" in out
    assert (
        run_cli("query", "SELECT source_key, reason FROM ingest_rejects", "--format", "json") == 0
    )
    reject = json.loads(capsys.readouterr().out)
    assert reject["source_key"] == "cat/bad.png"
    # re-running by registered name needs no path
    assert run_cli("curate", "--dataset", "pets-set", "--seeds", "2") == 0


def test_errors_are_one_line_with_exit_1(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("curate", "--dataset", "digits", "--preset", "best") == 1
    err = capsys.readouterr().err
    assert "expected --preset in ['clean', 'focus', 'mined', 'paper']; found 'best'" in err
    assert run_cli("curate", "--dataset", "digits", "--seeds", "0") == 1
    assert "expected --seeds >= 1; found 0" in capsys.readouterr().err
    assert run_cli("curate", "--dataset", "digits", "--class-focus", "-1") == 1
    assert "expected --class-focus >= 0; found -1" in capsys.readouterr().err
    # a plan that would make millions of images, or outrun the mining candidates: refused
    # before the run starts, so nothing reaches the store
    assert run_cli("curate", "--dataset", "digits", "--class-focus", "17") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected class_focus <= 16 (" in err and "; found 17;" in err
    assert run_cli("curate", "--dataset", "digits", "--class-focus", "6") == 1
    assert "expected candidates >= copies + focus_copies + class_focus" in capsys.readouterr().err
    assert not (isolated_home / "store" / "raw_samples").exists()
    assert run_cli("ingest", "nosuch") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected a dataset source" in err
    assert run_cli("ingest", "mnist", "--root", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train-images-idx3-ubyte" in err
    assert run_cli("query", "DROP VIEW raw_samples") == 1
    assert "read-only" in capsys.readouterr().err
    root = make_imagefolder(tmp_path / "solo", {"only": 3})
    assert run_cli("ingest", f"imagefolder:{root}") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least 2 classes" in err
    assert not Store.open(isolated_home).table_path("raw_samples", "solo").exists()


def test_datasets_lists_availability(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_idx_root(tmp_path, n_train=10, n_test=0)
    assert run_cli("datasets", "--root", str(tmp_path)) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert lines["digits"].split()[1] == "yes"
    assert lines["mnist"].split()[1] == "yes"
    assert lines["cifar10"].split()[1] == "no"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "robust-data"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "ingest" in result.stdout and "query" in result.stdout
