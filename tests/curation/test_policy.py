"""Curation policy, ledger and export: rules on synthetic tables, then real exports of digits."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import robust_data.export.writers as writers_module
from pipelines.cli import main
from robust_data import CuratedDataset
from robust_data.curation.policy import CurationPolicy, select_curated
from robust_data.curation.presets import DEFAULT_PRESET
from robust_data.curation.reviews import Review
from robust_data.export.export import export_dataset
from robust_data.export.layout import ExportError
from robust_data.export.writers import write_imagefolder
from robust_data.io.files import file_sha256
from robust_data.store.schema import read_metadata
from robust_data.store.store import Store
from tests.conftest import CuratedHome


def _tables(rows: list[dict]) -> tuple[pa.Table, pa.Table, pa.Table]:
    """samples, rpr and quality tables from rows of id, label and the score fields."""
    samples = pa.table({"sample_id": [r["id"] for r in rows], "label": [r["label"] for r in rows]})
    rpr = pa.table(
        {
            "sample_id": [r["id"] for r in rows],
            "clean_correct": [r.get("correct", True) for r in rows],
            "robust": [r.get("robust", True) for r in rows],
            "steps_to_flip": pa.array([r.get("steps") for r in rows], pa.int32()),
        }
    )
    quality = pa.table(
        {
            "sample_id": [r["id"] for r in rows],
            "is_label_issue": [r.get("issue", False) for r in rows],
            "is_outlier": [r.get("outlier", False) for r in rows],
            "near_duplicate_group": pa.array([r.get("group") for r in rows], pa.string()),
        }
    )
    return samples, rpr, quality


ROWS = [
    {"id": "a0", "label": 0, "correct": False, "robust": False},  # misclassified first
    {"id": "a1", "label": 0, "robust": False, "steps": 40},  # not robust
    {"id": "a2", "label": 0, "issue": True},  # label issue
    {"id": "a3", "label": 0, "outlier": True},  # outlier
    {"id": "a4", "label": 0, "group": "a4"},  # kept: first of its group
    {"id": "a5", "label": 0, "group": "a4"},  # duplicate of a4
    {"id": "a6", "label": 0},
    {"id": "a7", "label": 0},
    {"id": "b0", "label": 1},
    {"id": "b1", "label": 1, "robust": False, "steps": 3},
]


def _reasons(policy: CurationPolicy) -> dict[str, str | None]:
    result = select_curated(*_tables(ROWS), policy)
    assert result.ledger.num_rows == len(ROWS)  # conservation
    assert result.curated.num_rows == sum(result.ledger.column("kept").to_pylist())
    return dict(
        zip(
            result.ledger.column("sample_id").to_pylist(),
            result.ledger.column("reason").to_pylist(),
            strict=True,
        )
    )


def test_rules_in_order_and_each_can_be_switched_off() -> None:
    reasons = _reasons(CurationPolicy(quota_mode="none"))
    assert reasons == {
        "a0": "misclassified",
        "a1": "not_robust",
        "a2": "label_issue",
        "a3": "outlier",
        "a4": None,
        "a5": "duplicate",
        "a6": None,
        "a7": None,
        "b0": None,
        "b1": "not_robust",
    }
    off = _reasons(
        CurationPolicy(
            quota_mode="none",
            require_correct=False,
            require_robust=False,
            drop_label_issues=False,
            drop_outliers=False,
            dedupe=False,
        )
    )
    assert set(off.values()) == {None}
    steps = _reasons(CurationPolicy(quota_mode="none", min_steps_to_flip=10))
    assert steps["a1"] is None and steps["b1"] == "not_robust"  # flipped at 40 >= 10; at 3 < 10


def test_quota_modes_report_shortfalls_and_sample_with_the_seed() -> None:
    samples, rpr, quality = _tables(ROWS)
    smallest = select_curated(samples, rpr, quality, CurationPolicy(quota_mode="smallest"))
    assert smallest.class_counts()[1] == {0: 1, 1: 1}  # class 1 has one survivor
    fixed = select_curated(samples, rpr, quality, CurationPolicy(quota_mode="fixed", per_class=2))
    assert fixed.shortfalls == {1: (2, 1)} and fixed.class_counts()[1] == {0: 2, 1: 1}
    cap = select_curated(samples, rpr, quality, CurationPolicy(quota_mode="cap", per_class=2))
    assert cap.shortfalls == {} and cap.class_counts()[1] == {0: 2, 1: 1}
    assert fixed.reason_counts()["over_quota"] == 1
    many = [{"id": f"s{i}", "label": i % 2} for i in range(200)]
    picks = {
        seed: select_curated(
            *_tables(many), CurationPolicy(quota_mode="cap", per_class=10, seed=seed)
        )
        .curated.column("sample_id")
        .to_pylist()
        for seed in (0, 0, 1)
    }
    again = select_curated(*_tables(many), CurationPolicy(quota_mode="cap", per_class=10, seed=0))
    assert again.curated.column("sample_id").to_pylist() == picks[0] != picks[1]


def test_bad_policy_and_missing_scores() -> None:
    with pytest.raises(ValueError, match="expected quota_mode in"):
        CurationPolicy(quota_mode="equal")
    samples, rpr, quality = _tables(ROWS)
    with pytest.raises(ValueError, match="expected rpr_scores for every sample; found 1 without"):
        select_curated(samples, rpr.slice(1), quality)


def test_imagefolder_names_cannot_escape(tmp_path: Path) -> None:
    table = pa.table(
        {
            "sample_id": ["../../evil", "ok"],
            "label": [0, 1],
            "label_name": ["../x", "/etc"],
            "image": pa.array([{"bytes": b"png", "path": None}] * 2),
        }
    )
    out = tmp_path / "out"
    out.mkdir()
    write_imagefolder(out, {"train": table})
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["train/_etc/ok.png", "train/_x/_.._evil.png"]
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "evil.png").exists()


@pytest.fixture
def curated_home(curated_digits: CuratedHome) -> Path:
    return curated_digits.home


@pytest.mark.slow
def test_curate_exports_parquet_that_other_tools_read(curated_home: Path, tmp_path: Path) -> None:
    store = Store.open(curated_home)
    exported = curated_home / "exports" / "digits"  # curate made it (curated_dataset asset)
    lineage = json.loads((exported / "lineage.json").read_text())
    curated = store.read("curated_samples", "digits")
    variants = lineage["tables"]["variants"]["rows"]
    assert lineage["rows"]["train"] == curated.num_rows + variants  # the preset's plan
    for name, entry in lineage["tables"].items():
        assert not Path(entry["path"]).is_absolute(), name  # relative to the home
        assert entry["sha256"] == file_sha256(curated_home / entry["path"]), name
        assert entry["run_id"]
    out = tmp_path / "export"
    result = export_dataset(store, "digits", out)
    # one definition of an export: the default holds what the job's export holds, the kept
    # originals and the plan's variants
    assert result.rows == lineage["rows"] == {"train": curated.num_rows + variants, "test": 359}
    mine = json.loads((out / "lineage.json").read_text())
    assert mine["contents"] == lineage["contents"] and mine["contents"]["variants"] == "included"
    train = pq.read_table(out / "data" / "train-00000-of-00001.parquet")
    originals = train.slice(0, curated.num_rows)
    assert originals.column("sample_id").to_pylist() == curated.column("sample_id").to_pylist()
    assert originals.column("parent_sample_id").null_count == curated.num_rows
    assert train.column("parent_sample_id").null_count == curated.num_rows  # the rest: variants
    # the default preset drops or repairs label issues, keeps fragile points (RPR scores
    # still joined on); a repaired sample trains with its new label and that label's name
    ledger = {r["sample_id"]: r for r in store.read("curation_ledger", "digits").to_pylist()}
    for row in originals.select(["sample_id", "is_label_issue", "label", "label_name"]).to_pylist():
        if row["is_label_issue"]:
            assert ledger[row["sample_id"]]["new_label"] == row["label"]
        assert row["label_name"] == str(row["label"])
    assert originals.column("robust").null_count == 0
    meta = {k.decode(): v.decode() for k, v in train.schema.metadata.items()}
    policy = json.loads(meta["robust_data.policy"])
    assert policy["preset"] == DEFAULT_PRESET and policy["plan"] == {
        "transforms": ["pixels", "translate(severity=1)"],
        "copies": 1,
        "focus_copies": 2,
        "mining": "hard",
        "candidates": 8,
        "class_focus": 2,
    }
    assert (
        meta["robust_data.model_sha256"]
        == store.read("reference_model", "digits").column("sha256")[0].as_py()
    )
    assert set(json.loads(meta["robust_data.upstream"])) >= {
        "raw_samples",
        "rpr_scores",
        "curation_ledger",
    }
    counts = duckdb.sql(
        f"SELECT split, count(*) FROM '{out}/data/*.parquet' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert counts == [("test", 359), ("train", curated.num_rows + variants)]
    data = CuratedDataset(out, split="test")
    image, label = data[0]
    assert label == data.labels[0]
    assert (
        len(data) == 359
        and image.shape == (1, 8, 8)
        and 0 <= float(image.min()) <= float(image.max()) <= 1
    )
    card = (out / "README.md").read_text()
    assert (
        "## Policy" in card
        and "| kept |" in card
        and (out / "plots" / "class_counts.png").is_file()
    )
    # the job's export came before its report; this one, after it, shows the verdicts
    assert mine["report"]["status"] == "included" and lineage["report"]["status"] == "none"
    assert all(f"- {line}" in card for line in mine["report"]["verdicts"])
    assert "method `self_confidence`, filter_by `prune_by_noise_rate`" in card
    assert "scheme `pixels`, max_steps `250`, seed `0`" in card and "folds `5`" in card
    ledger = pd.read_csv(out / "ledger.csv")
    assert len(ledger) == store.read("curation_ledger", "digits").num_rows
    assert ledger["reason"].notna().sum() == len(ledger) - curated.num_rows
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset(
        "parquet", data_dir=str(out / "data"), cache_dir=str(tmp_path / "hf")
    )
    assert loaded["train"].num_rows == curated.num_rows + variants
    assert loaded["train"].features["label"].names[:3] == ["0", "1", "2"]
    assert loaded["test"][0]["image"].size == (8, 8)  # decoded to a PIL image


@pytest.mark.slow
def test_imagefolder_export_reads_in_torchvision(curated_home: Path, tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    out = tmp_path / "folders"
    assert (
        main(
            [
                "export",
                "digits",
                "--home",
                str(curated_home),
                "--format",
                "imagefolder",
                "--out",
                str(out),
                "--with-variants",
            ]
        )
        == 0
    )
    train = ImageFolder(str(out / "train"))
    store = Store.open(curated_home)
    curated = store.read("curated_samples", "digits").num_rows
    assert len(train) == curated + store.read("variants", "digits").num_rows  # and its variants
    assert train.classes == [str(k) for k in range(10)]
    assert len(ImageFolder(str(out / "test"))) == 359


@pytest.mark.slow
def test_exports_refuse_foreign_folders_and_survive_failures(
    curated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(curated_home)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="expected an empty folder or an earlier export"):
        export_dataset(store, "digits", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    export_dataset(store, "digits", foreign, force=True)
    train_file = foreign / "data" / "train-00000-of-00001.parquet"
    assert not (foreign / "notes.txt").exists() and train_file.is_file()
    before = {p.name: file_sha256(p) for p in foreign.glob("data/*.parquet")}

    def interrupted(folder: Path, tables: dict, lineage: dict) -> None:
        (folder / "data").mkdir()
        pq.write_table(tables["train"], folder / "data" / "train-00000-of-00001.parquet")
        raise KeyboardInterrupt  # killed halfway through writing

    monkeypatch.setattr(writers_module, "write_parquet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(store, "digits", foreign)
    assert {p.name: file_sha256(p) for p in foreign.glob("data/*.parquet")} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders


@pytest.mark.slow
def test_every_stored_table_carries_the_table_metadata(curated_home: Path) -> None:
    store = Store.open(curated_home)
    tables = sorted(p for p in store.storage_root.glob("*/digits.parquet"))
    assert {p.parent.name for p in tables} >= {
        "raw_samples",
        "curated_dataset",
        "retrained_model",
        "robustness_report",
        "corrupted_test",
    }
    for path in tables:
        meta = read_metadata(pq.read_schema(path))
        assert meta.get("table") == path.parent.name, (path, meta)
        assert {"version", "code_revision", "source", "params"} <= set(meta), path


def test_confident_label_issues_are_repaired_and_reviews_still_win() -> None:
    rows = [
        {"id": "c0", "label": 0, "issue": True},  # confident: relabelled to 1
        {"id": "c1", "label": 0, "issue": True},  # not confident enough: dropped
        {"id": "c2", "label": 0, "issue": True},  # confident, but a review drops it
        {"id": "c3", "label": 1},
    ]
    samples, rpr, quality = _tables(rows)
    quality = quality.append_column("label_quality", pa.array([0.01, 0.3, 0.02, 0.9]))
    quality = quality.append_column("suggested_label", pa.array([1, 1, 1, 1], pa.int64()))
    policy = CurationPolicy(quota_mode="none", relabel_below=0.05)
    reviews = {"c2": Review("c2", "drop", None)}
    result = select_curated(samples, rpr, quality, policy, reviews)
    ledger = {r["sample_id"]: r for r in result.ledger.to_pylist()}
    assert (
        ledger["c0"]["kept"] and ledger["c0"]["new_label"] == 1 and ledger["c0"]["review"] is None
    )
    assert ledger["c1"]["reason"] == "label_issue" and ledger["c1"]["new_label"] is None
    assert ledger["c2"]["reason"] == "review_drop" and ledger["c2"]["new_label"] is None
    kept = result.curated.to_pydict()
    curated = dict(zip(kept["sample_id"], kept["label"], strict=True))
    assert curated == {"c0": 1, "c3": 1}  # the repaired label is the one it trains with
    names = pa.array(["zero" if k == 0 else "one" for k in samples.column("label").to_pylist()])
    named = select_curated(samples.append_column("label_name", names), rpr, quality, policy)
    renamed = named.curated.to_pydict()
    assert dict(zip(renamed["sample_id"], renamed["label_name"], strict=True)) == {
        "c0": "one",  # the repaired label's name, not the old one's (exports name folders so)
        "c2": "one",  # no review here: repaired too
        "c3": "one",
    }
    off = select_curated(samples, rpr, quality, CurationPolicy(quota_mode="none"))
    assert off.ledger.column("reason").to_pylist()[:3] == ["label_issue"] * 3  # default: drop
    with pytest.raises(ValueError, match=r"expected relabel_below in \[0, 1\]"):
        CurationPolicy(relabel_below=1.5)
    with pytest.raises(ValueError, match=r"expected relabel_below in \[0, 1\]"):
        CurationPolicy(relabel_below=float("nan"))  # a launchpad NaN repairs nothing silently
