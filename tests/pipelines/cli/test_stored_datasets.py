"""Commands on a stored dataset: "did you mean" for a mistyped name, and ``report``'s verdicts,
printed without loading torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.cli.summary import verdict_lines
from robust_data.store.store import Store


def one_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"robust-data {command}: error: expected "), err
    return err.strip()


def test_browse_report_export_and_score_model_suggest_the_closest_stored_dataset(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "digits"]) == 0
    capsys.readouterr()
    out = str(tmp_path / "out")
    commands = {
        "browse": ["browse", "digts"],
        "report": ["report", "digts"],
        "export": ["export", "digts", "--out", out],
        "score-model": ["score-model", "digts"],
        "review": ["review", "export", "digts", str(tmp_path / "r.csv")],
    }
    for command, argv in commands.items():
        assert main(argv) == 1, argv
        line = one_line(capsys, command)
        assert line.endswith(
            f"expected a dataset stored in {isolated_home} (stored: digits); "
            "found 'digts', which is not in this home; did you mean 'digits'?"
        ), line
    # nothing close: the command that would make it, for the command's own tables
    assert main(["browse", "cifar-10"]) == 1
    assert one_line(capsys, "browse").endswith(
        "found 'cifar-10', which is not in this home; "
        "run `robust-data ingest cifar-10` (or curate) with this --home first"
    )
    assert main(["report", "cifar-10"]) == 1
    assert one_line(capsys, "report").endswith(
        "run `robust-data curate --dataset cifar-10` with this --home first"
    )
    # stored but not curated: what is missing, and the curate run that makes it
    assert main(["report", "digits"]) == 1
    assert one_line(capsys, "report").endswith(
        f"expected a curated dataset 'digits' in {isolated_home}; found no robustness_report "
        "for it; run `robust-data curate --dataset digits` with this --home first"
    )
    assert main(["score-model", "digits"]) == 1
    assert "found no reference_model for it; run `robust-data curate" in one_line(
        capsys, "score-model"
    )
    assert main(["export", "digits", "--out", out]) == 1
    assert "found no rpr_scores, label_quality" in one_line(capsys, "export")
    assert not Path(out).exists()
    assert Store.open(isolated_home).datasets() == ["digits"]
    assert Store.open(isolated_home).datasets("robustness_report") == []


def test_report_prints_the_verdicts_and_loads_no_torch(isolated_home: Path) -> None:
    import torch

    from robust_data.ingest.arrays import SampleArrays
    from robust_data.report.build import report_from_measurements
    from robust_data.report.evaluate import JudgeOptions
    from robust_data.report.measure import Candidate, ReportSetup, measure_candidates
    from robust_data.scoring.models import ModelOptions, TrainedModel, build_model

    rng = np.random.default_rng(0)
    test = SampleArrays(
        [f"t:{i}" for i in range(8)],
        rng.random((8, 1, 8, 8), dtype=np.float32),
        np.arange(8) % 3,
        np.full(8, "test", dtype=object),
    )
    config = ModelOptions(width=2)
    candidates = []
    for seed in (0, 1):
        for name in ("reference", "curated"):
            torch.manual_seed(seed * 10 + len(name))  # test-only weights; the library never seeds
            model = TrainedModel(build_model(config, (1, 8, 8), 3).eval(), config, (1, 8, 8), 3)
            candidates.append(Candidate(name, seed, model, f"{name}{seed}", 100))
    judge = JudgeOptions(max_steps=3, corruptions=("gaussian_noise",), k=2, device="cpu")
    setup = ReportSetup("toy", "clean", frozenset({"pixels"}), judge)
    measured = measure_candidates(setup, candidates, test, None, progress=False)
    report = report_from_measurements(setup, [measured])
    Store.open(isolated_home).write(report.table, "robustness_report", "toy")
    # the command in a fresh interpreter: what it prints, and what it imported
    script = (
        "import sys\n"
        "from pipelines.cli import main\n"
        f"code = main(['report', 'toy', '--home', {str(isolated_home)!r}])\n"
        "loaded = [m for m in ('torch', 'torch._inductor', 'scipy.stats', 'matplotlib', 'dagster')"
        " if m in sys.modules]\n"
        "print('exit', code, 'loaded', loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stdout.splitlines()
    assert lines[-1] == "exit 0 loaded []", done.stdout + done.stderr
    # the curate summary's verdict lines (the run's own metadata), then the table and the path
    headline = report.summary("report.md").headline
    expected = verdict_lines("clean", 2, headline.verdicts)
    assert lines[0] == "Robustness report for 'toy' (test split):"
    assert lines[1 : 1 + len(expected)] == expected
    assert expected[0].startswith("  verdict (preset clean, 2 seeds, 95% intervals;")
    assert len(headline.verdicts) == 4 and all("(2 seeds" in v for v in headline.verdicts)
    table = lines[1 + len(expected) :]
    assert table[0] == "| model | training-set size | test accuracy | test robust fraction |"
    assert table[2].startswith("| reference | 100 |") and table[3].startswith("| curated | 100 |")
    assert table[4] == f"Full report: {isolated_home / 'reports' / 'toy'}/report.md"
