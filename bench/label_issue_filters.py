"""Label-issue precision and recall on dirty Fashion-MNIST: folds, epochs, filters, ensembles.

The dirty set of bench/curation_effect.py (500 per class, classes 3 and 8 cut to a tenth, 20%
of the labels flipped within confusable pairs). For out-of-fold predictions with 5 folds x 4
epochs, 5 x 8 and 10 x 4, every cleanlab ``find_label_issues`` filter, and the mean of the
three as an ensemble: flagged count, precision and recall against the flipped ids. Prints
only.

Run: cd bench && ../.venv/bin/python label_issue_filters.py
"""

import time
import warnings

import curation_effect as c
import numpy as np
from cleanlab.filter import find_label_issues

from robust_data.label_quality.oof import OofOptions, out_of_fold
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.training import train_model

d = c.load("fashion-dirty")
train = d.train
ref = train_model(ModelOptions(), train.images, train.labels, 10, progress=False)


def pr(issue):
    hit = (issue & d.flipped).sum()
    return f"flagged {issue.sum()} P {hit / max(issue.sum(), 1):.3f} R {hit / d.flipped.sum():.3f}"


FILTERS = (
    "prune_by_noise_rate",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "prune_by_class",
)
probs = {}
for folds, epochs in ((5, 4), (5, 8), (10, 4)):
    t = time.time()
    o = out_of_fold(
        train, 10, ref, OofOptions(folds=folds, model=ModelOptions(epochs=epochs)), progress=False
    )
    probs[(folds, epochs)] = o.pred_probs
    print(folds, epochs, "oof s", round(time.time() - t), flush=True)
    for f in (
        "prune_by_noise_rate",
        "both",
        "confident_learning",
        "predicted_neq_given",
        "prune_by_class",
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            issue = find_label_issues(train.labels, o.pred_probs, filter_by=f, n_jobs=1)
        print("  ", f, pr(issue), flush=True)
avg = np.mean(list(probs.values()), axis=0)
for f in ("prune_by_noise_rate", "both", "confident_learning"):
    issue = find_label_issues(train.labels, avg, filter_by=f, n_jobs=1)
    print("ensemble", f, pr(issue), flush=True)
