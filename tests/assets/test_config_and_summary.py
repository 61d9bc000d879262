"""The environment settings and the CLI summary: small and fast (run config: test_config.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assets.resources import Settings
from pipelines.cli.launch import RunOutcome
from pipelines.cli.summary import summary
from robust_data.store.store import Store


def test_settings_come_from_the_environment_with_one_line_errors() -> None:
    assert Settings.from_environ({}) == Settings()
    settings = Settings.from_environ(
        {"ROBUST_DATA_RPR_SHARDS": "4", "ROBUST_DATA_DEVICE": "cpu", "ROBUST_DATA_INBOX": "/x"}
    )
    assert (settings.rpr_shards, settings.device, settings.inbox) == (4, "cpu", "/x")
    with pytest.raises(ValueError, match="expected ROBUST_DATA_MAX_CONCURRENT to be an integer"):
        Settings.from_environ({"ROBUST_DATA_MAX_CONCURRENT": "0"})
    with pytest.raises(ValueError, match="expected ROBUST_DATA_INBOX_SETTLE_SECONDS to be a"):
        Settings.from_environ({"ROBUST_DATA_INBOX_SETTLE_SECONDS": "soon"})
    with pytest.raises(
        ValueError,
        match="expected ROBUST_DATA_EXECUTOR to be one of multiprocess, k8s, celery; found 'dask'",
    ):
        Settings.from_environ({"ROBUST_DATA_EXECUTOR": "dask"})


def test_summary_is_built_from_the_run_metadata(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "home")
    metadata = {
        "raw_samples": {
            "dagster/row_count": 30,
            "rejects": 1,
            "counts": {
                "classes": {"a": 10, "b": 20},
                "splits": {"test": 6, "train": 24},
                "notes": [],
            },
        },
        "reference_model": {
            "test_accuracy": 0.8,
            "train_accuracy": 0.9,
            "arch": "simple_cnn",
            "num_parameters": 1234,
            "train_seconds": 2.5,
            "device": "cpu (fp32)",
            "sha256": "0123456789abcdef",
            "weights": "/w/model.pt",
        },
        "rpr_scores": {
            "robust_fraction_train": 0.5,
            "robust_fraction_test": 0.25,
            "dagster/row_count": 30,
            "scheme": "pixels",
            "max_steps": 250,
            "model_sha256": "0123456789abcdef",
            "device": "cpu (fp32)",
            "shards": 1,
            "robust_fraction_per_class": "![plot](data:...)",  # a plot: not a split's fraction
        },
        "curation_ledger": {
            "kept": 20,
            "dropped": 4,
            "kept_share": 0.8333,
            "dagster/row_count": 24,
            "guard": "passed",
            "reason_counts": {"kept": 20, "label_issue": 4, "outlier": 0},
        },
        "robustness_report": {
            "headline": {"preset": "clean", "seeds": 2, "verdicts": ["curated is ..."]},
            "paper_table": "| model |",
            "report": "/r/report.md",
        },
    }
    text = summary(store, "toy", RunOutcome("abcdef123456", 1.5, ("a guard",), metadata), "job")
    lines = text.splitlines()
    assert lines[0] == "job for dataset 'toy': run abcdef12 succeeded in 1.5 s"
    assert (
        lines[1].startswith("  verdict (preset clean, 2 seeds") and lines[2] == "    curated is ..."
    )
    assert lines[3] == "  warning: a guard"
    assert "  raw_samples: 30 rows, 2 classes (10-20 per class); splits: test 6, train 24" in lines
    assert "  rpr_scores: pixels, max_steps 250: robust fraction train 0.5000, test 0.2500" in lines
    assert "  curated_samples: kept 20 of 24 training samples (dropped: label_issue 4)" in lines
    assert lines[-3:] == [
        "Robustness report for 'toy' (test split):",
        "| model |",
        "Full report: /r/report.md",
    ]
    assert not any(line.startswith("  label_quality") for line in lines)  # not in this run


def test_summary_records_round_trip_through_typed_metadata() -> None:
    from assets.metadata import summary_metadata
    from robust_data.curation.ledger import CurationSummary
    from robust_data.ingest.build import IngestCounts, IngestSummary
    from robust_data.label_quality.assess import LabelQualitySummary
    from robust_data.report.build import ReportHeadline, ReportSummary
    from robust_data.scoring.rpr.score import RprSummary

    records = [
        IngestSummary(rows=30, rejects=1, counts=IngestCounts({"a": 10}, {"train": 30}, ("n",))),
        RprSummary(
            robust_fraction={"train": 0.5, "test": 0.25},
            rows=30,
            scheme="pixels",
            max_steps=250,
            model_sha256="ab",
            device="cpu (fp32)",
        ),
        LabelQualitySummary(label_issues=3, flagged_share=0.1, rows=30),  # no Datalab
        CurationSummary(kept=20, dropped=4, kept_share=0.8333, rows=24, reason_counts={"kept": 20}),
        ReportSummary(
            report="/r/report.md",
            headline=ReportHeadline(preset="clean", seeds=2, verdicts=("curated is ...",)),
            paper_table="| model |",
        ),
    ]
    for record in records:
        metadata = summary_metadata(record)
        values = {key: value.value for key, value in metadata.items()}  # as the CLI reads them
        assert type(record).from_metadata(values) == record
    keys = [list(summary_metadata(record)) for record in records]
    assert keys[0] == ["dagster/row_count", "rejects", "counts"]
    assert keys[1][:3] == ["robust_fraction_train", "robust_fraction_test", "dagster/row_count"]
    assert "outliers" not in keys[2]  # not logged without Datalab
    assert keys[4] == ["report", "headline", "paper_table"]
    assert type(summary_metadata(records[4])["report"]).__name__ == "PathMetadataValue"
    with pytest.raises(ValueError, match="expected the metadata entry 'scheme' of RprSummary"):
        RprSummary.from_metadata({"dagster/row_count": 3})


def test_scoped_environ_restores_what_was_there(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.home import scoped_environ

    monkeypatch.setenv("ROBUST_DATA_HOME", "/before")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with scoped_environ({"ROBUST_DATA_HOME": "/run", "DAGSTER_HOME": "/run/dagster"}):
        assert os.environ["ROBUST_DATA_HOME"] == "/run"
        assert os.environ["DAGSTER_HOME"] == "/run/dagster"
    assert os.environ["ROBUST_DATA_HOME"] == "/before" and "DAGSTER_HOME" not in os.environ
