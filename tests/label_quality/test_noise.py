"""Dirty data with a known answer: confusable-pair flips and cut classes, on digits' labels."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.datasets import load_digits

from robust_data.errors import RobustDataError
from robust_data.label_quality.noise import (
    FASHION_MNIST_CONFUSABLE,
    DirtyOptions,
    cut_classes,
    flip_confusable,
    make_dirty,
    partners,
)

#: Digits that look alike, as a pair map for the tests (the default is Fashion-MNIST's).
DIGIT_PAIRS = ((3, 8), (4, 9), (1, 7), (8, 9))


@pytest.fixture(scope="module")
def digit_labels() -> np.ndarray:
    return load_digits().target.astype(np.int64)  # (1797,), about 180 per class


def test_partners_read_pairs_both_ways() -> None:
    assert partners(DIGIT_PAIRS) == {1: [7], 3: [8], 4: [9], 7: [1], 8: [3, 9], 9: [4, 8]}
    fashion = partners(FASHION_MNIST_CONFUSABLE)
    assert fashion[6] == [0, 2, 4]  # Shirt: T-shirt/top, Pullover, Coat
    assert {1, 3, 8}.isdisjoint(fashion)  # Trouser, Dress, Bag keep their labels


def test_flips_stay_within_pairs_and_hit_the_share_per_class(digit_labels: np.ndarray) -> None:
    state = np.random.get_state()  # noqa: NPY002 (the global RNG must stay untouched)
    noisy, flipped = flip_confusable(digit_labels, 0.2, DIGIT_PAIRS, seed=5)
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # noqa: NPY002
    links = partners(DIGIT_PAIRS)
    totals, flips = Counter(digit_labels.tolist()), Counter(digit_labels[flipped].tolist())
    for cls, total in totals.items():
        assert flips.get(cls, 0) == (round(0.2 * total) if cls in links else 0)
    for true, dirty in zip(digit_labels[flipped], noisy[flipped], strict=True):
        assert dirty in links[int(true)]
    np.testing.assert_array_equal(noisy[~flipped], digit_labels[~flipped])
    again, same = flip_confusable(digit_labels, 0.2, DIGIT_PAIRS, seed=5)
    np.testing.assert_array_equal(again, noisy)
    np.testing.assert_array_equal(same, flipped)
    _, other = flip_confusable(digit_labels, 0.2, DIGIT_PAIRS, seed=6)
    assert (other != flipped).any()
    _, none = flip_confusable(digit_labels, 0.0, DIGIT_PAIRS)
    assert not none.any()


def test_cut_classes_keep_a_tenth_and_every_other_sample(digit_labels: np.ndarray) -> None:
    kept = cut_classes(digit_labels, (2, 5), 0.1, seed=1)
    assert (np.diff(kept) > 0).all()
    before, after = Counter(digit_labels.tolist()), Counter(digit_labels[kept].tolist())
    for cls, total in before.items():
        assert after[cls] == (round(0.1 * total) if cls in (2, 5) else total)
    np.testing.assert_array_equal(kept, cut_classes(digit_labels, (2, 5), 0.1, seed=1))
    tiny = cut_classes(np.array([0, 0, 1, 1, 1]), (0,), 0.01)
    assert tiny.tolist() in ([0, 2, 3, 4], [1, 2, 3, 4])  # at least one sample stays


def test_make_dirty_returns_the_flipped_ids(digit_labels: np.ndarray) -> None:
    ids = [f"digits:train:{i}" for i in range(len(digit_labels))]
    options = DirtyOptions(flip_share=0.2, pairs=DIGIT_PAIRS, cut_classes=(8,), seed=3)
    dirty = make_dirty(digit_labels, ids, options)
    assert len(dirty.ids) == len(dirty.labels) == len(dirty.flipped) == len(dirty.kept)
    assert dirty.ids == [ids[i] for i in dirty.kept]
    np.testing.assert_array_equal(dirty.true_labels, digit_labels[dirty.kept])
    assert Counter(dirty.true_labels.tolist())[8] == round(0.1 * Counter(digit_labels)[8])
    flipped = set(dirty.flipped_ids)
    assert flipped == {i for i, f in zip(dirty.ids, dirty.flipped, strict=True) if f}
    assert all(
        (dirty.labels[k] != dirty.true_labels[k]) == (dirty.ids[k] in flipped)
        for k in range(len(dirty.ids))
    )
    assert make_dirty(digit_labels, ids, options).flipped_ids == dirty.flipped_ids


@pytest.mark.parametrize(
    ("call", "option"),
    [
        (lambda y: flip_confusable(y, 1.5), "flip_share"),
        (lambda y: flip_confusable(y, float("nan")), "flip_share"),
        (lambda y: flip_confusable(y, 0.2, ((1, 1),)), "pairs"),
        (lambda y: flip_confusable(y, 0.2, ((-1, 2),)), "pairs"),
        (lambda y: cut_classes(y, (3,), 0.0), "cut_keep"),
        (lambda y: cut_classes(y, (11,), 0.5), "cut_classes"),
    ],
)
def test_bad_options_are_one_line_errors(digit_labels: np.ndarray, call, option: str) -> None:
    with pytest.raises(RobustDataError) as info:
        call(digit_labels)
    assert info.value.options == (option,) and "\n" not in str(info.value)


def test_ids_must_match_the_labels() -> None:
    with pytest.raises(RobustDataError, match="one sample id per label"):
        make_dirty(np.array([0, 1, 2]), ["a", "b"])
