"""Does the RPR signal find wrong labels? Precision and recall on dirty Fashion-MNIST.

The dirty set of bench/curation_effect.py (500 per class, classes 3 and 8 cut to a tenth, 20%
of the remaining labels flipped within confusable pairs). The product's detector: out-of-fold
predicted probabilities (5 folds x 4 epochs) and cleanlab's ``find_label_issues``
(``prune_by_noise_rate``). The RPR signal: the reference model (trained on the noisy labels,
as the main job trains it) scored with ``pixels`` for up to 250 tries; a point it already
gets wrong flips at try 1. Rules, each label-free (no flipped id is used to fit anything):

``cleanlab``                the product's flags
``cleanlab and fragile``    flags that also flip within ``T`` tries (precision)
``cleanlab or wrong+low``   flags, plus points the reference misclassifies whose out-of-fold
                            probability of the given label is below 0.2 (recall)
``ranked``                  the same number of flags as cleanlab, ranked by out-of-fold
                            self-confidence times the point's RPR survival share (steps/250,
                            1 for a robust point); low first

Prints flagged count, precision and recall against the flipped ids; records the table.

Run: cd bench && ../.venv/bin/python label_issue_rpr.py
"""

from __future__ import annotations

import time
import warnings

import curation_effect as c
import numpy as np
from cleanlab.filter import find_label_issues
from results import cpu_model, record

from robust_data.label_quality.oof import OofOptions, out_of_fold
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.rpr.engine import RprOptions, score_rpr
from robust_data.scoring.training import train_model


def scores(issue: np.ndarray, flipped: np.ndarray) -> list[str]:
    """Flagged, precision, recall of ``issue`` against ``flipped`` (both (N,) bool)."""
    hit = int((issue & flipped).sum())
    return [
        f"{int(issue.sum()):,}",
        f"{hit / max(int(issue.sum()), 1):.3f}",
        f"{hit / flipped.sum():.3f}",
    ]


def main() -> None:
    started = time.perf_counter()
    data = c.load("fashion-dirty")
    train, flipped = data.train, np.asarray(data.flipped, bool)
    reference = train_model(ModelOptions(), train.images, train.labels, 10, progress=False)
    rpr = score_rpr(
        reference.model,
        train.images,
        train.labels,
        train.sample_ids,
        10,
        RprOptions(compile="off"),
        progress=False,
    )
    steps = np.asarray(rpr.steps_to_flip, np.int64)  # 0: robust; 1: already wrong
    wrong = ~np.asarray(rpr.clean_correct, bool)
    oof = out_of_fold(train, 10, reference, OofOptions(), progress=False)
    probs = np.asarray(oof.pred_probs)
    self_confidence = probs[np.arange(len(train)), train.labels]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issue = find_label_issues(train.labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    survival = np.where(steps > 0, steps / 250, 1.0)
    rows = [["cleanlab (prune_by_noise_rate, the product)", *scores(issue, flipped)]]
    for t in (1, 10, 50):
        fragile = (steps > 0) & (steps <= t)
        rows.append([f"cleanlab and flips within {t} tries", *scores(issue & fragile, flipped)])
    rows.append(["reference misclassifies (flips at try 1)", *scores(wrong, flipped)])
    low = wrong & (self_confidence < 0.2)
    rows.append(
        ["cleanlab or (misclassified and self-confidence < 0.2)", *scores(issue | low, flipped)]
    )
    order = np.argsort(self_confidence * survival, kind="stable")
    ranked = np.zeros(len(train), bool)
    ranked[order[: int(issue.sum())]] = True
    rows.append(
        ["ranked by self-confidence x RPR survival, as many as cleanlab", *scores(ranked, flipped)]
    )
    order = np.argsort(self_confidence, kind="stable")
    plain = np.zeros(len(train), bool)
    plain[order[: int(issue.sum())]] = True
    rows.append(["ranked by self-confidence alone, as many as cleanlab", *scores(plain, flipped)])
    minutes = (time.perf_counter() - started) / 60
    summary = (
        f"dirty Fashion-MNIST: {len(train):,} training images, {int(flipped.sum())} labels "
        f"flipped; reference robust fraction {float((steps == 0).mean()):.3f}, misclassifies "
        f"{int(wrong.sum())}; whole run {minutes:.1f} min"
    )
    header = ["rule", "flagged", "precision", "recall"]
    record(
        "Label issues with the RPR signal, dirty Fashion-MNIST",
        f"`bench/label_issue_rpr.py`; CPU {cpu_model()}",
        header,
        rows,
        summary,
    )


if __name__ == "__main__":
    main()
