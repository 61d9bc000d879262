"""Augmentations, attacks, variants and the corruption evaluation suite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robust_data.ingest.arrays import decode_samples
from robust_data.ingest.build import ingest
from robust_data.report.corruption_suite import corruption_accuracy
from robust_data.scoring.models import ModelOptions
from robust_data.scoring.training import train_model
from robust_data.variants.adversarial import attack, parse_attack
from robust_data.variants.augment import APPLY, AUGMENTATIONS, augment, parse_augmentation
from robust_data.variants.make import VARIANTS_SCHEMA, make_variants, parse_transform


@pytest.fixture(scope="module")
def digits():
    samples = ingest("digits", name="digits").samples
    data = decode_samples(samples)
    train = data.where(data.splits == "train")
    model = train_model(ModelOptions(epochs=6), train.images, train.labels, 10, progress=False)
    return samples, data, model


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_augmentations_are_seeded_per_sample(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 16, 12, generator=g)
    ids = [f"a:{i}" for i in range(6)]
    state = torch.random.get_rng_state()
    out = augment(x, name, 3, ids)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(augment(x[2:3], name, 3, ids[2:3]), out[2:3])  # per sample, any batch
    assert torch.equal(augment(x, name, 3, ids), out)
    assert not torch.equal(augment(x, name, 4, ids), out)


def test_every_augmentation_name_has_one_operation() -> None:
    assert set(APPLY) == set(AUGMENTATIONS)


def test_augmentation_and_transform_specs() -> None:
    assert (
        parse_augmentation("rand_augment(num_ops=3)").spec == "rand_augment(magnitude=9, num_ops=3)"
    )
    with pytest.raises(ValueError, match="expected arguments"):
        parse_augmentation("augmix(depth=2)")
    assert parse_transform("fog(severity=2)").kind == "corruption"
    assert parse_transform("pgd(eps=0.1, steps=5)").spec == "pgd(eps=0.1, steps=5, alpha=0.05)"
    assert parse_transform("trivial_augment").kind == "augmentation"
    with pytest.raises(
        ValueError, match=r"expected a corruption .* an augmentation .* or fgsm/pgd"
    ):
        parse_transform("mixup")
    with pytest.raises(ValueError, match="expected 0 < eps <= 1"):
        parse_attack("fgsm(eps=2)")


def test_attacks_stay_in_the_ball_and_hurt_accuracy(digits) -> None:
    _, data, model = digits
    test = data.where(data.splits == "test")
    x, y = torch.from_numpy(test.images.copy()), torch.from_numpy(test.labels.copy())
    clean = float((model.model(x).argmax(1) == y).float().mean())
    accuracies = []
    for spec in ("fgsm(eps=0.1)", "pgd(eps=0.1, steps=10)"):
        adv = attack(model.model, x, y, spec, 0, test.sample_ids)
        assert float((adv - x).abs().max()) <= 0.1 + 1e-6 and float(adv.min()) >= 0
        accuracies.append(float((model.model(adv).argmax(1) == y).float().mean()))
    assert accuracies[0] < clean - 0.1 and accuracies[1] <= accuracies[0]
    again = attack(model.model, x, y, "pgd(eps=0.1, steps=10)", 0, test.sample_ids)
    assert torch.equal(
        again, attack(model.model, x, y, "pgd(eps=0.1, steps=10)", 0, test.sample_ids)
    )


def test_variants_table_ties_every_row_to_its_parent(digits) -> None:
    samples, data, model = digits
    result = make_variants(
        samples,
        ["fog(severity=2)", "augmix", "fgsm(eps=0.05)"],
        seed=1,
        model=model.model,
        progress=False,
    )
    table = result.table
    train = int((data.splits == "train").sum())
    assert table.schema.names == VARIANTS_SCHEMA.names and table.num_rows == 3 * train
    assert result.counts() == {
        "fog(severity=2)": train,
        "augmix(severity=3, width=3)": train,
        "fgsm(eps=0.05)": train,
    }
    rows = table.slice(0, 3).to_pylist()
    parents = dict(
        zip(
            samples.column("sample_id").to_pylist(),
            samples.column("label").to_pylist(),
            strict=True,
        )
    )
    for row in table.select(["parent_sample_id", "label", "variant_id"]).to_pylist():
        assert parents[row["parent_sample_id"]] == row["label"]
    assert rows[0]["variant_id"] == f"{rows[0]['parent_sample_id']}~fog(severity=2)~1"
    assert rows[0]["severity"] == 2 and rows[0]["kind"] == "corruption"
    assert len(set(table.column("variant_id").to_pylist())) == table.num_rows
    assert set(result.examples) == set(result.counts())


def test_corruption_suite_on_digits(digits) -> None:
    _, data, model = digits
    test = data.where(data.splits == "test")
    table = corruption_accuracy(
        model.model,
        test.images,
        test.labels,
        test.sample_ids,
        names=["gaussian_noise", "contrast"],
        progress=False,
        device="cpu",
    )
    rows = table.to_pylist()
    assert [(r["corruption"], r["severity"]) for r in rows][:3] == [
        ("clean", 0),
        ("gaussian_noise", 1),
        ("gaussian_noise", 2),
    ]
    assert len(rows) == 11 and all(r["samples"] == len(test) for r in rows)
    clean = rows[0]["accuracy"]
    expected = float(
        (model.model(torch.from_numpy(test.images.copy())).argmax(1).numpy() == test.labels).mean()
    )
    assert clean == pytest.approx(expected)
    contrast = [r["accuracy"] for r in rows if r["corruption"] == "contrast"]
    assert contrast[-1] < clean  # the heaviest contrast loss hurts
    assert all(r["error"] == pytest.approx(1 - r["accuracy"]) for r in rows)
    with pytest.raises(ValueError, match="expected corruptions from"):
        corruption_accuracy(
            model.model, test.images, test.labels, test.sample_ids, names=["rain"], progress=False
        )
    assert np.isfinite([r["accuracy"] for r in rows]).all()
