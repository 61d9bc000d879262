"""Exports never touch the home's own folders, keep every row and clean up after killed runs;
queries cannot write anything and stream capped output. Small hand-made stores, no Dagster run."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import robust_data.explore.query as query_module
import robust_data.export.export as export_module
import robust_data.export.writers as writers_module
from robust_data.export.layout import FORMATS, ExportError, data_file
from robust_data.export.swap import owner_tag
from robust_data.store.store import Store
from tests.fixtures import png_bytes, query_rows

REPO = Path(__file__).resolve().parents[1]
DATASET = "toy"


# ---------------------------------------------------------------------------------------------
# a curated store written by hand: every table export_dataset reads, a few rows each


def _samples(ids: list[str], labels: list[int], names: list[str], split: str) -> pa.Table:
    images = [
        png_bytes(np.full((4, 4, 1), (17 * k + (split == "test") * 7) % 256, np.uint8))
        for k in range(len(ids))
    ]
    n = len(ids)
    return pa.table(
        {
            "sample_id": ids,
            "dataset": [DATASET] * n,
            "content_sha256": [hashlib.sha256(b).hexdigest() for b in images],
            "split": [split] * n,
            "label": pa.array(labels, pa.int64()),
            "label_name": names,
            "image": pa.array([{"bytes": b, "path": None} for b in images]),
            "height": pa.array([4] * n, pa.int32()),
            "width": pa.array([4] * n, pa.int32()),
            "channels": pa.array([1] * n, pa.int32()),
        }
    )


def _write(store: Store, table: str, data: pa.Table) -> None:
    path = store.storage_root / table / f"{DATASET}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path)


def make_store(
    store: Store,
    train: list[tuple[str, int, str]] | None = None,
    test: list[tuple[str, int, str]] | None = None,
) -> Store:
    """Write raw_samples ... reference_model for ``DATASET``: (sample_id, label, name) rows."""
    train = train or [(f"{DATASET}:train:{i}", i % 2, f"class {i % 2}") for i in range(6)]
    test = test or [(f"{DATASET}:test:{i}", i % 2, f"class {i % 2}") for i in range(4)]
    curated = _samples(*map(list, zip(*train, strict=True)), split="train")
    held_out = _samples(*map(list, zip(*test, strict=True)), split="test")
    ids = curated.column("sample_id").to_pylist()
    every = ids + held_out.column("sample_id").to_pylist()
    labels = curated.column("label")
    _write(store, "raw_samples", pa.concat_tables([curated, held_out]))
    _write(store, "curated_samples", curated)
    _write(
        store,
        "rpr_scores",
        pa.table(
            {
                "sample_id": every,
                "clean_pred": pa.array([0] * len(every), pa.int64()),
                "clean_correct": [True] * len(every),
                "steps_to_flip": pa.array([None] * len(every), pa.int32()),
                "robust": [True] * len(every),
                "flip_pred": pa.array([None] * len(every), pa.int64()),
            }
        ),
    )
    _write(
        store,
        "label_quality",
        pa.table(
            {
                "sample_id": ids,
                "label_quality": [1.0] * len(ids),
                "is_label_issue": [False] * len(ids),
                "suggested_label": labels,
                "outlier_score": [0.0] * len(ids),
                "is_outlier": [False] * len(ids),
                "near_duplicate_group": pa.array([None] * len(ids), pa.int64()),
            }
        ),
    )
    _write(
        store,
        "curation_ledger",
        pa.table(
            {
                "sample_id": ids,
                "label": labels,
                "kept": [True] * len(ids),
                "reason": pa.array([None] * len(ids), pa.string()),
            }
        ),
    )
    _write(
        store,
        "reference_model",
        pa.table({"path": ["model.pt"], "sha256": ["0" * 64], "arch": ["cnn"], "config": ["{}"]}),
    )
    return store


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (symlinks not followed), by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def store(isolated_home: Path) -> Store:
    return make_store(Store.open(isolated_home).ensure())


def _one_line_error(exc: pytest.ExceptionInfo[BaseException], start: str = "expected") -> str:
    message = str(exc.value)
    assert "\n" not in message and message.startswith(start), message
    return message


# ---------------------------------------------------------------------------------------------
# 1. an export never replaces or writes into the home, store, instance or its inputs

REFUSED = {
    "the home": lambda home: home,
    "the folder holding the home": lambda home: home.parent,
    "the storage root": lambda home: home / "store",
    "the Dagster instance": lambda home: home / "dagster",
    "a table folder inside the store": lambda home: home / "store" / "raw_samples",
    "a folder inside the Dagster instance": lambda home: home / "dagster" / "exports" / DATASET,
    "a folder inside the home but not under exports": lambda home: home / "mine",
    "the exports folder itself": lambda home: home / "exports",
    "a symlink to the home": lambda home: home.parent / "link-to-home",
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_export_refuses_the_homes_own_folders_even_with_force(
    store: Store, tmp_path: Path, case: str
) -> None:
    (tmp_path / "link-to-home").symlink_to(store.home, target_is_directory=True)
    (tmp_path / "my-notes.txt").write_text("the user's other files")
    (store.home / "exports").mkdir()
    (store.home / "exports" / "other").mkdir()
    (store.home / "exports" / "other" / "keep.txt").write_text("another export")
    before = snapshot(tmp_path)
    out = REFUSED[case](store.home)
    for fmt in FORMATS:
        with pytest.raises(ExportError) as exc:
            export_module.export_dataset(store, DATASET, out, fmt, force=True)
        message = _one_line_error(exc, "expected an `out` folder")
        assert f"`out`, e.g. {store.home / 'exports' / DATASET}" in message
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_export_messages_say_what_was_found(store: Store, tmp_path: Path) -> None:
    home = store.home
    with pytest.raises(ExportError) as exc:
        export_module.export_dataset(store, DATASET, tmp_path, force=True)
    assert _one_line_error(exc) == (
        "expected an `out` folder apart from the home, storage root, Dagster instance and input "
        f"tables; found {tmp_path}, which holds the home {home}; choose another `out`, "
        f"e.g. {home / 'exports' / DATASET}"
    )
    with pytest.raises(ExportError) as exc:
        export_module.export_dataset(store, DATASET, home / "store" / "mine", force=True)
    assert _one_line_error(exc) == (
        f"expected an `out` folder under {home / 'exports'} or outside the home; found "
        f"{home / 'store' / 'mine'}, inside the storage root {home / 'store'}; "
        f"choose another `out`, e.g. {home / 'exports' / DATASET}"
    )
    afile = tmp_path / "export.zip"
    afile.write_bytes(b"zip")
    with pytest.raises(ExportError) as exc:
        export_module.export_dataset(store, DATASET, afile, force=True)
    assert _one_line_error(exc) == (
        f"expected `out` to be a folder; found a file at {afile}; "
        "choose another `out`, or move the file away"
    )
    assert afile.read_bytes() == b"zip"


def test_export_refuses_a_storage_root_elsewhere_and_folders_holding_inputs(
    isolated_home: Path, tmp_path: Path
) -> None:
    store = make_store(Store.open(isolated_home, storage_root=str(tmp_path / "tables")).ensure())
    with pytest.raises(ExportError, match="which is the storage root"):
        export_module.export_dataset(store, DATASET, tmp_path / "tables", force=True)
    # a table file that is a symlink: the folder holding its real file is an input
    real = tmp_path / "inputs" / "raw.parquet"
    real.parent.mkdir()
    stored = store.table_path("raw_samples", DATASET)
    stored.rename(real)
    stored.symlink_to(real)
    (real.parent / "readme.txt").write_text("mine")
    before = snapshot(tmp_path / "inputs")
    with pytest.raises(ExportError, match="which holds the input table raw_samples"):
        export_module.export_dataset(store, DATASET, real.parent, force=True)
    assert snapshot(tmp_path / "inputs") == before


def test_export_under_home_exports_and_outside_still_work(store: Store, tmp_path: Path) -> None:
    inside = export_module.export_dataset(store, DATASET, store.home / "exports" / DATASET)
    assert (inside.path / data_file("train")).is_file()
    assert inside.rows == {"train": 6, "test": 4}
    outside = export_module.export_dataset(store, DATASET, tmp_path / "out", "imagefolder")
    assert len(list((outside.path / "train").rglob("*.png"))) == 6
    again = export_module.export_dataset(store, DATASET, tmp_path / "out", "imagefolder")
    assert again.removed == ()


def test_cli_export_at_the_home_prints_one_line(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    before = snapshot(store.home)
    assert (
        main(["export", DATASET, "--home", str(store.home), "--out", str(store.home), "--force"])
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"which is the home {store.home}" in err, err
    assert "expected an --out folder apart from" in err and "choose another --out, e.g." in err
    after = snapshot(store.home)  # opening the Dagster instance adds its databases
    assert {k: after.get(k) for k in before} == before


# ---------------------------------------------------------------------------------------------
# 2. an ImageFolder export writes one file per row, into one folder per class


def _files_by_image(root: Path) -> dict[bytes, Path]:
    """The images of an ImageFolder export (its train and test folders), by their bytes."""
    files = [p for split in ("train", "test") for p in (root / split).rglob("*.png")]
    return {p.read_bytes(): p.relative_to(root) for p in files}


def test_imagefolder_keeps_samples_whose_names_map_together(store: Store, tmp_path: Path) -> None:
    ids = ["x y", "x_y", "x/y", "猫", "犬", "Cat", "cat", "ok"]
    make_store(store, train=[(i, 0, "animals") for i in ids])
    result = export_module.export_dataset(store, DATASET, tmp_path / "out", "imagefolder")
    files = {k: v for k, v in _files_by_image(result.path).items() if v.parts[0] == "train"}
    assert len(files) == len(ids) == result.rows["train"]
    names = [p.name for p in files.values()]
    assert len({n.casefold() for n in names}) == len(ids)  # distinct on macOS too
    assert "ok.png" in names


def test_imagefolder_shortens_long_names(store: Store, tmp_path: Path) -> None:
    ids = ["a" * 300, "a" * 301, "b" * 300]
    make_store(store, train=[(i, 0, "c" * 300) for i in ids])
    result = export_module.export_dataset(store, DATASET, tmp_path / "out", "imagefolder")
    files = [v for v in _files_by_image(result.path).values() if v.parts[0] == "train"]
    assert len(files) == 3 and all(len(part) < 200 for f in files for part in f.parts)


def test_imagefolder_class_folders_are_distinct_and_the_same_in_every_split(
    store: Store, tmp_path: Path
) -> None:
    names = {0: "x", 1: "x_2", 2: "x", 3: "Cat", 4: "cat", 5: "a b", 6: "a_b"}
    train = [(f"s{label}", label, name) for label, name in names.items()]
    test = [("t6", 6, "a_b"), ("t2", 2, "x")]
    make_store(store, train=train, test=test)
    result = export_module.export_dataset(store, DATASET, tmp_path / "out", "imagefolder")
    raw = store.read("raw_samples", DATASET).to_pylist()
    label_of = {r["image"]["bytes"]: (r["split"], r["label"]) for r in raw}
    folder_of: dict[int, set[str]] = {}
    for blob, path in _files_by_image(result.path).items():
        split, label = label_of[blob]
        assert path.parts[0] == split
        folder_of.setdefault(label, set()).add(path.parts[1])
    assert all(len(folders) == 1 for folders in folder_of.values()), folder_of  # same in test
    folders = [next(iter(f)) for f in folder_of.values()]
    assert len({f.casefold() for f in folders}) == len(names), folders


def test_imagefolder_refuses_duplicate_ids_and_leaves_nothing(store: Store, tmp_path: Path) -> None:
    make_store(store, train=[("dup", 0, "a"), ("dup", 0, "a"), ("other", 1, "b")])
    with pytest.raises(ExportError) as exc:
        export_module.export_dataset(store, DATASET, tmp_path / "out", "imagefolder")
    assert "expected one file name per sample in train/a; found 'dup' and 'dup'" in (
        _one_line_error(exc)
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]


# ---------------------------------------------------------------------------------------------
# 3. what a killed export leaves behind is cleared by the next one (never a live one's)

KILLER = """
import os, signal, sys
import robust_data.export.export as export_module
import robust_data.export.writers as writers_module
from robust_data.store.store import Store

home, out, where = sys.argv[1:]
real_replace = os.replace

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def replace_then_die(source, target):
    real_replace(source, target)
    if ".old-" in str(target):
        die()

if where == "writing":
    writers_module.write_parquet = die
else:
    os.replace = replace_then_die
export_module.export_dataset(Store.open(home), "toy", out)
"""


def _killed_export(store: Store, out: Path, where: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", KILLER, str(store.home), str(out), where],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_next_export_removes_what_a_killed_export_left(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _killed_export(store, out, "writing")
    (left,) = tmp_path.glob(".out.*.tmp")
    result = export_module.export_dataset(store, DATASET, out)
    assert not left.exists() and (out / data_file("train")).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out"]
    assert result.removed == (left,)


def test_cleanup_spares_live_and_foreign_folders(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    host = owner_tag().rsplit("-", 1)[0]
    live = subprocess.Popen(["sleep", "60"])
    try:
        kept = [
            tmp_path / f".out.{host}-{live.pid}-abc.tmp",  # a live export
            tmp_path / f".out.{host}-{os.getpid()}-abc.tmp",  # this process
            tmp_path / f".out.otherhost-{_dead_pid()}-abc.tmp",  # another machine's
            tmp_path / f".outer.{host}-{_dead_pid()}-abc.tmp",  # another target's
            tmp_path / ".out.k2j3h4g5.tmp",  # no owner in its name
        ]
        stale = [tmp_path / f".out.old-{host}-{_dead_pid()}", tmp_path / f".out.old-{_dead_pid()}"]
        for folder in (*kept, *stale):
            folder.mkdir()
        result = export_module.export_dataset(store, DATASET, out)
        assert all(p.is_dir() for p in kept)
    finally:
        live.kill()
        live.wait()
    assert sorted(result.removed) == sorted(stale) and not any(p.exists() for p in stale)


def test_export_killed_between_renames_gets_the_previous_export_back(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    export_module.export_dataset(store, DATASET, out)
    before = snapshot(out)
    _killed_export(store, out, "swapping")
    assert not out.exists() and len(list(tmp_path.glob(".out.old-*"))) == 1

    def failing(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(writers_module, "write_parquet", failing)
    with pytest.raises(OSError, match="disk full"):
        export_module.export_dataset(store, DATASET, out)
    assert snapshot(out) == before  # the previous export, as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out"]


# ---------------------------------------------------------------------------------------------
# 4. a query cannot write anything, however the statement is wrapped

WRITES = [
    "COPY (SELECT 1 AS a) TO '{store_file}' (FORMAT parquet)",
    "COPY (SELECT 1 AS a) TO '{store_file}' (FORMAT parquet, USE_TMP_FILE false)",
    "EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{store_file}' (FORMAT parquet, USE_TMP_FILE false)",
    "/* hi */ EXPLAIN (FORMAT json) COPY (SELECT 1) TO '{outside}/x.csv'",
    "EXPORT DATABASE '{outside}/db'",
    "ATTACH '{outside}/new.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CREATE TABLE t AS SELECT 1 AS a",
    "SET enable_external_access = true",
    "SELECT * FROM enable_logging(storage = 'file', storage_path = '{outside}/logs')",
    "SELECT * FROM read_text('{outside_file}')",
    "SELECT * FROM '{store_file}'",
]


@pytest.fixture
def sandbox(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """HOME and the working folder in tmp; the paths the statements name."""
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    (tmp_path / "user").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("not a table")
    return {
        "store_file": str(store.table_path("raw_samples", DATASET)),
        "outside": str(tmp_path / "outside"),
        "outside_file": str(tmp_path / "outside" / "secret.txt"),
    }


@pytest.mark.parametrize("template", WRITES)
def test_query_refuses_every_write_in_one_line(
    store: Store, tmp_path: Path, sandbox: dict[str, str], template: str
) -> None:
    before = snapshot(tmp_path)
    sql = template.format(**sandbox)
    with pytest.raises(query_module.QueryError) as exc:
        query_rows(store, sql)
    _one_line_error(exc)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "user" / ".duckdb").exists() and not any((tmp_path / "cwd").iterdir())


@pytest.mark.parametrize("template", [w for w in WRITES if "CREATE TABLE" not in w])
def test_connection_itself_cannot_write(
    store: Store, tmp_path: Path, sandbox: dict[str, str], template: str
) -> None:
    import duckdb

    before = snapshot(tmp_path)
    con = query_module.connect(store)  # no statement check here: DuckDB itself refuses
    try:
        with pytest.raises(duckdb.Error):
            con.execute(template.format(**sandbox)).fetchall()
    finally:
        con.close()
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "user" / ".duckdb").exists() and not any((tmp_path / "cwd").iterdir())


def test_stream_query_refuses_writes_too(store: Store, sandbox: dict[str, str]) -> None:
    for template in WRITES[:3]:
        out = io.StringIO()
        with pytest.raises(query_module.QueryError):
            query_module.stream_query(store, template.format(**sandbox), out)
        assert out.getvalue() == ""


def test_query_messages(store: Store) -> None:
    cases = {
        "SELECT 1; SELECT 2": "expected one statement; found 2; run them one query at a time",
        "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'": (
            "expected read-only SQL (one SELECT, or EXPLAIN of one); found a statement of type "
            "EXPLAIN COPY; the store is read-only here"
        ),
        "DROP VIEW raw_samples": "expected read-only SQL (one SELECT, or EXPLAIN of one); "
        "found a statement of type DROP; the store is read-only here",
    }
    for sql, message in cases.items():
        with pytest.raises(query_module.QueryError) as exc:
            query_rows(store, sql)
        assert _one_line_error(exc) == message
    with pytest.raises(query_module.QueryError) as exc:
        query_rows(store, f"SELECT * FROM read_text('{store.home}/datasets.json')")
    assert _one_line_error(exc).startswith(
        "expected SQL that only reads the stored tables; found a statement that reaches files"
    )


def test_reads_still_work(store: Store) -> None:
    # a second partition with a column the first lacks: views unify them by name
    extra = store.storage_root / "raw_samples" / "more.parquet"
    pq.write_table(pa.table({"sample_id": ["m:1"], "split": ["train"], "note": ["new"]}), extra)
    assert query_rows(store, "SELECT count(*) AS n FROM raw_samples") == [{"n": 11}]
    assert query_rows(store, "SELECT count(note) AS n FROM raw_samples") == [{"n": 1}]
    for sql in (
        "EXPLAIN SELECT * FROM rpr_scores",
        "EXPLAIN ANALYZE SELECT count(*) FROM rpr_scores",
        "-- comment\nDESCRIBE curated_samples",
        "WITH t AS (SELECT label FROM curated_samples) SELECT label, count(*) FROM t GROUP BY 1",
        "FROM label_quality",
    ):
        assert query_rows(store, sql), sql
    out = io.StringIO()
    assert query_module.stream_query(store, "SELECT sample_id, image FROM raw_samples", out) == 11
    assert "bytes>" in out.getvalue() and out.getvalue().endswith("(11 rows)\n")


# ---------------------------------------------------------------------------------------------
# 5. large results: capped, streamed, and the cap says so


class Recorder(io.StringIO):
    """A text stream that counts its writes."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def numbers(store: Store) -> Store:
    path = store.storage_root / "numbers" / f"{DATASET}.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"i": pa.array(range(25_000), pa.int64())}), path)
    return store


def test_table_output_stops_at_the_cap_and_says_which_option_raises_it(numbers: Store) -> None:
    out = io.StringIO()
    rows = query_module.stream_query(numbers, "SELECT i FROM numbers ORDER BY i", out)
    lines = out.getvalue().splitlines()
    assert rows == query_module.TABLE_MAX_ROWS == 10_000 and len(lines) == 2 + 10_000 + 1
    assert lines[-2].strip() == "9999"
    assert lines[-1] == (
        "(output truncated at 10,000 rows; pass a larger `max_rows` to raise the cap, "
        "or `max_rows=None` for no cap)"
    )
    out = io.StringIO()
    assert query_module.stream_query(numbers, "SELECT i FROM numbers LIMIT 3", out, max_rows=3) == 3
    assert out.getvalue().endswith("(3 rows)\n")  # exactly at the cap is not truncated


def test_csv_and_json_stream_batches_and_note_the_cap_apart(numbers: Store) -> None:
    out, notes = Recorder(), io.StringIO()
    sql = "SELECT i FROM numbers ORDER BY i"
    rows = query_module.stream_query(
        numbers, sql, out, "csv", max_rows=None, notes=notes, rows_per_batch=1_000
    )
    assert rows == 25_000 and out.writes > 5 and notes.getvalue() == ""
    assert out.getvalue().splitlines()[:2] == ["i", "0"] and out.getvalue().count("\n") == 25_001
    out, notes = Recorder(), io.StringIO()
    assert query_module.stream_query(numbers, sql, out, "json", max_rows=5, notes=notes) == 5
    assert [json.loads(line)["i"] for line in out.getvalue().splitlines()] == [0, 1, 2, 3, 4]
    assert notes.getvalue() == query_module.truncation_note(5) + "\n"


def test_max_rows_flag_and_uncapped_queries(numbers: Store) -> None:
    from pipelines.cli.commands import max_rows_for
    from pipelines.cli.common import CliError

    assert max_rows_for("table", None) == 10_000
    assert max_rows_for("csv", None) is None
    assert max_rows_for("table", 0) is None
    assert max_rows_for("json", 7) == 7
    with pytest.raises(CliError) as exc:
        max_rows_for("table", -1)
    assert (
        _one_line_error(exc)
        == "expected --max-rows 0 (no cap) or more; found -1; pass --max-rows 0"
    )
    assert len(query_rows(numbers, "SELECT * FROM numbers")) == 25_000
    assert len(query_rows(numbers, "SELECT * FROM numbers", max_rows=10)) == 10


def test_cli_query_caps_rows_and_survives_a_closed_pipe(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    sql = "SELECT sample_id FROM raw_samples ORDER BY sample_id"
    assert main(["query", sql, "--max-rows", "2", "--home", str(store.home)]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if ":train:" in line or ":test:" in line]) == 2
    assert "output truncated at 2 rows; pass --max-rows N" in out
    script = Path(sys.executable).parent / "robust-data"
    many = "SELECT s.sample_id, r.range FROM raw_samples s, range(200000) r"  # megabytes of CSV
    piped = subprocess.run(
        f"'{script}' query --home '{store.home}' \"{many}\" --format csv --max-rows 0 | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    assert piped.stdout == "sample_id,range\n" and "Traceback" not in piped.stderr
