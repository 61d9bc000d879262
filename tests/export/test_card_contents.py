"""Exports that explain themselves (issue 31): the card and lineage say how samples were judged
(from what the stored tables recorded), ship the ledger, show a current robustness report, and
state exactly what the export holds, by the one rule the curate job and ``robust-data export``
share. Small stores: make_store's toy tables, re-made by the real producers (rpr_table,
OofResult.table, cleanlab's assess_labels, apply_preset) with settings no default has."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import robust_data.export.export as export_module
from robust_data.curation.presets import PRESETS, apply_preset, customized, preset_params
from robust_data.errors import DatasetError
from robust_data.export.contents import choose_variants, plan_makes_variants
from robust_data.export.ledger_file import ledger_csv
from robust_data.io.files import read_bytes
from robust_data.label_quality.assess import LabelQualityOptions, assess_labels
from robust_data.label_quality.oof import OofResult
from robust_data.report.render import paper_table_markdown
from robust_data.report.table import REPORT_SCHEMA, headline_verdicts
from robust_data.scoring.rpr.engine import RprResult
from robust_data.scoring.rpr.table import rpr_table
from robust_data.store.schema import table_metadata
from robust_data.store.store import Store
from tests.export.test_readers import _write_variants
from tests.store.test_object_store import s3_store  # noqa: F401  (fixture)
from tests.test_safety_export_query import DATASET, make_store

# make_store: train 0..5 (labels 0 1 0 1 0 1), test 0..3. Out-of-fold predictions: train:4
# (label 0) is predicted 1 with the given label at 0.02, so `mined` repairs it to 1; train:5
# (label 1) is predicted 0 with the given label at 0.4, so it is dropped as a label issue.
PRED_PROBS = [[0.9, 0.1], [0.2, 0.8], [0.9, 0.1], [0.1, 0.9], [0.02, 0.98], [0.6, 0.4]]
LABEL_OPTIONS = LabelQualityOptions("normalized_margin", "predicted_neq_given", datalab=False)


def _rpr(raw: pa.Table) -> pa.Table:
    """rpr_scores as the engine's table: pixels, 7 tries, seed 3; train:1 and test:1 flip."""
    ids = raw.column("sample_id").to_pylist()
    labels = np.asarray(raw.column("label").to_numpy(), np.int64)
    steps = np.asarray([2 if i.endswith(":1") else 0 for i in ids], np.int64)
    result = RprResult(
        clean_pred=labels,
        clean_correct=np.ones(len(ids), bool),
        steps_to_flip=steps,
        flip_pred=np.where(steps > 0, 1 - labels, -1),
        scheme="pixels",
        max_steps=7,
        seed=3,
        device="cpu",
        precision="fp32",
        tries=int(np.where(steps > 0, steps, 7).sum()),
        computed=0,
        seconds=0.0,
    )
    splits = raw.column("split").to_pylist()
    return rpr_table(result, ids, splits, labels, "0" * 64, "raw_samples", {"splits": ["train"]})


def _oof(train: pa.Table) -> pa.Table:
    """oof_predictions as OofResult writes it: 3 folds, seed 7, 2 embedding dimensions."""
    n = train.num_rows
    result = OofResult(
        sample_ids=train.column("sample_id").to_pylist(),
        labels=np.asarray(train.column("label").to_numpy(), np.int64),
        fold=np.arange(n, dtype=np.int32) % 3,
        pred_probs=np.asarray(PRED_PROBS, np.float32),
        embeddings=np.zeros((n, 2), np.float32),
        folds=3,
        warnings=[],
        seconds=0.0,
        train_seconds=0.0,
    )
    return result.table({"seed": 7, "embedding_dim": 2})


@pytest.fixture
def judged(isolated_home: Path) -> Store:
    """A toy store whose scores and curation were made by the real producers: preset
    ``mined`` (its plan makes variants), one sample repaired, one dropped, three variants."""
    store = make_store(Store.open(isolated_home).ensure())
    raw = store.read("raw_samples", DATASET)
    train = raw.filter(pc.equal(raw.column("split"), "train"))
    rpr = _rpr(raw)
    quality = assess_labels(_oof(train), LABEL_OPTIONS).table
    curation = apply_preset(raw, rpr, quality, customized("mined"))
    for name, table in (
        ("rpr_scores", rpr),
        ("oof_predictions", _oof(train)),
        ("label_quality", quality),
        ("curated_samples", curation.curated),
        ("curation_ledger", curation.ledger),
    ):
        store.write(table, name, DATASET)
    _write_variants(store)  # three pixels variants of train:0 and train:1, both kept
    return store


def _card(out: Path) -> str:
    return (out / "README.md").read_text(encoding="utf-8")


def _lineage(out: Path) -> dict[str, Any]:
    return json.loads((out / "lineage.json").read_text(encoding="utf-8"))


def _section(card: str, title: str) -> str:
    """One ``## title`` section of the card, up to the next."""
    start = card.index(f"## {title}\n")
    end = card.find("\n## ", start + 1)
    return card[start : end if end > 0 else None]


# ---------------------------------------------------------------------------------------------
# how samples were judged


def test_card_and_lineage_say_how_samples_were_judged(judged: Store, tmp_path: Path) -> None:
    out = export_module.export_dataset(judged, DATASET, tmp_path / "out").path
    record = _lineage(out)["judged"]
    assert record["rpr"] == {
        "scheme": "pixels",
        "max_steps": 7,
        "seed": 3,
        "device": "cpu",
        "precision": "fp32",
        "splits": ["train"],
    }
    assert record["label_quality"] == {
        "method": "normalized_margin",
        "filter_by": "predicted_neq_given",
        "datalab": False,
    }
    assert record["out_of_fold"] == {"folds": 3, "seed": 7, "embedding_dim": 2, "warnings": []}
    mined = preset_params(PRESETS["mined"])
    assert record["curation"]["preset"] == "mined" and record["curation"]["reviews"] == 0
    assert record["curation"]["plan"] == mined["plan"]
    assert record["curation"]["rules"]["relabel_below"] == 0.05
    assert set(record["curation"]["rules"]) == set(mined) - {"preset", "balance", "plan"}

    judging = _section(_card(out), "How samples were judged")
    assert (
        "`rpr_scores`: scheme `pixels`, max_steps `7`, seed `3`, device `cpu`, "
        'precision `fp32`, splits `["train"]`.'
    ) in judging
    assert (
        "(cleanlab): method `normalized_margin`, filter_by `predicted_neq_given`, datalab `false`:"
    ) in judging
    assert "folds `3`, seed `7`, embedding_dim `2`" in judging
    assert "preset `mined`, balance `weights`, human review decisions applied `0`;" in judging
    assert "relabel_below `0.05`" in judging and "require_robust `false`" in judging
    plan = mined["plan"]
    assert (
        f"**Variant plan** (the preset's): candidates `{plan['candidates']}`, class_focus "
        f"`{plan['class_focus']}`, copies `{plan['copies']}`, focus_copies "
        f"`{plan['focus_copies']}`, mining `hard`, transforms "
        f'`["pixels", "translate(severity=1)"]`. Variants: included.'
    ) in judging
    # nothing from today's defaults: 250 tries, self_confidence, 5 folds are nowhere
    assert "`250`" not in judging and "self_confidence" not in judging and "`5`" not in judging


def test_settings_no_table_recorded_are_said_so(isolated_home: Path, tmp_path: Path) -> None:
    store = make_store(Store.open(isolated_home).ensure())  # no params, no scheme columns
    out = export_module.export_dataset(store, DATASET, tmp_path / "bare").path
    record = _lineage(out)["judged"]
    assert record["rpr"] == record["label_quality"] == record["out_of_fold"] == {}
    judging = _section(_card(out), "How samples were judged")
    assert "- **Robustness (RPR)**, `rpr_scores`: not recorded. Each image" in judging
    assert "(cleanlab): not recorded:" in judging and "judged): not recorded:" in judging
    assert "preset not recorded, balance not recorded, human review decisions applied not" in (
        judging
    )
    assert "recipe not recorded." in judging and "**Variant plan** (the preset's): not" in judging
    assert "Variants: none. The curation's plan makes no variants" in _card(out)

    # an rpr_scores table without parameters: the settings come from its one-valued columns
    raw = store.read("raw_samples", DATASET)
    store.write(_rpr(raw).replace_schema_metadata(None), "rpr_scores", DATASET)
    out = export_module.export_dataset(store, DATASET, tmp_path / "columns").path
    assert _lineage(out)["judged"]["rpr"] == {"scheme": "pixels", "max_steps": 7, "seed": 3}
    judging = _section(_card(out), "How samples were judged")
    assert "`rpr_scores`: scheme `pixels`, max_steps `7`, seed `3`. Each" in judging


# ---------------------------------------------------------------------------------------------
# the ledger


def test_ledger_ships_every_drop_with_its_reason(judged: Store, tmp_path: Path) -> None:
    out = export_module.export_dataset(judged, DATASET, tmp_path / "out").path
    stored = judged.read("curation_ledger", DATASET).to_pylist()
    with (out / "ledger.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["sample_id"] for r in rows] == [r["sample_id"] for r in stored]
    by_id = {r["sample_id"]: r for r in rows}
    assert by_id[f"{DATASET}:train:5"] == {
        "sample_id": f"{DATASET}:train:5",
        "label": "1",
        "label_name": "class 1",
        "kept": "false",
        "reason": "label_issue",
        "review": "",
        "overridden": "",
        "new_label": "",
    }
    assert by_id[f"{DATASET}:train:4"]["kept"] == "true"
    assert by_id[f"{DATASET}:train:4"]["new_label"] == "1"  # repaired: trains as class 1
    assert sum(r["kept"] == "false" for r in rows) == 1

    per_class = _lineage(out)["ledger"]["per_class"]
    assert per_class == {
        "0": {"before": 3, "kept": 3, "dropped": 0, "relabelled": 1, "label_issue": 0},
        "1": {"before": 3, "kept": 2, "dropped": 1, "relabelled": 0, "label_issue": 1},
    }
    ledger = _section(_card(out), "Ledger (input training samples)")
    assert "| label | class | before | kept | dropped | label_issue | relabelled |" in ledger
    assert "| 0 | class 0 | 3 | 3 | 0 | 0 | 1 |" in ledger
    assert "| 1 | class 1 | 3 | 2 | 1 | 1 | 0 |" in ledger
    assert "| | **total** | 6 | 5 | 1 | 1 | 1 |" in ledger
    assert "| label_issue | 1 |" in ledger and "| kept | 5 |" in ledger
    # the hashes cover it, and no Parquet reader of the folder takes it for a split
    lineage = _lineage(out)
    digest = hashlib.sha256((out / "ledger.csv").read_bytes()).hexdigest()
    assert lineage["files"]["ledger.csv"] == digest
    splits = duckdb.sql(
        f"SELECT split, count(*) FROM read_parquet('{out}/**/*.parquet') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert splits == [("test", 4), ("train", lineage["rows"]["train"])]


def test_ledger_csv_cells_are_spreadsheet_safe() -> None:
    ledger = pa.table(
        {
            "sample_id": ["=HYPERLINK(1)", "plain", "x"],
            "label": pa.array([0, 7, 1], pa.int64()),
            "kept": [False, True, True],
            "reason": ["outlier", None, None],
        }
    )  # a ledger from before reviews: no review, overridden, new_label
    text = ledger_csv(ledger, ["@zero", " =5+5"])  # spreadsheets skip leading spaces
    assert text.splitlines() == [
        "sample_id,label,label_name,kept,reason,review,overridden,new_label",
        "'=HYPERLINK(1),0,'@zero,false,outlier,,,",
        "plain,7,7,true,,,,",
        "x,1,' =5+5,true,,,,",
    ]
    from robust_data.curation.reviews_csv import csv_cell, csv_value

    for value in (" =5+5", "' =5", "'x", " x", "-3"):
        assert csv_value(csv_cell(value)) == value  # what import reads back is what was there


# ---------------------------------------------------------------------------------------------
# the robustness report


def _write_report(store: Store, curated_size: int) -> pa.Table:
    """A two-seed robustness_report: curated flips less than the reference on both seeds."""
    rows = []
    for seed in (0, 1):
        for model, flip, size, step in (
            ("reference", 0.5, 6, 0.01),
            ("curated", 0.3, curated_size, 0.03),
        ):
            rows.append(
                {
                    "seed": seed,
                    "model": model,
                    "train_size": size,
                    "flip_rate": flip + step * seed,
                    "test_accuracy": 0.9 - step * seed,
                    "worst_class_accuracy": 0.8 + step * seed,
                    "flip_rate_held_out": flip,
                    "robust_fraction": 0.5,
                    "corruption_accuracy_held_out": 0.7,
                    "corruption_accuracy_seen": float("nan"),
                    "mce_held_out": 1.0 if model == "reference" else 0.8 + 0.01 * seed,
                    "mce_seen": float("nan"),
                    "ece": 0.05,
                    "model_sha256": "1" * 64,
                }
            )
    params = {"preset": "mined", "seeds": 2, "seen": ["pixels"], "judge": {}}
    table = pa.Table.from_pylist(rows, schema=REPORT_SCHEMA).replace_schema_metadata(
        table_metadata("robustness_report", "retrained_model", params)
    )
    store.write(table, "robustness_report", DATASET)
    return table


def test_card_shows_a_current_report_and_says_when_there_is_none(
    judged: Store, tmp_path: Path
) -> None:
    first = export_module.export_dataset(judged, DATASET, tmp_path / "before").path
    assert _lineage(first)["report"] == {"status": "none"}
    assert "robustness_report" not in _lineage(first)["tables"]
    section = _section(_card(first), "Robustness report")
    assert "None yet: no robustness report existed for this dataset" in section
    assert "run `robust-data export` after the job" in section

    report = _write_report(judged, curated_size=8)  # 5 originals + 3 variants, as exported
    out = export_module.export_dataset(judged, DATASET, tmp_path / "after").path
    lineage = _lineage(out)
    verdicts = headline_verdicts(report)
    assert lineage["report"] == {
        "status": "included",
        "report_md": "reports/toy/report.md",
        "preset": "mined",
        "seeds": 2,
        "verdicts": verdicts,
    }
    section = _section(_card(out), "Robustness report")
    assert verdicts[0].startswith("curated is less often flipped") and len(verdicts) == 4
    for line in verdicts:
        assert f"- {line}\n" in section
    assert paper_table_markdown(report) in section and "| curated | 8 |" in section
    assert "(preset `mined`, 2 seeds per model; full report: `reports/toy/report.md`" in section
    assert "Note:" not in section  # the report trained on what this export holds
    entry = lineage["tables"]["robustness_report"]
    stored = judged.home / entry["path"]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == entry["sha256"]

    # originals only: the verdicts describe the curated set with its variants, and it says so
    plain = export_module.export_dataset(judged, DATASET, tmp_path / "plain", with_variants=False)
    section = _section(_card(plain.path), "Robustness report")
    assert (
        "Note: the report's curated models trained on 8 images; this export's train split "
        in (section)
        and "holds 5, so" in section
    )

    # a report older than the curation it would describe is not shown
    curated = judged.table_path("curated_samples", DATASET)
    old = curated.stat().st_mtime - 60
    os.utime(judged.table_path("robustness_report", DATASET), (old, old))
    stale = export_module.export_dataset(judged, DATASET, tmp_path / "stale").path
    assert _lineage(stale)["report"] == {"status": "older"}
    assert "robustness_report" not in _lineage(stale)["tables"]
    section = _section(_card(stale), "Robustness report")
    assert "Not shown: the stored report was written before this curation" in section
    assert verdicts[0] not in _card(stale)


# ---------------------------------------------------------------------------------------------
# one definition of what an export holds


def test_the_plan_decides_the_variants_unless_asked() -> None:
    mined = preset_params(PRESETS["mined"])
    paper = preset_params(PRESETS["paper"])  # no transforms, no copies
    assert plan_makes_variants(mined) and not plan_makes_variants(paper)
    assert not plan_makes_variants({})  # a table made without a preset
    no_copies = {"plan": {**mined["plan"], "copies": 0, "focus_copies": 0, "class_focus": 0}}
    assert not plan_makes_variants(no_copies)
    assert choose_variants(mined, None).status == "included"
    assert choose_variants(mined, False).status == "left out"
    assert choose_variants(paper, None).status == "none"
    assert choose_variants(paper, True).status == "included"
    assert "although the curation's plan makes none" in choose_variants(paper, True).sentence()


def _materialize_export(store: Store) -> None:
    """The curate job's export step, as the job runs it (its default config)."""
    from dagster import DagsterInstance, materialize

    from assets.curation.curated_dataset import curated_dataset
    from assets.resources import HomeResource

    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("datasets", [DATASET])
        result = materialize(
            [curated_dataset],
            partition_key=DATASET,
            resources={"home": HomeResource(path=str(store.home))},
            instance=instance,
        )
    assert result.success


def test_curate_job_and_cli_export_the_same_contents(
    judged: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    _materialize_export(judged)
    job = Path(judged.export_location(DATASET))
    home = ["--home", str(judged.home)]
    assert main(["export", DATASET, *home, "--out", str(tmp_path / "cli")]) == 0
    assert "ledger: " in capsys.readouterr().out
    exports = {"job": _lineage(job), "cli": _lineage(tmp_path / "cli")}
    expected = {
        "variants": "included",
        "train": {"rows": 8, "originals": 5, "variants": 3, "per_transform": {"pixels": 3}},
        "test": {"rows": 4, "originals": 4, "variants": 0, "per_transform": {}},
    }
    for name, lineage in exports.items():
        contents = lineage["contents"]
        found = {"variants": contents["variants"], **contents["splits"]}
        assert found == expected, name
        assert lineage["rows"] == {"train": 8, "test": 4}, name
        assert "variants" in lineage["tables"], name
    holds = {
        name: _section(_card(path), "What this export holds")
        for name, path in (
            ("job", job),
            ("cli", tmp_path / "cli"),
        )
    }
    assert holds["job"] == holds["cli"]
    assert "| train | 8 | 5 | 3 |\n| test | 4 | 4 | 0 |" in holds["job"]
    assert "| train | `pixels` | 3 |" in holds["job"] and "Variants: included." in holds["job"]

    # originals only, asked: the card claims no variants anywhere
    assert (
        main(["export", DATASET, *home, "--out", str(tmp_path / "orig"), "--originals-only"]) == 0
    )
    card, lineage = _card(tmp_path / "orig"), _lineage(tmp_path / "orig")
    assert lineage["rows"] == {"train": 5, "test": 4} and "variants" not in lineage["tables"]
    assert lineage["contents"]["variants"] == "left out"
    assert "| train | 5 | 5 | 0 |" in _section(card, "What this export holds")
    assert "Variants: left out. This export holds originals only" in card
    assert "Variants: included" not in card and "Variants made" not in card
    assert "| transform |" not in card and "| 1 | class 1 | 3 | 0 | 2 | 0 |" in card


def test_export_refuses_missing_planned_variants_before_writing(
    judged: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    (judged.storage_root / "variants" / f"{DATASET}.parquet").unlink()
    out = tmp_path / "out"
    with pytest.raises(DatasetError) as exc:
        export_module.export_dataset(judged, DATASET, out)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(
        f"expected the variants of {DATASET!r} (the curation's variant plan makes them)"
    )
    assert "found no variants table; materialize variants" in message
    assert "--originals-only" in message and not out.exists()
    assert main(["export", DATASET, "--home", str(judged.home), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected the variants of 'toy'" in err, err
    assert not out.exists() and not list(tmp_path.glob(".out*"))  # nothing half-written
    # originals only needs none
    assert export_module.export_dataset(judged, DATASET, out, with_variants=False).rows == {
        "train": 5,
        "test": 4,
    }


def test_report_at_a_store_url_is_dated_there(
    judged: Store,
    s3_store: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """With the tables at a store URL the report's time is the object's (moto's S3 on loopback)."""
    remote = Store.open(judged.home, s3_store)
    for table, files in judged.tables().items():
        for path in files:
            remote.write(pq.read_table(path), table, path.stem)
    first = export_module.export_to_store(remote, DATASET, scratch=tmp_path)
    assert json.loads(read_bytes(f"{first.location}/lineage.json"))["report"]["status"] == "none"
    _write_report(remote, curated_size=8)
    again = export_module.export_to_store(remote, DATASET, scratch=tmp_path)
    lineage = json.loads(read_bytes(f"{again.location}/lineage.json"))
    assert lineage["report"]["status"] == "included" and lineage["rows"]["train"] == 8
    card = read_bytes(f"{again.location}/README.md").decode("utf-8")
    assert all(f"- {line}" in card for line in lineage["report"]["verdicts"])
    assert read_bytes(f"{again.location}/ledger.csv").startswith(b"sample_id,label,label_name,")


def test_class_names_are_shown_as_typed_in_the_card(judged: Store, tmp_path: Path) -> None:
    """The hostile review's class names: HTML, a line break, a pipe, Markdown image syntax."""
    raw = judged.read("raw_samples", DATASET)
    hostile = {0: "<img src=x onerror=alert(1)>", 1: "a\nb | ![x](http://e.example)"}
    names = pa.array([hostile[label] for label in raw.column("label").to_pylist()])
    raw = raw.set_column(raw.schema.get_field_index("label_name"), "label_name", names)
    judged.write(raw, "raw_samples", DATASET)
    card = _card(export_module.export_dataset(judged, DATASET, tmp_path / "out").path)
    body = card.split("\n---\n", 1)[1]  # after the YAML header, which quotes names itself
    assert "<img" not in body and "![x]" not in body
    assert "| 0 | &lt;img src=x onerror=alert(1)&gt; |" in body
    assert "| 1 | a b &#124; \\!\\[x\\](http://e.example) |" in body
    assert not [line for line in body.splitlines() if line.startswith("b |")]  # no row cut


def test_variants_of_an_earlier_curation_are_refused(judged: Store, tmp_path: Path) -> None:
    """The hostile review's kill: curated_samples re-made, variants still the old run's."""
    variants = judged.read("variants", DATASET)
    parents = variants.column("parent_sample_id").to_pylist()
    parents[0] = f"{DATASET}:train:5"  # a sample this curation dropped (a label issue)
    index = variants.schema.get_field_index("parent_sample_id")
    judged.write(
        variants.set_column(index, "parent_sample_id", pa.array(parents)), "variants", DATASET
    )
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="found 1 of 3 variants of samples that curation does"):
        export_module.export_dataset(judged, DATASET, out)
    assert not out.exists()
    originals = export_module.export_dataset(judged, DATASET, out, with_variants=False)
    assert originals.rows["train"] == judged.read("curated_samples", DATASET).num_rows
