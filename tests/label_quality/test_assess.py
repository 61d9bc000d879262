"""Label quality: out-of-fold predictions, cleanlab issues and Datalab findings, planted noise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from robust_data.ingest.arrays import decode_samples
from robust_data.ingest.build import ingest
from robust_data.label_quality.assess import (
    LabelQualityOptions,
    assess_labels,
    plant_label_noise,
)
from robust_data.label_quality.embeddings import reference_embeddings
from robust_data.label_quality.oof import (
    OofOptions,
    OofResult,
    fold_count,
    fold_plan,
    merge_folds,
    oof_fold,
    oof_predictions,
    out_of_fold,
)
from robust_data.label_quality.oof_table import matrix_column
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.training import train_model


@pytest.fixture(scope="module")
def digits_train():
    return decode_samples(ingest("digits", name="digits").samples, splits=("train",))


def test_planted_label_noise_on_digits_is_found_well_above_chance(digits_train) -> None:
    noisy, flipped = plant_label_noise(digits_train.labels, 0.10, 10, seed=0)
    data = replace(digits_train, labels=noisy)
    recipe = ModelOptions(epochs=8)
    reference = train_model(recipe, data.images, noisy, 10, progress=False)
    oof = out_of_fold(data, 10, reference, OofOptions(folds=3, model=recipe), progress=False)
    assert oof.folds == 3 and set(oof.fold.tolist()) == {0, 1, 2}
    np.testing.assert_allclose(oof.pred_probs.sum(axis=1), 1.0, rtol=1e-5)
    # every fold holds out about a third of each class
    for k in range(10):
        per_fold = np.bincount(oof.fold[noisy == k], minlength=3)
        assert per_fold.max() - per_fold.min() <= 1
    result = assess_labels(oof.table())
    issue = result.table.column("is_label_issue").to_numpy(zero_copy_only=False)
    precision = (issue & flipped).sum() / issue.sum()
    recall = (issue & flipped).sum() / flipped.sum()
    auroc = roc_auc_score(flipped, -result.table.column("label_quality").to_numpy())
    # chance: precision 0.10 (the noise share), AUROC 0.5
    assert precision >= 0.6 and recall >= 0.6 and auroc >= 0.9, (precision, recall, auroc)
    # a flagged sample's suggestion is its out-of-fold prediction, and it differs from the label
    rows = result.table.filter(result.table.column("is_label_issue")).to_pylist()
    assert all(r["suggested_label"] == r["oof_pred"] != r["given_label"] for r in rows)


def test_embeddings_fitted_on_a_sample_keep_the_geometry_of_the_full_fit(digits_train) -> None:
    model = train_model(
        ModelOptions(epochs=2), digits_train.images, digits_train.labels, 10, progress=False
    ).model
    full = reference_embeddings(model, digits_train.images, OofOptions(embedding_dim=16))
    options = OofOptions(embedding_dim=16, pca_fit_rows=300)  # 300 of 1,438 rows fitted
    sampled = reference_embeddings(model, digits_train.images, options)
    assert sampled.shape == full.shape == (len(digits_train), 16) and sampled.dtype == np.float32
    np.testing.assert_array_equal(
        sampled, reference_embeddings(model, digits_train.images, options)
    )

    # the same neighbourhoods: pairwise distances of 200 rows agree between the two spaces
    def distances(x: np.ndarray) -> np.ndarray:
        return np.linalg.norm(x[:200, None] - x[None, :200], axis=-1)[np.triu_indices(200, 1)]

    assert np.corrcoef(distances(full), distances(sampled))[0, 1] > 0.95
    with pytest.raises(ValueError, match="pca_fit_rows >= 2"):
        OofOptions(pca_fit_rows=1)


def test_oof_table_round_trips_the_matrices() -> None:
    probs = np.array([[0.7, 0.3], [0.2, 0.8]], np.float32)
    result = OofResult(
        ["a", "b"],
        np.array([0, 1]),
        np.array([0, 1], np.int32),
        probs,
        np.arange(6, dtype=np.float32).reshape(2, 3),
        2,
        [],
        0.0,
        0.0,
    )
    table = result.table()
    np.testing.assert_array_equal(matrix_column(table, "pred_probs"), probs)
    assert matrix_column(table, "embedding").shape == (2, 3)


def test_folds_shrink_to_the_smallest_class_or_fail_clearly() -> None:
    labels = np.array([0] * 10 + [1] * 3)
    assert fold_count(labels, 5) == (
        3,
        ["folds reduced from 5 to 3: the smallest class has only 3 training samples"],
    )
    assert fold_count(labels, 2) == (2, [])
    with pytest.raises(
        ValueError,
        match=(
            r"expected at least 2 training samples in every class .* "
            r"found 1 in class\(es\) \[1\]"
        ),
    ):
        fold_count(np.array([0, 0, 0, 1]), 5)
    with pytest.raises(ValueError, match="expected folds >= 2; found 1"):
        OofOptions(folds=1)


def _oof_table(labels: list[int], probs: list[list[float]], embeddings: np.ndarray) -> pa.Table:
    n = len(labels)
    return OofResult(
        [f"s{i}" for i in range(n)],
        np.array(labels),
        np.zeros(n, np.int32),
        np.array(probs, np.float32),
        embeddings.astype(np.float32),
        2,
        [],
        0.0,
        0.0,
    ).table()


def test_assess_labels_flags_a_confident_contradiction_and_groups_duplicates() -> None:
    rng = np.random.default_rng(0)
    n = 120
    labels = [i % 2 for i in range(n)]
    probs = [[0.95, 0.05] if y == 0 else [0.05, 0.95] for y in labels]
    probs[7] = [0.99, 0.01]  # labelled 1, predicted 0 with confidence
    embeddings = rng.normal(size=(n, 8)) * 5
    embeddings[11] = embeddings[10] + 1e-6  # a near-duplicate pair
    result = assess_labels(_oof_table(labels, probs, embeddings))
    rows = result.table.to_pylist()
    assert rows[7]["is_label_issue"] and rows[7]["suggested_label"] == 0
    assert rows[7]["label_quality"] == pytest.approx(0.01, abs=1e-6)
    assert sum(r["is_label_issue"] for r in rows) == 1
    assert rows[10]["near_duplicate_group"] == rows[11]["near_duplicate_group"] == "s10"
    assert rows[0]["near_duplicate_group"] is None
    assert 0 <= min(r["outlier_score"] for r in rows) <= 1
    assert result.class_imbalance["is_issue"] is False
    without = assess_labels(
        _oof_table(labels, probs, embeddings), LabelQualityOptions(datalab=False)
    )
    assert without.table.column("outlier_score").null_count == n


def test_bad_label_quality_input_and_options() -> None:
    with pytest.raises(
        ValueError, match=r"expected labels in \[0, 2\) to match pred_probs; found 0..2"
    ):
        assess_labels(_oof_table([0, 2], [[0.5, 0.5], [0.5, 0.5]], np.zeros((2, 2))))
    with pytest.raises(ValueError, match="expected method in"):
        LabelQualityOptions(method="entropy")
    with pytest.raises(ValueError, match="expected a noise share in"):
        plant_label_noise(np.zeros(4, np.int64), 1.5, 2)


def test_plant_label_noise_flips_exactly_the_share() -> None:
    labels = np.arange(1000) % 10
    noisy, flipped = plant_label_noise(labels, 0.05, 10, seed=3)
    assert flipped.sum() == 50 and (noisy[flipped] != labels[flipped]).all()
    assert (noisy[~flipped] == labels[~flipped]).all() and noisy.max() < 10
    again, _ = plant_label_noise(labels, 0.05, 10, seed=3)
    assert (again == noisy).all()


def test_fold_steps_merged_equal_the_one_process_loop() -> None:
    """One table per fold (as the fold steps make them), in any order, merged: the same
    probabilities, folds and embeddings as oof_predictions in one process."""
    samples = ingest("digits", name="digits").samples
    recipe = ModelOptions(epochs=1)
    data = decode_samples(samples, splits=("train",))
    reference = train_model(recipe, data.images, data.labels, 10, progress=False)
    options = OofOptions(folds=3, model=recipe, embedding_dim=8)
    whole = oof_predictions(samples, reference, options, progress=False)
    plan = fold_plan(samples, options)
    tables = [oof_fold(samples, k, options, progress=False) for k in reversed(range(plan.folds))]
    merged = merge_folds(samples, tables, reference, options)
    assert merged.folds == whole.folds == 3 and merged.sample_ids == whole.sample_ids
    np.testing.assert_array_equal(merged.fold, whole.fold)
    np.testing.assert_array_equal(merged.pred_probs, whole.pred_probs)
    np.testing.assert_array_equal(merged.embeddings, whole.embeddings)
    assert merged.table().equals(whole.table())
    with pytest.raises(ValueError, match=r"expected predictions of folds 0\.\.2 once each"):
        merge_folds(samples, tables[:2], reference, options)
    with pytest.raises(ValueError, match=r"expected a fold in 0\.\.2; found 3"):
        oof_fold(samples, 3, options, progress=False)
