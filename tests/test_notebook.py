"""The notebook API: robust_data.curate on a small real subset of digits, and Home's reads."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import robust_data
from pipelines.cli import main
from robust_data.curation.ledger import check_ledger
from robust_data.errors import DatasetError, RobustDataError
from robust_data.label_quality.assess import check_label_quality
from robust_data.label_quality.oof_table import check_oof
from robust_data.scoring.reference import check_model_table
from robust_data.scoring.rpr.table import check_rpr_scores
from robust_data.store.checks import check_samples, split_rows
from robust_data.store.store import Store
from robust_data.variants.make import check_variants

TABLES = {  # CurationTables field -> the asset (stored table) it is
    "samples": "raw_samples",
    "scores": "rpr_scores",
    "label_quality": "label_quality",
    "kept": "curated_samples",
    "ledger": "curation_ledger",
    "variants": "variants",
}


def small_digits(folder: Path) -> str:
    """A parquet source of real digits: 16 training and 5 test images per class."""
    samples = robust_data.ingest("digits").samples
    labels = samples.column("label").to_numpy()
    splits = np.asarray(samples.column("split").to_pylist())
    pick = np.sort(
        np.concatenate(
            [
                np.flatnonzero((labels == c) & (splits == split))[:n]
                for c in range(10)
                for split, n in (("train", 16), ("test", 5))
            ]
        )
    )
    path = folder / "digits-small.parquet"
    pq.write_table(samples.take(pa.array(pick)).select(["image", "label", "split"]), path)
    return f"parquet:{path}"


def test_curate_stores_what_the_assets_would_and_repeats_in_memory(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = small_digits(tmp_path)
    quick = {"max_steps": 10, "epochs": 1, "preset": "mined"}
    stored = robust_data.curate(spec, home=isolated_home, **quick)
    assert stored.dataset == "digits-small" and stored.home == isolated_home
    assert len(stored.samples) == 210 and len(stored.scores) == 210
    assert len(stored.label_quality) == len(stored.ledger) == 160
    assert len(stored.kept) == int(stored.ledger["kept"].sum()) > 0
    assert len(stored.variants) > 0
    assert set(stored.variants["parent_sample_id"]) <= set(stored.kept["sample_id"])
    assert stored.model.num_classes == 10
    # stored as the assets store them: every table passes its asset's check ...
    store = Store.open(isolated_home)
    name = "digits-small"
    read = {table: store.read(table, name) for table in TABLES.values()}
    raw, oof = read["raw_samples"], store.read("oof_predictions", name)
    curated = read["curated_samples"]
    outcomes = {
        "raw_samples": check_samples(raw),
        "reference_model": check_model_table(store.read("reference_model", name)),
        "rpr_scores": check_rpr_scores(read["rpr_scores"], raw),
        "oof_predictions": check_oof(oof, raw),
        "label_quality": check_label_quality(read["label_quality"], oof),
        "curation_ledger": check_ledger(read["curation_ledger"], split_rows(raw), curated.num_rows),
        "variants": check_variants(read["variants"], curated),
    }
    assert all(o.passed for o in outcomes.values()), {k: o.summary() for k, o in outcomes.items()}
    assert store.registrations()[name].source == spec
    # ... and read back through Home as the DataFrames curate returned
    home = robust_data.Home.open(isolated_home)
    assert home.datasets() == [name]
    for field, table in TABLES.items():
        assert home.read(table, name).equals(getattr(stored, field)), table
    # the CLI works on it: a review export, and the curated export
    assert main(["review", "export", name, str(tmp_path / "reviews.csv")]) == 0
    assert main(["export", name, "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "README.md").exists()
    capsys.readouterr()
    # the same seed in memory: the same tables, and nothing written to the home
    before = sorted(p for p in isolated_home.rglob("*") if "dagster" not in p.parts)
    again = robust_data.curate(spec, **quick)
    assert again.home is None
    assert sorted(p for p in isolated_home.rglob("*") if "dagster" not in p.parts) == before
    for field in TABLES:
        assert again.__getattribute__(field).equals(getattr(stored, field)), field


def test_curate_refuses_bad_input_before_any_work(isolated_home: Path) -> None:
    with pytest.raises(RobustDataError, match=r"found 'nope'; pass e.g. `preset=mined`$"):
        robust_data.curate("digits", preset="nope", home=isolated_home)
    with pytest.raises(DatasetError, match=r"found 'digts'; .*; did you mean 'digits'\?$"):
        robust_data.curate("digts", home=isolated_home)
    with pytest.raises(RobustDataError, match=r"expected max_steps >= 1; found 0"):
        robust_data.curate("digits", max_steps=0, home=isolated_home)
    assert not Store.open(isolated_home).datasets()


def test_home_open_and_read_say_what_is_there(tmp_path: Path, isolated_home: Path) -> None:
    for path, found in (
        (tmp_path / "missing", "found nothing there at"),
        (tmp_path / "empty", "found no store/, datasets.json, dagster/ at"),
        (tmp_path / "file.txt", "found a file at"),
    ):
        if path.name == "empty":
            path.mkdir()
        elif path.suffix:
            path.write_text("x")
        with pytest.raises(DatasetError) as error:
            robust_data.Home.open(path)
        assert found in str(error.value) and "\n" not in str(error.value)
    assert main(["ingest", "digits"]) == 0
    home = robust_data.Home.open(isolated_home)
    assert home.read("raw_samples", "digits").shape[0] == 1797
    assert home.tables() == ["ingest_rejects", "raw_samples"]
    with pytest.raises(DatasetError, match=r"found 'digts'; did you mean 'digits'\?$"):
        home.read("raw_samples", "digts")
    with pytest.raises(DatasetError, match=r"found 'raw_sample'; did you mean 'raw_samples'\?$"):
        home.read("raw_sample", "digits")
    # names are matched whole: no path leads out of the store (the hostile review's reads)
    outside = isolated_home.parent / "outside"
    outside.mkdir()
    pq.write_table(pa.table({"secret": [1]}), outside / "secret.parquet")
    for table, dataset in (("raw_samples", "../../../outside/secret"), ("../../outside", "secret")):
        with pytest.raises(DatasetError, match=r"^expected a"):
            home.read(table, dataset)


def test_curate_takes_your_model_and_refuses_two(tmp_path: Path) -> None:
    import sys

    from torch import nn

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "nb_models.py").write_text(
        "from torch import nn\n\n"
        "def mlp(num_classes, in_shape):\n"
        "    c, h, w = in_shape\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.ReLU(),\n"
        "                         nn.Linear(16, num_classes))\n"
    )
    sys.path.insert(0, str(folder))
    spec = small_digits(tmp_path)
    try:
        run = robust_data.curate(spec, max_steps=5, epochs=1, model="nb_models:mlp")
        again = robust_data.curate(spec, max_steps=5, epochs=1, model="nb_models:mlp")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("nb_models", None)
    layers = [type(m) for m in run.model.model.modules()]
    assert nn.Linear in layers and nn.Conv2d not in layers  # the factory's MLP, not simple_cnn
    assert len(run.scores) == 210 and run.scores.equals(again.scores)  # same seed, same scores
    with pytest.raises(RobustDataError, match=r"^expected "):
        robust_data.curate(spec, model="nb_models:mlp", arch="resnet")


def test_curate_refuses_a_bad_seed_or_model_before_writing_anything(
    isolated_home: Path, tmp_path: Path
) -> None:
    """The hostile review's cases: seed=-1 and a factory returning an int used to fail only
    after raw_samples, the registration and (for the seed) the reference model were stored."""
    import sys

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "nb_bad.py").write_text("def returns_int(num_classes, in_shape):\n    return 7\n")
    spec = small_digits(tmp_path)
    sys.path.insert(0, str(folder))
    try:
        for kwargs, words in (
            ({"seed": -1}, "expected seed as a whole number in 0..4294967295; found -1"),
            ({"seed": 2**32}, "found 4294967296"),
            ({"model": "nb_bad:returns_int"}, "to return a torch.nn.Module; found a int"),
            ({"model": str(tmp_path / "none.pt")}, "found no such file"),
        ):
            with pytest.raises(RobustDataError, match=re.escape(words)):
                robust_data.curate(spec, home=isolated_home, max_steps=5, epochs=1, **kwargs)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("nb_bad", None)
    store = Store.open(isolated_home)
    assert store.tables() == {} and not store.registrations()  # nothing of the dataset stored
