"""Hard variants mined by loss, and the random baseline, on real digits with a tiny model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from robust_data.curation.presets import (
    PRESETS,
    VariantOptions,
    VariantPlan,
    plan_variants,
    preset_from_params,
    preset_params,
)
from robust_data.ingest.arrays import decode_samples
from robust_data.ingest.build import ingest
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.rpr.engine import RprOptions, perturbed_at, score_rpr
from robust_data.scoring.rpr.table import rpr_table
from robust_data.scoring.training import train_model
from robust_data.variants.make import VARIANTS_SCHEMA, check_variants, perturb
from robust_data.variants.mining import (
    FlipSource,
    MiningOptions,
    candidate_losses,
    mine,
)

K = 6
RPR = RprOptions(max_steps=40, device="cpu", precision="fp32", compile="off")


@pytest.fixture(scope="module")
def digits():
    """120 training digits, a tiny model trained on all training digits, and their RPR scores."""
    samples = ingest("digits", name="digits").samples
    train_table = samples.filter(pc.equal(samples.column("split"), "train")).slice(0, 120)
    data = decode_samples(samples)
    train = data.where(data.splits == "train")
    model = train_model(ModelOptions(epochs=4), train.images, train.labels, 10, progress=False)
    model.model.eval()
    part = decode_samples(train_table)
    scored = score_rpr(
        model.model, part.images, part.labels, part.sample_ids, 10, RPR, progress=False
    )
    rpr = rpr_table(scored, part.sample_ids, part.splits, part.labels, "sha")
    return train_table, part, model.model, rpr, scored


def _mine(part, model, mode: str, keep: int = 2, flips=None, seed: int = 0):
    counts = np.full(len(part), keep, np.int64)
    options = MiningOptions(mode, K, seed, batch_size=50)
    return mine(
        part.images, part.labels, part.sample_ids, model, ("pixels",), counts, options, flips
    )


def _all_losses(part, model, seed: int = 0) -> torch.Tensor:
    """(N, K) loss of every candidate, regenerated from the plain variants' keyed copies."""
    x = torch.from_numpy(part.images.copy())
    draws = [perturb(x, "pixels", seed * 1009 + j, part.sample_ids) for j in range(K)]
    return candidate_losses(model, torch.stack(draws, 1), torch.from_numpy(part.labels.copy()))


def test_hard_keeps_the_highest_loss_candidates_deterministically(digits) -> None:
    _, part, model, _, _ = digits
    mined = _mine(part, model, "hard")
    again = _mine(part, model, "hard")
    np.testing.assert_array_equal(mined.images, again.images)
    assert mined.variant_ids == again.variant_ids
    assert not np.array_equal(_mine(part, model, "hard", seed=1).images, mined.images)
    losses = _all_losses(part, model).numpy()
    assert len(mined.variant_ids) == 2 * len(part) and len(set(mined.variant_ids)) == len(part) * 2
    for i in range(len(part)):
        kept = mined.candidate[mined.parent == i]
        dropped = np.setdiff1d(np.arange(K), kept)
        assert len(kept) == 2
        assert losses[i, kept].min() >= losses[i, dropped].max() - 1e-5
        np.testing.assert_allclose(mined.loss[mined.parent == i], losses[i, kept], atol=1e-5)
    # each kept candidate is the plain variants' copy j, regenerated from its id alone
    row = int(np.flatnonzero(mined.candidate > 0)[0])
    j, parent = int(mined.candidate[row]), int(mined.parent[row])
    assert mined.variant_ids[row] == f"{part.sample_ids[parent]}~pixels~0~{j}"
    x = torch.from_numpy(part.images[parent : parent + 1].copy())
    regenerated = perturb(x, "pixels", j, [part.sample_ids[parent]])[0].numpy()
    np.testing.assert_array_equal(mined.images[row], regenerated)


def test_random_keeps_as_many_of_the_same_candidates(digits) -> None:
    _, part, model, _, _ = digits
    hard = _mine(part, model, "hard")
    rand = _mine(part, model, "random")
    assert len(rand.variant_ids) == len(hard.variant_ids)
    assert rand.variant_ids == _mine(part, model, "random").variant_ids  # seeded
    assert ((rand.candidate >= 0) & (rand.candidate < K)).all()
    assert np.bincount(rand.parent, minlength=len(part)).tolist() == [2] * len(part)
    assert set(rand.variant_ids) != set(hard.variant_ids)
    losses = _all_losses(part, model).numpy()
    hard_mean = losses[hard.parent, hard.candidate].mean()
    assert hard_mean > losses[rand.parent, rand.candidate].mean()  # mined is harder
    x = torch.from_numpy(part.images.copy())
    every = torch.stack([perturb(x, "pixels", j, part.sample_ids) for j in range(K)], 1).numpy()
    np.testing.assert_array_equal(rand.images, every[rand.parent, rand.candidate])


def test_a_non_robust_sample_keeps_the_perturbation_that_flipped_it(digits) -> None:
    _, part, model, _, scored = digits
    steps = scored.steps_to_flip.astype(np.int64)
    flips = FlipSource(steps, scored.scheme, scored.seed)
    mined = _mine(part, model, "hard", flips=flips)
    assert len(mined.variant_ids) == 2 * len(part)  # the flip takes a kept candidate's place
    fragile = np.flatnonzero((steps > 0) & scored.clean_correct)
    assert len(fragile) > 0
    for i in fragile:
        rows = np.flatnonzero((mined.parent == i) & (mined.candidate == -1))
        assert len(rows) == 1
        row = int(rows[0])
        assert mined.step[row] == steps[i]
        assert mined.variant_ids[row] == f"{part.sample_ids[i]}~pixels~0~try{steps[i]}"
        image = torch.from_numpy(part.images[i].copy())
        expected = perturbed_at(
            image, part.sample_ids[i], scored.scheme, scored.seed, int(steps[i])
        )
        np.testing.assert_array_equal(mined.images[row], expected.numpy())
        with torch.no_grad():
            prediction = int(model(torch.from_numpy(mined.images[row : row + 1])).argmax(1))
        assert prediction != part.labels[i]
    robust = np.flatnonzero(steps == 0)
    assert not np.isin(mined.parent[mined.candidate == -1], robust).any()


def test_plan_default_is_unchanged_and_mining_is_opt_in(digits) -> None:
    train_table, part, model, rpr, scored = digits
    clean = PRESETS["clean"]
    assert clean.plan.mining == "none" and PRESETS["mined"].plan.mining == "hard"
    assert all(p.plan.mining == "none" for name, p in PRESETS.items() if name != "mined")
    plain = plan_variants(train_table, rpr, clean, model=model, max_steps=40, progress=False)
    explicit = plan_variants(
        train_table, rpr, clean, VariantOptions(mining="none"), model, 40, progress=False
    )
    assert plain.table.equals(explicit.table)
    hard = plan_variants(
        train_table, rpr, clean, VariantOptions(mining="hard", candidates=K), model, 40, False
    )
    assert hard.table.schema.names == VARIANTS_SCHEMA.names
    assert hard.table.num_rows == plain.table.num_rows  # same budget: 2 copies per sample
    assert not check_variants(hard.table, train_table).problems
    meta = hard.table.schema.metadata
    assert meta is not None and b'"mining": "hard"' in b"".join(meta.values())
    ids = set(hard.table.column("variant_id").to_pylist())
    fragile = int(np.flatnonzero(scored.steps_to_flip > 0)[0])
    assert f"{part.sample_ids[fragile]}~pixels~0~try{scored.steps_to_flip[fragile]}" in ids
    mined_plan = VariantPlan(("pixels",), copies=2, mining="random", candidates=K)
    rand = plan_variants(
        train_table, rpr, replace(clean, plan=mined_plan), model=model, max_steps=40, progress=False
    )
    assert rand.table.num_rows == plain.table.num_rows
    with pytest.raises(ValueError, match="expected mining in"):
        VariantPlan(("pixels",), copies=2, mining="worst")
    with pytest.raises(ValueError, match="expected candidates >= copies"):
        VariantPlan(("pixels",), copies=2, mining="hard", candidates=1)
    with pytest.raises(ValueError, match="expected the reference model"):
        plan_variants(train_table, rpr, clean, VariantOptions(mining="hard"), None, 40, False)


def test_each_transform_keeps_its_own_count_per_sample(digits) -> None:
    _, part, model, _, _ = digits
    counts = np.arange(len(part)) % 3  # 0, 1 or 2 per sample
    options = MiningOptions("hard", K, 2, batch_size=40)
    transforms = ("pixels", "gaussian(sigma=0.2)")
    mined = mine(part.images, part.labels, part.sample_ids, model, transforms, counts, options)
    assert len(mined.variant_ids) == 2 * counts.sum() and len(set(mined.variant_ids)) == len(
        mined.variant_ids
    )
    for spec in transforms:
        rows = np.array([t == spec for t in mined.transform])
        assert np.bincount(mined.parent[rows], minlength=len(part)).tolist() == counts.tolist()
    with pytest.raises(ValueError, match=r"expected keep: 120 counts in 0\.\.6"):
        mine(part.images, part.labels, part.sample_ids, model, transforms, counts + 5, options)


def test_a_mining_plan_round_trips_through_table_parameters() -> None:
    clean = PRESETS["clean"]
    assert "mining" not in preset_params(clean)["plan"]  # unchanged parameters by default
    plan = VariantPlan(("pixels",), copies=2, mining="hard", candidates=K)
    mined = replace(clean, plan=plan)
    assert preset_params(mined)["plan"]["mining"] == "hard"
    assert preset_from_params(preset_params(mined)) == mined
    assert preset_from_params(preset_params(clean)) == clean


def test_stacked_parts_and_pixels_equal_the_whole_array_operations() -> None:
    """The in-place helpers that bound the variants' memory give numpy's whole-array results."""
    from robust_data.variants.mining import _as_pixels, _stack_parts

    rng = np.random.default_rng(0)
    parts = [rng.uniform(-0.2, 1.2, (n, 3, 5, 4)).astype(np.float32) for n in (7, 1, 12)]
    whole = np.concatenate(parts)
    given = list(parts)
    assert np.array_equal(_stack_parts(given), whole)
    assert given == []  # each part dropped once copied
    expected = (np.clip(whole, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.array_equal(_as_pixels(whole, chunk=5), expected)
