"""The check of the curation_ledger table: every input sample accounted for."""

from __future__ import annotations

import pyarrow as pa

from robust_data.curation.ledger import LEDGER_SCHEMA, check_ledger


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
