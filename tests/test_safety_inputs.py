"""Data safety of what users hand robust-data (issue 28): dataset names, folders and files to
ingest, values a query prints, the error a failed run reports, and who may read what it writes.

Every input is built on the fly in ``tmp_path``; refusals are checked in a real ``robust-data``
process or through the CLI's ``main``, with nothing written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from robust_data import ingest
from robust_data.explore.query import stream_query
from robust_data.ingest.sources import NAME_PATTERN
from robust_data.perturb.schemes import parse_scheme
from robust_data.store.store import Store
from tests.fixtures import (
    make_cifar_root,
    make_idx_root,
    make_imagefolder,
    make_svhn_root,
    png_bytes,
    write_parquet,
)
from tests.test_safety_export_query import DATASET, make_store
from tests.test_safety_ingest import small_pngs

SCRIPT = Path(sys.executable).parent / "robust-data"


def cli(*argv: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    """``robust-data ARGV`` in its own process, with ``umask`` set in it when given."""
    return subprocess.run(
        [str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=None if umask is None else lambda: os.umask(umask),
    )


def one_line(code: int, err: str, command: str) -> str:
    """The refusal ``err`` of ``robust-data COMMAND``: exit 1, one line, expected/found/fix."""
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith(f"robust-data {command}: error: expected "), err
    return err.strip()


def stored(home: Path) -> list[Path]:
    """Every file under the home's store (tables, weights, reports)."""
    return sorted(p for p in (home / "store").rglob("*") if p.is_file())


# 1. Names match whole: no trailing newline -------------------------------------------------


def test_a_name_with_a_trailing_newline_is_refused_before_anything_is_written(
    isolated_home: Path,
) -> None:
    assert NAME_PATTERN.match("digits\n") is None and NAME_PATTERN.search("digits\n") is None
    result = cli("ingest", "digits", "--name", "digits\n", "--home", str(isolated_home))
    err = one_line(result.returncode, result.stderr, "ingest")
    assert "found 'digits\\n'; pass --name digits" in err
    assert stored(isolated_home) == [] and Store.open(isolated_home).registrations() == {}
    result = cli("report", "digits\n", "--home", str(isolated_home))
    assert "found 'digits\\n'" in one_line(result.returncode, result.stderr, "report")


def test_a_size_in_other_digits_is_one_line(isolated_home: Path) -> None:
    """``str.isdigit`` takes '²', which ``int`` refuses: a traceback before."""
    result = cli("ingest", "digits", "--resize", "²x2", "--home", str(isolated_home))
    err = one_line(result.returncode, result.stderr, "ingest")
    assert "found '²x2'; pass e.g. --resize 28x28" in err
    assert stored(isolated_home) == []


@pytest.mark.parametrize("spec", ["fog(²)", "fog(severity=³)", "fog(١)"])
def test_a_severity_in_other_digits_is_refused_in_one_line(spec: str) -> None:
    """The same '²' hole in the RPR scheme parser: a ValueError from ``int`` before."""
    with pytest.raises(ValueError, match=r"^expected fog\(severity=1\.\.5\); found"):
        parse_scheme(spec)


# 2. The query table shows control characters escaped ------------------------------------

RED, TRICKY = "\x1b[31mRED", "two\nlines\r\u202eevil\x9b"


def test_query_table_escapes_control_characters_csv_and_json_keep_them(
    isolated_home: Path,
) -> None:
    rows = [(f"{DATASET}:train:{i}", i % 2, [RED, TRICKY][i % 2]) for i in range(6)]
    store = make_store(Store.open(isolated_home), train=rows)
    sql = (
        'SELECT DISTINCT label_name AS "name\x1b[0m" FROM raw_samples '
        "WHERE split = 'train' ORDER BY 1 DESC"
    )
    result = cli("query", sql, "--home", str(isolated_home))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert not any(c in out for c in "\x1b\r\u202e\x9b"), repr(out)
    lines = out.splitlines()
    assert lines[0].rstrip() == "name\\x1b[0m" and len(lines) == 5, lines  # header, rule, 2, footer
    assert "\\x1b[31mRED" in lines and "two\\nlines\\r\\u202eevil\\x9b" in lines
    # csv and json stay data: the exact text, quoted or escaped by their own rules
    text = io.StringIO()
    stream_query(store, sql, text, "csv")
    assert [row[0] for row in csv.reader(io.StringIO(text.getvalue()))][1:] == [TRICKY, RED]
    text = io.StringIO()
    stream_query(store, sql, text, "json")
    assert [json.loads(line) for line in text.getvalue().splitlines()] == [
        {"name\x1b[0m": TRICKY},
        {"name\x1b[0m": RED},
    ]


# 3. Every ingest ends with a train and a test split, or is refused ------------------------


def _parquet_train_files(root: Path) -> tuple[str, str | None]:
    write_parquet(
        root / "train-00000-of-00001.parquet", {"image": small_pngs(10), "label": [0, 1] * 5}
    )
    return f"parquet:{root}", None


def _imagefolder_train_folder(root: Path) -> tuple[str, str | None]:
    make_imagefolder(root / "train", {"cat": 5, "dog": 5}, size=6)
    return f"imagefolder:{root}", None


def _idx_train_files(root: Path) -> tuple[str, str | None]:
    make_idx_root(root, n_train=30, n_test=0)
    return "mnist", str(root)


def _cifar_train_batches(root: Path) -> tuple[str, str | None]:
    (make_cifar_root(root) / "test_batch").unlink()
    return "cifar10", str(root)


def _svhn_train_file(root: Path) -> tuple[str, str | None]:
    (make_svhn_root(root, n=30) / "test_32x32.mat").unlink()
    return "svhn", str(root)


@pytest.mark.parametrize(
    "make",
    [
        _parquet_train_files,
        _imagefolder_train_folder,
        _idx_train_files,
        _cifar_train_batches,
        _svhn_train_file,
    ],
)
def test_a_source_with_train_data_only_is_split_and_says_so(
    tmp_path: Path, make: Callable[[Path], tuple[str, str | None]]
) -> None:
    spec, root = make(tmp_path / "data")
    result = ingest(spec, root=root)
    splits = result.split_counts()
    assert set(splits) == {"train", "test"} and min(splits.values()) > 0, splits
    (note,) = [n for n in result.notes if "no test split" in n]
    assert f"held out {splits['test']:,} of {sum(splits.values()):,} train images as test" in note
    assert note in result.samples.schema.metadata[b"robust_data.params"].decode()


def test_no_test_split_after_splitting_is_refused_at_ingest(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_parquet(tmp_path / "tiny.parquet", {"image": small_pngs(4), "label": [0, 1] * 2})
    assert main(["ingest", f"parquet:{path}"]) == 1
    err = one_line(1, capsys.readouterr().err, "ingest")
    assert "expected a test split of at least one image" in err and "--test-fraction" in err
    assert stored(isolated_home) == [] and Store.open(isolated_home).registrations() == {}


def test_the_summary_says_what_ingest_split_and_left_out(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_imagefolder(tmp_path / "pets" / "train", {"cat": 5, "dog": 5}, size=6).parent
    shutil.copy(root / "train" / "cat" / "000.png", root / "train" / "cat" / ".hidden.png")
    assert main(["ingest", f"imagefolder:{root}"]) == 0
    out = capsys.readouterr().out
    assert "splits: test 2, train 8" in out
    assert "note: the source has a train split and no test split: held out 2 of 10" in out
    assert "note: left out 1 hidden file or folder (names starting with '.', e.g. " in out
    assert "train/cat/.hidden.png)" in out


# 4. A failed run reports the product's error, not the library error under it --------------


def test_a_failed_ingest_run_shows_the_products_one_line_error(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notes.parquet"
    bad.write_text("not a parquet file\n")
    assert main(["ingest", f"parquet:{bad}"]) == 1
    err = one_line(1, capsys.readouterr().err, "ingest")
    assert err.startswith(
        f"robust-data ingest: error: expected a readable Parquet file; found {bad}"
    )
    assert err.endswith("; rewrite or remove the file") and "ArrowInvalid" not in err
    assert stored(isolated_home) == [] and Store.open(isolated_home).registrations() == {}


# 5. Written files follow the umask, as files the user makes do ----------------------------

WRITER = """
import sys
from pathlib import Path

from robust_data.export.export import export_dataset
from robust_data.curation.reviews_csv import export_reviews_csv
from robust_data.io.atomic import write_text_atomic
from robust_data.store.store import Store

store, out = Store.open(sys.argv[1]), Path(sys.argv[2])
store.write(store.read("raw_samples", "toy"), "raw_samples", "toy")
write_text_atomic("# report\\n", out / "report.md")
export_reviews_csv(store, "toy", out / "reviews.csv")
export_dataset(store, "toy", out / "export")
"""


def _modes(paths: list[Path]) -> set[int]:
    return {p.stat().st_mode & 0o777 for p in paths}


def test_stored_tables_reports_reviews_and_exports_follow_the_umask(
    isolated_home: Path, tmp_path: Path
) -> None:
    store = make_store(Store.open(isolated_home))
    for umask, file_mode, folder_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700)):
        out = tmp_path / f"out-{umask:o}"
        out.mkdir()
        result = subprocess.run(
            [sys.executable, "-c", WRITER, str(store.home), str(out)],
            capture_output=True,
            text=True,
            timeout=180,
            preexec_fn=lambda umask=umask: os.umask(umask),  # type: ignore[misc]
        )
        assert result.returncode == 0, result.stderr[-2000:]
        export = out / "export"
        files = [p for p in export.rglob("*") if p.is_file()]
        folders = [export, *(p for p in export.rglob("*") if p.is_dir())]
        assert len(files) >= 4 and len(folders) >= 3
        table = store.table_path("raw_samples", DATASET)
        assert _modes([table, out / "report.md", out / "reviews.csv", *files]) == {file_mode}
        assert _modes(folders) == {folder_mode}


# 6. Hidden files are skipped like hidden folders, and counted ----------------------------


def test_hidden_files_and_folders_are_left_out_and_counted(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "shapes", {"circle": 3, "square": 3}, size=6)
    image = png_bytes(np.zeros((6, 6, 3), np.uint8))
    (root / "circle" / ".hidden.png").write_bytes(image)
    (root / ".top.png").write_bytes(image)
    make_imagefolder(root / "square" / ".thumbs", {"small": 2}, size=6)
    make_imagefolder(root / ".git", {"objects": 2}, size=6)
    result = ingest(f"imagefolder:{root}")
    keys = [
        sample_id.split(":", 2)[2] for sample_id in result.samples.column("sample_id").to_pylist()
    ]
    assert result.samples.num_rows == 6 and not any("/." in f"/{key}" for key in keys), keys
    assert result.rejects.num_rows == 0 and result.class_counts() == {"circle": 3, "square": 3}
    (note,) = [n for n in result.notes if "hidden" in n]
    assert note.startswith("left out 4 hidden files or folders (names starting with '.', e.g. ")

    folder = tmp_path / "tables"
    write_parquet(folder / "part-0.parquet", {"image": small_pngs(6), "label": [0, 1] * 3})
    write_parquet(
        folder / ".cache" / "part-9.parquet", {"image": small_pngs(4), "label": [0, 1] * 2}
    )
    result = ingest(f"parquet:{folder}")
    assert result.samples.num_rows == 6
    assert "left out 1 hidden file or folder (names starting with '.', e.g. .cache)" in result.notes
