"""The robustness report's metrics on hand-computed fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from robust_data.report.corruption_suite import (
    SUITE_SCHEMA,
    calibration_error,
    mean_corruption_error,
)


def test_ece_matches_a_hand_computation() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [1.0, 0.0]])
    labels = np.array([0, 1, 1, 0, 0])
    # confidences 0.9, 0.8, 0.7, 0.55, 1.0 -> 15 bins of width 1/15:
    # bin 13 [0.867, 0.933): 0.9 correct; bin 12 [0.8, 0.867): 0.8 wrong; bin 10: 0.7 correct;
    # bin 8: 0.55 wrong; bin 14 (1.0 goes to the last bin): correct
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(0 - 0.55) + abs(1 - 1.0)) / 5
    assert calibration_error(probs, labels) == pytest.approx(expected)
    # two samples in one bin: |mean accuracy - mean confidence| weighted by 2/3
    probs = np.array([[0.61, 0.39], [0.62, 0.38], [0.2, 0.8]])
    labels = np.array([0, 1, 1])
    assert calibration_error(probs, labels) == pytest.approx(2 / 3 * abs(0.5 - 0.615) + 1 / 3 * 0.2)
    assert np.isnan(calibration_error(np.zeros((0, 2)), np.zeros(0)))


def _suite(errors: dict[tuple[str, int], float]) -> pa.Table:
    rows = [("clean", 0, 0.1)] + [(c, s, e) for (c, s), e in errors.items()]
    return pa.table(
        {
            "corruption": [r[0] for r in rows],
            "severity": [r[1] for r in rows],
            "accuracy": [1 - r[2] for r in rows],
            "error": [r[2] for r in rows],
            "ece": [0.0] * len(rows),
            "samples": [100] * len(rows),
        },
        schema=SUITE_SCHEMA,
    )


def test_mce_matches_a_hand_computation() -> None:
    reference = _suite({("fog", 1): 0.2, ("fog", 2): 0.4, ("jpeg", 1): 0.1, ("jpeg", 2): 0.1})
    model = _suite({("fog", 1): 0.1, ("fog", 2): 0.2, ("jpeg", 1): 0.2, ("jpeg", 2): 0.2})
    ce, mce = mean_corruption_error(model, reference)
    assert ce == pytest.approx({"fog": 0.3 / 0.6, "jpeg": 0.4 / 0.2})
    assert mce == pytest.approx((0.5 + 2.0) / 2)
    assert mean_corruption_error(reference, reference)[1] == pytest.approx(1.0)


def test_report_on_tiny_models_pairs_seeds_and_reuses_stored_steps(tmp_path: Path) -> None:
    import torch

    from robust_data.ingest.arrays import SampleArrays
    from robust_data.io.files import read_bytes
    from robust_data.report.build import report_from_measurements, write_report
    from robust_data.report.evaluate import JudgeOptions
    from robust_data.report.measure import Candidate, ReportSetup, measure_candidates
    from robust_data.report.table import REPORT_SCHEMA
    from robust_data.scoring.models import ModelOptions, TrainedModel, build_model

    rng = np.random.default_rng(0)
    test = SampleArrays(
        [f"t:{i}" for i in range(12)],
        rng.random((12, 1, 8, 8), dtype=np.float32),
        np.arange(12) % 3,
        np.full(12, "test", dtype=object),
    )
    config = ModelOptions(width=2)
    candidates = []
    for seed in (0, 1):
        for name in ("reference", "curated", "random_subset"):
            torch.manual_seed(seed * 10 + len(name))  # test-only weights; the library never seeds
            model = build_model(config, (1, 8, 8), 3).eval()
            trained = TrainedModel(model, config, (1, 8, 8), 3)
            candidates.append(Candidate(name, seed, trained, f"{name}{seed}", 100))
    judge = JudgeOptions(max_steps=5, corruptions=("gaussian_noise", "fog"), device="cpu")
    setup = ReportSetup("toy", "clean", frozenset({"pixels"}), judge)
    known = {("reference", 0): np.full(12, 3)}  # every point flipped at try 3: robust 0
    measured = measure_candidates(setup, candidates, test, None, known, progress=False)
    report = report_from_measurements(setup, [measured])
    assert report.table.schema.remove_metadata() == REPORT_SCHEMA.remove_metadata()
    assert report.table.num_rows == 6
    rows = {(r["model"], r["seed"]): r for r in report.table.to_pylist()}
    assert rows[("reference", 0)]["robust_fraction"] == 0.0  # the stored steps, not rescored
    assert np.isnan(rows[("reference", 1)]["robust_fraction"])  # the first seed only (default)
    assert rows[("reference", 1)]["mce_held_out"] == pytest.approx(1.0)
    for row in rows.values():
        assert 0.0 <= row["flip_rate"] <= 1.0 and 0.0 <= row["worst_class_accuracy"] <= 1.0
    verdicts = report.verdicts
    assert verdicts[0].startswith("curated ") and "flip_rate" in verdicts[0]  # primary first
    robust = [v for v in verdicts if "robust_fraction" in v]
    assert robust and all("1 seed: no interval" in v for v in robust)
    paired = [v for v in verdicts if v not in robust]
    assert all(v.startswith("curated ") and "(2 seeds" in v for v in paired)
    assert all("Holm-adjusted p" in v for v in paired if "flip_rate:" not in v)
    assert not any("no better than" in v for v in verdicts)
    assert "## Accuracy per class" in report.markdown()
    assert report.markdown().splitlines()[2] == f"- {verdicts[0]}"  # the verdicts come first
    assert {"robustness_curves", "corruption_accuracy"} <= set(report.figures)
    # written to a local folder or to a store URL (fsspec's memory filesystem here)
    local = write_report(report, tmp_path / "reports" / "toy")
    remote = write_report(report, "memory://store/reports/toy")
    assert remote == "memory://store/reports/toy/report.md"
    assert read_bytes(remote) == Path(local).read_bytes() == report.markdown().encode()
    assert read_bytes("memory://store/reports/toy/plots/robustness_curves.png").startswith(
        b"\x89PNG"
    )
    # one evaluation step per model, merged in another order: the same report
    order = [(c.seed, c.name) for c in candidates]
    steps = [
        measure_candidates(setup, [c], test, None, known, progress=False)
        for c in reversed(candidates)
    ]
    fanned = report_from_measurements(setup, steps, order)
    assert fanned.table.schema == report.table.schema  # metadata included
    assert fanned.table.to_pandas().equals(report.table.to_pandas())  # NaN equals NaN here
    assert json.dumps(fanned.document) == json.dumps(report.document)
    assert fanned.markdown() == report.markdown()
    with pytest.raises(ValueError, match=r"expected a reference and a curated model for seed 1"):
        report_from_measurements(setup, steps[:2], order)
    with pytest.raises(ValueError, match=r"expected each \(seed, model\) measured once"):
        report_from_measurements(setup, [*steps, steps[0]], order)


def test_a_models_progress_lines_name_its_step_and_the_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from robust_data.ingest.arrays import SampleArrays
    from robust_data.report.evaluate import JudgeOptions
    from robust_data.report.measure import Candidate, ReportSetup, measure_candidates
    from robust_data.scoring.models import ModelOptions, TrainedModel, build_model

    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the suite turns progress off
    rng = np.random.default_rng(0)
    test = SampleArrays(
        [f"t:{i}" for i in range(6)],
        rng.random((6, 1, 8, 8), dtype=np.float32),
        np.arange(6) % 3,
        np.full(6, "test", dtype=object),
    )
    config = ModelOptions(width=2)
    torch.manual_seed(0)  # test-only weights; the library never seeds
    trained = TrainedModel(build_model(config, (1, 8, 8), 3).eval(), config, (1, 8, 8), 3)
    judge = JudgeOptions(max_steps=3, corruptions=("gaussian_noise",), k=2, device="cpu")
    setup = ReportSetup("toy", "clean", frozenset({"pixels"}), judge)
    candidate = Candidate("curated", 0, trained, "c0", 10)
    measure_candidates(setup, [candidate], test, None, position=(2, 4))
    lines = capsys.readouterr().err.splitlines()  # not a terminal: plain lines
    # every loop of the step says which evaluation and model it is: the suite, both flip
    # rates and the RPR tries
    assert lines and all(line.startswith("[2/4] curated, seed 0: ") for line in lines), lines
    kinds = {line.split(": ")[1] for line in lines}
    assert {"corruption suite", "flips pixels", "rpr pixels"} <= kinds, kinds
    # without a position (a direct call on several models): the models, no [i/n]
    two = [Candidate("reference", 0, trained, "r0", 10), candidate]
    measure_candidates(setup, two, test, None)
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("reference, curated, seed 0: ") for line in lines)
