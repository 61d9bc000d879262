"""Presets, variant plans, the equal-budget training sets and the judge, on real digits."""

from functools import cache

import numpy as np
import pyarrow.compute as pc
import pytest

from robust_data.curation.budget import class_quotas, fragility, spread
from robust_data.curation.presets import (
    PRESETS,
    VariantPlan,
    class_weights,
    customized,
    preset,
    preset_from_params,
    preset_params,
)
from robust_data.ingest.arrays import SampleArrays, decode_samples
from robust_data.ingest.build import ingest
from robust_data.report.evaluate import JudgeOptions, compare, held_out_scheme, judge
from robust_data.report.retrain import CuratedInputs, train_on, training_sets, with_variants
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.training import train_model
from robust_data.variants.make import make_variants


@cache
def _digits() -> tuple[SampleArrays, SampleArrays]:
    data = decode_samples(ingest("digits", name="digits").samples)
    return data.where(data.splits == "train"), data.where(data.splits == "test")


def test_focus_spends_more_copies_on_fragile_points() -> None:
    plan = PRESETS["focus"].plan
    copies = plan.copies_per_sample(np.array([1, 125, 250, 0]), 250)
    assert copies.tolist() == [4, 3, 1, 1]  # at once: 1 + 3; halfway: 1 + 2; robust (0): 1
    assert plan.total(np.array([1, 125, 250, 0]), 250) == 9
    with pytest.raises(ValueError, match="expected copies >= 0"):
        VariantPlan(("pixels",), copies=-1)
    with pytest.raises(
        ValueError, match=r"expected a preset in \['clean', 'focus', 'mined', 'paper'\]"
    ):
        preset("robust")


def test_class_quotas_put_the_extra_budget_on_fragile_classes_at_random_within() -> None:
    # Class 0: four robust points; class 1: two points that flip at once, two robust;
    # class 2: one point halfway, three robust. Mean fragility 0, 0.5 and 0.125.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    steps = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 125])
    frail = fragility(steps, 250)
    assert frail[4] == pytest.approx(1 - 1 / 250) and frail[11] == pytest.approx(0.5)
    quotas = class_quotas(labels, frail, class_focus=2)
    assert quotas.tolist() == [0, 8, 2]  # the most fragile class: 2 per sample; class 2 a quarter
    plan = VariantPlan(("pixels",), copies=1, class_focus=2)
    copies = plan.copies_per_sample(steps, 250, labels, seed=0)
    assert copies[:4].tolist() == [1, 1, 1, 1]
    assert copies[4:8].tolist() == [3, 3, 3, 3]  # the quota is spread, not given to the fragile
    assert copies[8:].sum() == 4 + 2 and set(copies[8:].tolist()) <= {1, 2}
    assert plan.copies_per_sample(steps, 250, labels, 0).tolist() == copies.tolist()  # seeded
    assert plan.total(steps, 250, labels, 0) == copies.sum()
    assert class_quotas(labels, np.zeros(12), 2).tolist() == [0, 0, 0]  # nothing fragile
    with pytest.raises(ValueError, match="expected labels for each of 12 samples"):
        plan.copies_per_sample(steps, 250)
    with pytest.raises(ValueError, match="expected candidates >= copies"):
        VariantPlan(("pixels",), copies=1, focus_copies=2, class_focus=6, mining="hard")
    with pytest.raises(ValueError, match="class_focus >= 0"):
        VariantPlan(("pixels",), class_focus=-1)
    with pytest.raises(ValueError, match="expected class_focus <= 16"):
        customized("clean", class_focus=1_000_000)  # no mining to bound it: refused up front


def test_spread_and_class_weights() -> None:
    copies = spread(7, 10, seed=3)
    assert copies.sum() == 10 and set(copies.tolist()) <= {1, 2}
    assert spread(7, 10, seed=3).tolist() == copies.tolist()  # seeded
    weights = class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights[2] == 0 and weights[1] == pytest.approx(3 * weights[0])
    assert weights[:2].mean() == pytest.approx(1.0)


def test_curated_and_random_subset_train_on_the_same_number_of_images() -> None:
    train, _ = _digits()
    rng = np.random.default_rng(0)
    kept = rng.random(len(train)) < 0.6
    steps = rng.integers(0, 251, len(train))
    sets = training_sets(train, kept, steps, PRESETS["focus"], seed=1, classes=10, max_steps=250)
    curated, subset = sets["curated"], sets["random_subset"]
    assert curated.originals == subset.originals == kept.sum()
    assert curated.variants == subset.variants == PRESETS["focus"].plan.total(steps[kept], 250)
    assert sets["all_with_variants"].variants == curated.variants
    assert sets["reference"].variants == 0 and sets["reference"].originals == len(train)
    assert curated.weights is not None and subset.weights is None
    assert curated.images.shape[1:] == train.images.shape[1:]
    assert 0.0 <= curated.images.min() and curated.images.max() <= 1.0
    # A variant differs from its parent (pixels sets some pixels to random values).
    first = int(np.flatnonzero(kept)[0])
    assert not np.array_equal(curated.images[kept.sum()], train.images[first])
    again = training_sets(train, kept, steps, PRESETS["focus"], 1, 10, 250, names=("curated",))
    assert np.array_equal(again["curated"].images, curated.images)  # same seed, same set
    with pytest.raises(ValueError, match="expected kept and steps_to_flip for each of"):
        training_sets(train, kept[:5], steps, PRESETS["focus"], 1, 10, 250)


def test_baselines_match_the_curated_budget_class_by_class_and_mined_needs_the_model() -> None:
    train, _ = _digits()
    rng = np.random.default_rng(1)
    kept = rng.random(len(train)) < 0.7
    steps = rng.integers(0, 251, len(train))
    labels = train.labels.copy()
    repaired = np.flatnonzero(kept & (train.labels == 3))[:5]
    labels[repaired] = 5  # five 3s repaired to 5: curated trains them as 5s
    mined = PRESETS["mined"]
    model = train_model(
        ModelOptions(width=8, epochs=1), train.images, train.labels, 10, progress=False
    )
    sets = training_sets(
        train, kept, steps, mined, 0, 10, 250, inputs=CuratedInputs(labels, model.model)
    )
    curated, subset, every = sets["curated"], sets["random_subset"], sets["all_with_variants"]

    def per_class(training, start: int, stop: int | None) -> np.ndarray:
        return np.bincount(training.labels[start:stop], minlength=10)

    kept_per_class = np.bincount(labels[kept], minlength=10)
    assert per_class(curated, 0, curated.originals).tolist() == kept_per_class.tolist()
    assert per_class(subset, 0, subset.originals).tolist() == kept_per_class.tolist()
    variants = per_class(curated, curated.originals, None)
    assert variants.sum() == mined.plan.total(steps[kept], 250, labels[kept], seed=0)
    assert per_class(subset, subset.originals, None).tolist() == variants.tolist()
    assert per_class(every, every.originals, None).tolist() == variants.tolist()
    drawn = training_sets(
        train, kept, steps, PRESETS["clean"], 0, 10, 250, ("curated",), CuratedInputs(labels)
    )["curated"]
    assert drawn.originals == curated.originals  # same originals, same relabels
    with pytest.raises(ValueError, match="expected the reference model to mine variants"):
        training_sets(train, kept, steps, mined, 0, 10, 250, ("curated",), CuratedInputs(labels))


def test_judge_splits_seen_and_held_out_and_compare_pairs_seeds() -> None:
    train, test = _digits()
    recipe = ModelOptions(width=8, epochs=1)
    assert held_out_scheme(("pixels",)) == "salt_pepper(p=0.05)"
    assert held_out_scheme(("salt_pepper(p=0.1)", "pixels")) == "gaussian(sigma=0.2)"
    options = JudgeOptions(max_steps=20, corruptions=("gaussian_noise", "fog"))
    runs = []
    for seed in (0, 1):
        reference = train_model(recipe, train.images, train.labels, 10, progress=False)
        sets = training_sets(
            train,
            np.ones(len(train), bool),
            np.zeros(len(train), int),
            PRESETS["clean"],
            seed,
            10,
            250,
            names=("curated",),
        )
        models = {
            "reference": reference.model,
            "curated": train_on(sets["curated"], recipe, 10, seed).model,
        }
        judged = judge(models, test, 10, {"gaussian_noise"}, options)
        assert judged["reference"]["mce_held_out"] == pytest.approx(1.0)
        assert judged["reference"]["mce_seen"] == pytest.approx(1.0)
        for metrics in judged.values():
            for name in ("test_accuracy", "robust_fraction", "flip_rate", "flip_rate_held_out"):
                assert 0.0 <= metrics[name] <= 1.0
            assert metrics["worst_class_accuracy"] <= metrics["test_accuracy"]
        runs += [{"seed": seed, "model": m} | v for m, v in judged.items()]
    comparison = compare(runs)
    assert set(comparison.differences) == {"reference"}
    assert comparison.summary["curated"]["robust_fraction"].n == 2
    assert len(comparison.verdicts) == 9 and all(
        v.startswith("curated ") for v in comparison.verdicts
    )


def test_stored_plan_variants_are_the_variants_seed_0_trains_on() -> None:
    """The export carries exactly what the report's curated model of seed 0 saw."""
    raw = ingest("digits", name="digits").samples
    train_table = raw.filter(pc.equal(raw.column("split"), "train")).slice(0, 60)
    train = decode_samples(train_table)
    copies = np.array([0, 1, 3] * 20)
    made = make_variants(train_table, ("pixels",), seed=0, copies=copies, progress=False)
    assert made.table.num_rows == copies.sum()
    ids = made.table.column("variant_id").to_pylist()
    assert f"{train.sample_ids[2]}~pixels~0~2" in ids and len(set(ids)) == len(ids)
    images, labels = with_variants(train, copies, ("pixels",), seed=0)
    stored = decode_samples(
        made.table.select(["variant_id", "split", "label", "image"]).rename_columns(
            ["sample_id", "split", "label", "image"]
        )
    )
    # same order (copy by copy), same pixels up to the PNG's 8-bit rounding
    np.testing.assert_array_equal(stored.labels, labels[len(train) :])
    np.testing.assert_allclose(stored.images, images[len(train) :], atol=0.5 / 255 + 1e-6)
    with pytest.raises(ValueError, match="expected copies: 60 counts >= 0"):
        make_variants(train_table, ("pixels",), copies=np.array([1, 2]), progress=False)


def test_presets_round_trip_through_table_parameters_with_overrides() -> None:
    chosen = customized("focus", dedupe=False, per_class=None)
    assert chosen.policy.dedupe is False and chosen.plan == PRESETS["focus"].plan
    assert preset_from_params(preset_params(chosen)) == chosen
    with pytest.raises(ValueError, match="expected a curation_ledger made with a preset"):
        preset_from_params({"require_correct": True})
    with pytest.raises(ValueError, match="expected CurationPolicy fields"):
        customized("focus", colour="red")
    quotas = customized("mined", class_focus=3)
    assert quotas.plan.class_focus == 3 and quotas.policy == PRESETS["mined"].policy
    assert preset_from_params(preset_params(quotas)) == quotas
    assert "class_focus" not in preset_params(PRESETS["clean"])["plan"]  # as tables before it
    with pytest.raises(ValueError, match=r"expected candidates >= copies \+ focus_copies"):
        customized("mined", class_focus=6)  # 1 + 2 + 6 copies > 8 candidates
