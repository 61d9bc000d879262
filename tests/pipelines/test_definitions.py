"""Dagster: the Definitions load, raw_samples materializes into a temp store and DAGSTER_HOME."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult, materialize

from assets import (
    ALL_ASSETS,
    DATASETS,
    curated_dataset,
    curation_assets,
    label_quality,
    oof_predictions_asset,
    raw_samples_assets,
    reference_model,
    rpr_scores,
)
from assets.resources import ComputeResource, HomeResource, ParquetIOManager
from pipelines.definitions import build_definitions
from robust_data import Store
from robust_data.curation.ledger import LEDGER_SCHEMA, check_class_loss
from robust_data.curation.presets import DEFAULT_PRESET, PRESETS
from robust_data.curation.reviews import REVIEWS_SCHEMA
from robust_data.export.result import FILES_SCHEMA
from robust_data.label_quality.assess import LABEL_QUALITY_SCHEMA
from robust_data.label_quality.oof_table import OOF_SCHEMA
from robust_data.report.retrain import RETRAINED_SCHEMA
from robust_data.report.table import REPORT_SCHEMA
from robust_data.report.testset import CORRUPTED_SCHEMA
from robust_data.scoring.reference import REFERENCE_SCHEMA
from robust_data.scoring.rpr.table import RPR_SCHEMA
from robust_data.store.schema import (
    REJECTS_SCHEMA,
    SAMPLES_SCHEMA,
    descriptions,
    read_params,
)
from robust_data.variants.make import VARIANTS_SCHEMA
from tests.fixtures import make_imagefolder

PROJECT = Path(__file__).resolve().parents[2]

#: Each table asset -> the core Arrow schema of the table it stores (with its column docs).
TABLE_SCHEMAS = {
    "raw_samples": SAMPLES_SCHEMA,
    "ingest_rejects": REJECTS_SCHEMA,
    "reference_model": REFERENCE_SCHEMA,
    "rpr_scores": RPR_SCHEMA,
    "oof_predictions": OOF_SCHEMA,
    "label_quality": LABEL_QUALITY_SCHEMA,
    "variants": VARIANTS_SCHEMA,
    "curated_samples": SAMPLES_SCHEMA,
    "curation_ledger": LEDGER_SCHEMA,
    "corrupted_test": CORRUPTED_SCHEMA,
    "retrained_model": RETRAINED_SCHEMA,
    "robustness_report": REPORT_SCHEMA,
    "reviews": REVIEWS_SCHEMA,
    "curated_dataset": FILES_SCHEMA,
}


def materialize_partition(
    store: Store,
    partition: str,
    config: dict[str, object] | None = None,
    assets: list | None = None,
    ops: dict[str, dict[str, object]] | None = None,
) -> ExecuteInProcessResult:
    """Materialize ``assets`` (default raw_samples) for one partition in the test's DAGSTER_HOME."""
    resources = {
        "io_manager": ParquetIOManager(root=str(store.storage_root)),
        "home": HomeResource(path=str(store.home)),
        "compute": ComputeResource(),
    }
    op_config = {"raw_samples_assets": {"config": config or {}}}
    op_config.update({name: {"config": value} for name, value in (ops or {}).items()})
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("datasets", [partition])
        return materialize(
            assets or [raw_samples_assets],
            partition_key=partition,
            instance=instance,
            resources=resources,
            run_config={"ops": op_config},
            raise_on_error=False,
        )


def _metadata(result: ExecuteInProcessResult, asset: str) -> dict:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(asset)
    ]
    return event.materialization.metadata


def test_definitions_load_with_jobs_and_assets(isolated_home: Path) -> None:
    defs = build_definitions(Store.open(isolated_home))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        "raw_samples",
        "ingest_rejects",
        "reference_model",
        "rpr_scores",
        "oof_predictions",
        "label_quality",
        "variants",
        "curated_samples",
        "curation_ledger",
        "curated_dataset",
        "corrupted_test",
        "retrained_model",
        "robustness_report",
        "reviews",  # external: written by robust-data browse / review import, never by a run
    }
    graph = defs.resolve_asset_graph()
    assert not graph.get(AssetKey("reviews")).is_materializable
    assert AssetKey("reviews") in graph.get(AssetKey("curation_ledger")).parent_keys
    job_keys = defs.resolve_job_def("curation_job").asset_layer.executable_asset_keys
    assert AssetKey("reviews") not in job_keys
    assert defs.resolve_job_def("curation_job").partitions_def == DATASETS
    assert defs.resolve_job_def("ingest_job").name == "ingest_job"
    scoring = defs.resolve_job_def("scoring_job").asset_layer.executable_asset_keys
    assert {k.to_user_string() for k in scoring} == {"reference_model", "rpr_scores"}
    assert [s.name for s in defs.sensors] == ["inbox_sensor"]
    assert [s.name for s in defs.schedules] == ["curation_schedule"]


def test_every_table_asset_declares_its_core_columns(isolated_home: Path) -> None:
    """The UI's column schema of each table asset is the core Arrow schema, with its docs."""
    graph = build_definitions(Store.open(isolated_home)).resolve_asset_graph()
    declared = {
        key.to_user_string(): graph.get(key).metadata["dagster/column_schema"]
        for key in graph.get_all_asset_keys()
        if "dagster/column_schema" in graph.get(key).metadata
    }
    # curated_dataset's file table is declared in assets/curation/curated_dataset.py, not yet here
    assert set(declared) == set(TABLE_SCHEMAS)
    for name, schema in TABLE_SCHEMAS.items():
        columns = declared[name].columns
        assert [c.name for c in columns] == schema.names, name
        assert [c.type for c in columns] == [str(f.type) for f in schema], name
        assert {c.name: c.description for c in columns} == descriptions(schema), name


def test_every_asset_says_what_a_row_is(isolated_home: Path) -> None:
    """Each description names its rows ("one row per ...") in at most three sentences."""
    graph = build_definitions(Store.open(isolated_home)).resolve_asset_graph()
    for name in TABLE_SCHEMAS:
        description = graph.get(AssetKey(name)).description or ""
        assert "row" in description and description.count(". ") <= 2, name


@pytest.mark.slow
def test_workspace_yaml_loads_the_code_location() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "robust_data" in result.stdout + result.stderr


def test_materialize_raw_samples_into_temp_home(isolated_home: Path) -> None:
    store = Store.open(isolated_home)
    result = materialize_partition(store, "digits")
    assert result.success
    metadata = _metadata(result, "raw_samples")
    assert metadata["dagster/row_count"].value == 1797
    assert {r.data["class"]: r.data["samples"] for r in metadata["class_counts"].records}[
        "0"
    ] == 178
    assert {"split": "test", "samples": 359} in [r.data for r in metadata["split_counts"].records]
    assert metadata["num_classes"].value == 10 and metadata["smallest_class"].value == 174
    assert metadata["preview"].value.startswith("![preview")
    path = Path(metadata["path"].value)
    assert path == store.table_path("raw_samples", "digits")
    assert pq.read_metadata(path).num_rows == 1797
    assert pq.read_metadata(store.table_path("ingest_rejects", "digits")).num_rows == 0


def test_failed_ingestion_leaves_nothing_in_the_store(isolated_home: Path, tmp_path: Path) -> None:
    store = Store.open(isolated_home)
    root = make_imagefolder(tmp_path / "solo", {"cat": 3})
    result = materialize_partition(store, "solo", {"source": f"imagefolder:{root}"})
    assert not result.success
    assert list(store.storage_root.rglob("*")) == []


def test_unregistered_partition_fails_with_the_fix(isolated_home: Path) -> None:
    result = materialize_partition(Store.open(isolated_home), "mystery")
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "register it first" in str(failure.step_failure_data.error.to_string())


@pytest.mark.slow
def test_whole_graph_materializes_on_digits(isolated_home: Path) -> None:
    store = Store.open(isolated_home)
    result = materialize_partition(
        store,
        "digits",
        assets=list(ALL_ASSETS),
        ops={
            "reference_model": {"epochs": 2},
            "rpr_scores": {"max_steps": 40},
            "oof_predictions": {"folds": 3},
            "corrupted_test": {"corruptions": ["gaussian_noise", "contrast"]},
            "retrained_model": {"seeds": 2},
        },
    )
    assert result.success
    model_meta = _metadata(result, "reference_model")
    assert 0.5 < model_meta["test_accuracy"].value <= 1.0
    weights = Path(model_meta["weights"].value)
    assert weights == store.storage_root / "reference_model" / "digits.pt" and weights.is_file()
    meta = _metadata(result, "rpr_scores")
    assert meta["dagster/row_count"].value == 1797
    for plot in ("robustness_curve", "robust_fraction_per_class", "examples"):
        assert meta[plot].value.startswith("![") and "data:image/png;base64," in meta[plot].value
    scores = store.read("rpr_scores", "digits")
    assert scores.column("model_sha256").unique().to_pylist() == [model_meta["sha256"].value]
    assert scores.column("max_steps").unique().to_pylist() == [40]
    for split in ("train", "test"):
        rows = scores.filter(pc.equal(scores.column("split"), split))
        fraction = pc.mean(rows.column("robust").cast("int8")).as_py()
        assert meta[f"robust_fraction_{split}"].value == pytest.approx(fraction, abs=1e-4)
    steps = scores.column("steps_to_flip")
    assert steps.null_count == pc.sum(scores.column("robust").cast("int64")).as_py()
    assert pc.min(steps).as_py() >= 1 and pc.max(steps).as_py() <= 40
    # label quality: every training sample, out-of-fold, with its metadata
    oof_meta = _metadata(result, "oof_predictions")
    assert oof_meta["dagster/row_count"].value == 1438 and oof_meta["folds"].value == 3
    assert oof_meta["fold_train_seconds"].value > 0
    quality_meta = _metadata(result, "label_quality")
    quality = store.read("label_quality", "digits")
    assert quality.num_rows == 1438
    assert quality_meta["label_issues"].value == sum(quality.column("is_label_issue").to_pylist())
    given = quality.column("given_label").to_numpy()
    issues_0 = sum(
        quality.filter(pc.equal(quality.column("given_label"), 0))
        .column("is_label_issue")
        .to_pylist()
    )
    per_class = quality_meta["issues_per_class"].records[0].data
    assert per_class["class"] == "0" and per_class["samples"] == (given == 0).sum()
    assert per_class["label_issues"] == issues_0
    assert "data:image/png;base64," in quality_meta["most_suspect"].value
    assert set(quality_meta["class_imbalance"].value) == {
        "is_issue",
        "score",
        "rarest_class",
        "threshold",
    }
    train_ids = set(
        scores.filter(pc.equal(scores.column("split"), "train")).column("sample_id").to_pylist()
    )
    assert set(quality.column("sample_id").to_pylist()) == train_ids
    # curation: the default preset, recorded in the tables it made
    ledger = store.read("curation_ledger", "digits")
    assert read_params(ledger.schema)["preset"] == DEFAULT_PRESET
    assert _metadata(result, "curated_samples")["preset"].value == DEFAULT_PRESET
    kept_ids = [r["sample_id"] for r in ledger.to_pylist() if r["kept"]]
    # variants: the preset's plan, more copies for fragile kept points, with a gallery
    plan = PRESETS[DEFAULT_PRESET].plan
    train_steps = dict(zip(scores.column("sample_id").to_pylist(), steps.to_pylist(), strict=True))
    curated_train = store.read("curated_samples", "digits")
    curated_train = curated_train.filter(pc.equal(curated_train.column("split"), "train"))
    assert curated_train.column("sample_id").to_pylist() == kept_ids
    kept_steps = np.array([train_steps[i] or 0 for i in kept_ids])
    kept_labels = curated_train.column("label").to_numpy()  # as curated (repairs included)
    copies = plan.copies_per_sample(kept_steps, 40, kept_labels, seed=0)
    made = store.read("variants", "digits")
    assert made.num_rows == plan.total(kept_steps, 40, kept_labels, seed=0)
    assert made.num_rows == copies.sum() * len(plan.transforms) > len(kept_ids)
    assert set(made.column("parent_sample_id").to_pylist()) <= set(kept_ids)
    variant_meta = _metadata(result, "variants")
    per_transform = {
        r.data["transform"]: r.data["variants"] for r in variant_meta["per_transform"].records
    }
    assert per_transform == {t: copies.sum() for t in plan.transforms}  # flips count as pixels
    assert "data:image/png;base64," in variant_meta["gallery"].value
    # every table's checks ran and passed; the conservation check counted the ledger
    checks = {
        (c.asset_key.to_user_string(), c.check_name): c
        for c in result.get_asset_check_evaluations()
    }
    guards = {
        ("curation_ledger", "kept_share"),
        ("curation_ledger", "class_loss"),
        ("retrained_model", "accuracy_loss"),
    }
    assert len(checks) == 16 and all(c.passed for k, c in checks.items() if k not in guards)
    check = checks[("curation_ledger", "conservation")]
    assert check.metadata["ledger_rows"].value == 1438
    # the guards warn without stopping the run
    kept_share = len(kept_ids) / ledger.num_rows
    guard = checks[("curation_ledger", "kept_share")]
    assert guard.passed == (kept_share >= 0.5) and guard.severity.value == "WARN"
    assert guard.metadata["kept_share"].value == pytest.approx(kept_share, abs=1e-4)
    loss = checks[("curation_ledger", "class_loss")]
    assert loss.passed == check_class_loss(ledger).passed and loss.severity.value == "WARN"
    retrained = store.read("retrained_model", "digits").to_pylist()
    mean = {
        m: np.mean([r["test_accuracy"] for r in retrained if r["model"] == m])
        for m in {r["model"] for r in retrained}
    }
    worst = max(mean["reference"] - v for m, v in mean.items() if m != "reference")
    assert checks[("retrained_model", "accuracy_loss")].passed == (worst <= 0.01)
    curated = store.read("curated_samples", "digits")
    assert len(kept_ids) == curated.num_rows == check.metadata["curated_rows"].value
    # the export holds the kept samples and exactly the variants the report's curated model saw
    exported = store.home / "exports" / "digits" / "data"
    export = pq.read_table(exported / "train-00000-of-00001.parquet")
    assert export.num_rows == curated.num_rows + made.num_rows
    # retraining: two seeds of four training sets; seed 0's reference is the stored model
    assert [(r["seed"], r["model"]) for r in retrained] == [
        (s, m)
        for s in (0, 1)
        for m in ("reference", "curated", "random_subset", "all_with_variants")
    ]
    by = {(r["seed"], r["model"]): r for r in retrained}
    assert by[(0, "reference")]["sha256"] == model_meta["sha256"].value
    for seed in (0, 1):
        assert by[(seed, "curated")]["train_size"] == export.num_rows
        assert by[(seed, "random_subset")]["train_size"] == export.num_rows  # equal budget
        assert by[(seed, "all_with_variants")]["variants"] == made.num_rows
        assert by[(seed, "all_with_variants")]["originals"] == 1438
    # the report: verdicts first, every section, numbers that match the tables they came from
    report_dir = store.home / "reports" / "digits"
    markdown = (report_dir / "report.md").read_text()
    head = markdown.splitlines()
    assert head[0] == "# Robustness report: digits" and head[2].startswith("- curated ")
    for section in (
        "## Models (mean [95% interval] over seeds)",
        "## Accuracy per class",
        "## The paper's table",
        "## RPR robustness curves",
        "## Corruption error",
    ):
        assert section in markdown
    assert (report_dir / "plots" / "robustness_curves.png").is_file()
    document = json.loads((report_dir / "report.json").read_text())
    # pixels (the scoring scheme) and translate are the variants: held-out RPR uses salt_pepper;
    # both corruptions of the suite are held out, none seen, so mce_seen has no verdict
    assert document["judge"]["held_out_scheme"].startswith("salt_pepper")
    assert document["seen"] == ["pixels", "translate"] and document["seeds"] == 2
    # 8 metrics per baseline (no mce_seen); the flip rate, primary, first and not adjusted
    assert len(document["verdicts"]) == 3 * 8
    assert not any("mce_seen" in v for v in document["verdicts"])
    first = document["verdicts"][0]
    assert ("flip_rate:" in first or "flipped by the scoring" in first) and "Holm" not in first
    robust_lines = [v for v in document["verdicts"] if "robust_fraction" in v]
    assert len(robust_lines) == 3 and all("1 seed: no interval" in v for v in robust_lines)
    report_meta = _metadata(result, "robustness_report")
    # the headline verdict (in place), the curves as a table and a figure, every verdict, then
    # the typed summary numbers, then the models table, then the other plot
    order = list(report_meta)
    assert order[:4] == ["verdict", "robustness_curves_table", "robustness_curves", "verdicts"]
    assert order.index("curated_test_accuracy") < order.index("models")
    assert order.index("models") < order.index("corruption_accuracy")
    assert report_meta["verdicts"].value.splitlines()[0] == f"- {document['verdicts'][0]}"
    headline = report_meta["headline"].value["verdicts"]
    assert report_meta["verdict"].value.splitlines()[0] == f"- {headline[0]}"
    curated_accuracy = document["summary"]["curated"]["test_accuracy"][0]
    assert report_meta["curated_test_accuracy"].value == pytest.approx(curated_accuracy, abs=1e-4)
    # one row per metric, one column per model (narrow enough for the asset page)
    metrics = {r.data["metric"]: r.data for r in report_meta["models"].records}
    columns = [c.name for c in report_meta["models"].schema.columns]
    assert columns == ["metric", "reference", "curated", "random_subset", "all_with_variants"]
    assert metrics["mce_seen ↓"]["curated"] is None  # NaN: no corruption was used as a variant
    assert metrics["train_size"]["curated"] == export.num_rows
    test_scores = scores.filter(pc.equal(scores.column("split"), "test"))
    robust = pc.mean(test_scores.column("robust").cast("int8")).as_py()
    table = store.read("robustness_report", "digits")
    rows = {(r["seed"], r["model"]): r for r in table.to_pylist()}
    assert rows[(0, "reference")]["robust_fraction"] == pytest.approx(robust)  # stored, reused
    assert np.isnan(rows[(1, "curated")]["robust_fraction"])  # 250 tries on seed 0 only
    assert all(
        0 <= r["flip_rate"] <= 1 and 0 <= r["flip_rate_held_out"] <= 1 for r in rows.values()
    )
    assert all(rows[(s, "reference")]["mce_held_out"] == pytest.approx(1.0) for s in (0, 1))
    assert np.isnan(rows[(0, "curated")]["mce_seen"])
    assert read_params(table.schema)["preset"] == DEFAULT_PRESET
    for entry in document["seed0"].values():
        assert len(entry["suite"]) == 1 + 5 + 5  # clean, and two corruptions at five severities


def test_tables_go_to_an_fsspec_url(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ROBUST_DATA_STORE=memory://... : the IO manager writes and reads the tables there."""
    import fsspec

    from pipelines.cli import main

    monkeypatch.setenv("ROBUST_DATA_STORE", "memory://robust-data-test/tables")
    assert main(["ingest", "digits", "--home", str(isolated_home)]) == 0
    assert "memory://robust-data-test/tables/raw_samples/digits.parquet" in capsys.readouterr().out
    fs = fsspec.filesystem("memory")
    assert fs.exists("/robust-data-test/tables/raw_samples/digits.parquet")
    store = Store.open(isolated_home)
    assert store.tables_url == "memory://robust-data-test/tables"
    assert (
        store.has("raw_samples", "digits") and store.read("raw_samples", "digits").num_rows == 1797
    )
    assert not (store.storage_root / "raw_samples").exists()  # nothing written locally
    with pytest.raises(ValueError, match="expected tables in a local folder"):
        store.table_path("raw_samples", "digits")
    fs.rm("/robust-data-test", recursive=True)


def test_failing_blocking_check_stops_downstream(isolated_home: Path) -> None:
    """No quota and a zero balance tolerance: class_balance fails, nothing downstream is built."""
    store = Store.open(isolated_home)
    result = materialize_partition(
        store,
        "digits",
        assets=[
            raw_samples_assets,
            reference_model,
            rpr_scores,
            oof_predictions_asset,
            label_quality,
            curation_assets,
            curated_dataset,
        ],
        ops={
            "reference_model": {"epochs": 1},
            "rpr_scores": {"max_steps": 5},
            "oof_predictions": {"folds": 2, "epochs": 1},
            "curation_assets": {"quota_mode": "none", "balance_tolerance": 0.0},
        },
    )
    assert not result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["class_balance"].passed and checks["conservation"].passed
    assert "above the policy's tolerance 0" in checks["class_balance"].description
    built = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "curated_samples" in built and "curated_dataset" not in built
    assert not (store.home / "exports" / "digits").exists()


def test_executor_comes_from_the_environment(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(isolated_home)
    job = build_definitions(store).resolve_job_def("curation_job")
    assert job.executor_def.name == "multiprocess"
    monkeypatch.setenv("ROBUST_DATA_EXECUTOR", "dask")
    with pytest.raises(
        ValueError, match="expected ROBUST_DATA_EXECUTOR to be one of multiprocess, k8s, celery"
    ):
        build_definitions(store)
    monkeypatch.setenv("ROBUST_DATA_EXECUTOR", "celery")
    assert build_definitions(store).resolve_job_def("curation_job").executor_def.name == "celery"
    monkeypatch.setenv("ROBUST_DATA_EXECUTOR", "k8s")
    try:
        import dagster_k8s  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"pip install -c constraints.txt '\.\[k8s\]'"):
            build_definitions(store)
    else:  # pragma: no cover - dagster-k8s is not a dependency here
        job = build_definitions(store).resolve_job_def("curation_job")
        assert job.executor_def.name == "k8s"


def test_a_step_process_imports_no_library_it_may_not_use() -> None:
    """Loading the code location (what every step process of ``--workers N`` does first)
    leaves cleanlab, scikit-learn, torchvision and inductor to the steps that use them: each
    took seconds to import (issue 32)."""
    heavy = ["cleanlab", "sklearn", "torchvision", "torch._inductor.config"]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, pipelines.definitions; print([m for m in {heavy!r} if m in sys.modules])",
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout
