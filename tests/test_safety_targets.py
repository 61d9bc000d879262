"""Every path the product writes for the user gets the export's target rules.

`review export FILE`, `score-model --plot FILE`, `gallery --out DIR` and `export --out DIR`
never write into the home, the store, the Dagster instance, an export's inside or another
robust-data home, and replace an existing file only with --force; an export restored after a
kill is reported as restored. Real CLI processes over a small hand-made store.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import robust_data.export.export as export_module
from pipelines.home import prepare_home
from robust_data.export.layout import ExportError
from robust_data.store.store import Store
from tests.test_safety_export_query import DATASET, _killed_export, make_store, snapshot

SCRIPT = Path(sys.executable).parent / "robust-data"


def cli(*args: str, cwd: Path, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """``robust-data ARGS`` in a process of its own (run by the command ``prefix``, if any)."""
    return subprocess.run(
        [*prefix, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )


def refused(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The one error line of a refused command (exit 1, nothing else on stderr)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    prefix = f"robust-data {command}: error: expected "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0].removeprefix(f"robust-data {command}: error: ")


@pytest.fixture
def store(isolated_home: Path) -> Store:
    return make_store(Store.open(isolated_home).ensure())


@pytest.fixture
def other_home(tmp_path: Path) -> Path:
    """Another robust-data home beside the test's: a store, an instance, a registry."""
    other = make_store(prepare_home(Store.open(tmp_path / "other" / "home")))
    (other.home / "datasets.json").write_text('{"toy": {"source": "x"}}')
    return other.home


# ---------------------------------------------------------------------------------------------
# 1. review export, score-model --plot and gallery --out: the export's rules, files too


def test_review_export_never_replaces_a_stored_table(store: Store, tmp_path: Path) -> None:
    table = store.table_path("raw_samples", DATASET)
    before = snapshot(store.home)
    for force in ([], ["--force"]):
        result = cli(
            "review", "export", DATASET, str(table), "--home", str(store.home), *force, cwd=tmp_path
        )
        assert refused(result, "review") == (
            "expected a review CSV file apart from the home, storage root, Dagster instance and "
            f"input tables; found {table}, which is the input table raw_samples {table}; "
            f"choose another path, e.g. {tmp_path / 'toy-reviews.csv'}"
        )
    assert snapshot(store.home) == before
    assert store.read("raw_samples", DATASET).num_rows == 10  # still a table


def test_review_export_through_symlinks_never_reaches_the_store_or_another_home(
    store: Store, other_home: Path, tmp_path: Path
) -> None:
    """A hostile caller's links: a folder link into the store or another home is refused; a
    link named as the file is itself replaced (the rename lands on the link, not its target)."""
    table = store.table_path("raw_samples", DATASET)
    (tmp_path / "into-store").symlink_to(table.parent, target_is_directory=True)
    (tmp_path / "into-other").symlink_to(other_home, target_is_directory=True)
    before, before_other = snapshot(store.home), snapshot(other_home)
    home = ("--home", str(store.home), "--force")
    for link, inside in (("into-store", "the storage root"), ("into-other", "robust-data home")):
        result = cli("review", "export", DATASET, f"{link}/x.csv", *home, cwd=tmp_path)
        assert inside in refused(result, "review")
    (tmp_path / "file-link.csv").symlink_to(table)
    result = cli("review", "export", DATASET, "file-link.csv", *home, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "file-link.csv").is_symlink()
    assert (tmp_path / "file-link.csv").read_text().startswith("sample_id,decision")
    assert snapshot(store.home) == before and snapshot(other_home) == before_other
    assert store.read("raw_samples", DATASET).num_rows == 10  # still a table


def _targets(store: Store, other: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """File targets that must be refused even with --force: path, what the message says."""
    home = store.home
    export = export_module.export_dataset(store, DATASET, tmp_path / "my-export").path
    plain = tmp_path / "plain"
    plain.mkdir()
    return {
        "a new file in the store": (home / "store" / "mine.csv", "inside the storage root"),
        "the registry": (home / "datasets.json", "inside the home"),
        "the instance": (home / "dagster" / "runs.csv", "inside the Dagster instance"),
        "an export's data": (export / "data" / "x.csv", f"inside the export {export}"),
        "another home": (other / "r.csv", f"which lies inside the robust-data home {other}"),
        "another home's table": (
            other / "store" / "raw_samples" / "toy.parquet",
            f"which lies inside the robust-data home {other}",
        ),
        "a folder": (plain, "expected a review CSV file to be a file; found a folder at"),
    }


def test_every_file_output_gets_the_target_rules(
    store: Store, other_home: Path, tmp_path: Path
) -> None:
    (store.home / "datasets.json").write_text("{}")
    targets = _targets(store, other_home, tmp_path)
    before = snapshot(tmp_path)
    home = ["--home", str(store.home)]
    for case, (path, says) in targets.items():
        for force in ([], ["--force"]):  # which overrides none of these
            result = cli("review", "export", DATASET, str(path), *home, *force, cwd=tmp_path)
            assert says in refused(result, "review"), (case, force)
    plot = targets["another home's table"][0]
    result = cli("score-model", DATASET, "--plot", str(plot), *home, cwd=tmp_path)
    assert refused(result, "score-model").startswith(
        f"expected a --plot file apart from every other robust-data home; found {plot}, which "
        f"lies inside the robust-data home {other_home}; choose another --plot, e.g. "
    )
    for out, says in ((store.home / "store", "inside the storage root"), (other_home, "which")):
        result = cli("gallery", "--out", str(out), cwd=tmp_path)
        assert says in refused(result, "gallery"), out
    assert snapshot(tmp_path) == before


def test_an_existing_file_is_replaced_only_with_force(store: Store, tmp_path: Path) -> None:
    mine = tmp_path / "notes.csv"
    mine.write_text("my own notes\n")
    home = ["--home", str(store.home)]
    result = cli("review", "export", DATASET, str(mine), *home, cwd=tmp_path)
    assert refused(result, "review") == (
        f"expected a review CSV file that does not exist yet; found a file at {mine}; "
        "pass --force to replace it, or choose another path"
    )
    assert mine.read_text() == "my own notes\n"
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    (gallery / "README.md").write_text("my readme")
    result = cli("gallery", "--out", str(gallery), cwd=tmp_path)
    assert "found a file at" in refused(result, "gallery")
    assert [p.name for p in gallery.iterdir()] == ["README.md"]  # nothing half-written
    assert (gallery / "README.md").read_text() == "my readme"
    result = cli("review", "export", DATASET, str(mine), *home, "--force", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert mine.read_text().startswith("sample_id,decision,new_label,note,reviewed_at\n")


# ---------------------------------------------------------------------------------------------
# 2. an export's inside is never an --out; 3. nor is another robust-data home


def test_export_never_writes_inside_an_export(store: Store, tmp_path: Path) -> None:
    exports = store.home / "exports"
    first = export_module.export_dataset(store, DATASET, exports / DATASET).path
    outside = export_module.export_dataset(store, DATASET, tmp_path / "out").path
    (exports / "mine" / "sub").mkdir(parents=True)
    before = snapshot(exports), snapshot(outside)
    inside = first / "data"
    result = cli(
        "export", DATASET, "--out", str(inside), "--force", "--home", str(store.home), cwd=tmp_path
    )
    assert refused(result, "export") == (
        "expected an --out folder outside every export (an export is replaced only whole); "
        f"found {inside}, inside the export {first}; choose another --out, e.g. {first}"
    )
    cases = {
        outside / "data": f"inside the export {outside}",
        outside / "plots" / "new": f"inside the export {outside}",
        exports / "mine" / "sub": f"one level under {exports}",
    }
    for out, says in cases.items():
        with pytest.raises(ExportError, match=re.escape(says)):
            export_module.export_dataset(store, DATASET, out, force=True)
    assert (snapshot(exports), snapshot(outside)) == before
    again = export_module.export_dataset(store, DATASET, first, force=True)  # the export itself
    assert again.path == first


def test_export_never_replaces_another_home(store: Store, other_home: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"  # no dagster.yaml: told by its store beside the registry
    (bare / "store").mkdir(parents=True)
    (bare / "datasets.json").write_text("{}")
    before = snapshot(other_home.parent), snapshot(bare)
    result = cli(
        "export",
        DATASET,
        "--out",
        str(other_home),
        "--force",
        "--home",
        str(store.home),
        cwd=tmp_path,
    )
    assert refused(result, "export") == (
        "expected an --out folder apart from every other robust-data home; found "
        f"{other_home}, which is the robust-data home {other_home}; choose another --out, "
        f"e.g. {store.home / 'exports' / DATASET}"
    )
    cases = {
        other_home.parent: f"which holds the robust-data home {other_home}",
        other_home / "exports" / DATASET: f"which lies inside the robust-data home {other_home}",
        bare: f"which is the robust-data home {bare}",
    }
    for out, says in cases.items():
        with pytest.raises(ExportError, match=re.escape(says)):
            export_module.export_dataset(store, DATASET, out, force=True)
    assert (snapshot(other_home.parent), snapshot(bare)) == before
    from robust_data.store.targets import is_home

    assert is_home(store.home) and is_home(other_home) and is_home(bare)
    assert not is_home(tmp_path) and not is_home(bare / "store")


# ---------------------------------------------------------------------------------------------
# 4. an export stopped between its two renames: the previous export is restored, and said so


def test_a_restored_export_is_reported_as_restored(store: Store, tmp_path: Path) -> None:
    # one outside the home (restored by the export to it), one in <home>/exports (restored by
    # the cleanup every writing command starts with): both said by one export command
    outs = (tmp_path / "out", store.home / "exports" / DATASET)
    before, olds = {}, {}
    for out in outs:
        export_module.export_dataset(store, DATASET, out)
        before[out] = snapshot(out)
        _killed_export(store, out, "swapping")
        (olds[out],) = out.parent.glob(f".{out.name}.old-*")
        assert not out.exists()
    result = cli("export", DATASET, "--out", str(outs[0]), "--home", str(store.home), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for out, old in olds.items():
        said = (
            f"restored the previous export at {out}, which an export stopped between its two "
            f"renames had moved to {old}"
        )
        assert said in result.stderr, result.stderr
        assert f"removed {old}" not in result.stderr  # restored, not removed
        assert not old.exists() and set(snapshot(out)) == set(before[out])
    assert snapshot(outs[1]) == before[outs[1]]  # restored as it was, not exported again
