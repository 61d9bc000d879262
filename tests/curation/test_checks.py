"""The checks of the curation_ledger table: every input sample accounted for, no class lost."""

from __future__ import annotations

import pyarrow as pa

from robust_data.curation.ledger import LEDGER_SCHEMA, check_class_loss, check_ledger, class_losses


def test_ledger_conservation() -> None:
    ledger = pa.table(
        {
            "sample_id": ["a", "b", "c"],
            "label": [0, 1, 1],
            "kept": [True, False, True],
            "reason": [None, "outlier", None],
            "review": [None, None, "keep"],
            "overridden": [None, None, "label_issue"],
            "new_label": [None, None, None],
        },
        schema=LEDGER_SCHEMA,
    )
    assert check_ledger(ledger, 3, 2).passed
    assert "3 ledger rows for 4 input samples" in check_ledger(ledger, 4, 2).summary()
    assert "2 kept in the ledger but 1 curated" in check_ledger(ledger, 3, 1).summary()


def _ledger(label: int, total: int, drops: dict[str, int]) -> dict[str, list]:
    """Rows of one class: ``total`` samples, the first ones dropped with ``drops``' reasons."""
    reasons = [reason for reason, count in drops.items() for _ in range(count)]
    reasons += [None] * (total - len(reasons))
    return {
        "sample_id": [f"{label}-{i}" for i in range(total)],
        "label": [label] * total,
        "kept": [r is None for r in reasons],
        "reason": reasons,
        "review": ["drop" if r == "review_drop" else None for r in reasons],
        "overridden": [None] * total,
        "new_label": [None] * total,
    }


def _table(*classes: dict[str, list]) -> pa.Table:
    columns = {name: [v for c in classes for v in c[name]] for name in LEDGER_SCHEMA.names}
    return pa.table(columns, schema=LEDGER_SCHEMA)


def test_class_loss_names_the_class_its_counts_and_reasons() -> None:
    ledger = _table(
        _ledger(0, 100, {"outlier": 15, "label_issue": 5}),  # 20%: fails
        _ledger(1, 100, {"outlier": 5}),  # 5%: passes
    )
    outcome = check_class_loss(ledger, names={0: "zero"})
    assert not outcome.passed and len(outcome.problems) == 1
    assert outcome.problems[0].startswith(
        "class zero: dropped 20 of 100 (20.0%): outlier 15, label_issue 5;"
    )
    assert "drop_outliers" in outcome.problems[0]
    assert outcome.metadata["class_loss"] == {"zero": 0.2, "1": 0.05}
    assert outcome.metadata["worst_class_loss"] == 0.2
    assert check_class_loss(ledger, maximum=0.25).passed
    assert "class 0: dropped 20" in check_class_loss(ledger).summary()  # no names: the label


def test_class_loss_at_five_percent_passes() -> None:
    assert check_class_loss(_table(_ledger(3, 40, {"duplicate": 2}))).passed


def test_class_loss_leaves_out_quota_and_review_drops() -> None:
    # A quota evening classes out and a human's drops are intended: they do not count.
    ledger = _table(
        _ledger(0, 100, {"over_quota": 50, "review_drop": 20, "outlier": 10}),
        _ledger(1, 100, {}),
    )
    assert class_losses(ledger) == {0: (100, {"outlier": 10}), 1: (100, {})}
    outcome = check_class_loss(ledger)
    assert outcome.passed and outcome.metadata["class_loss"] == {"0": 0.1, "1": 0.0}
    assert not check_class_loss(ledger, maximum=0.05).passed
