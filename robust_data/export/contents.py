"""What an export holds: the one rule for its variants, and the counts its card states.

Every export (the ``curated_dataset`` step, ``robust-data export``, :func:`export_dataset`
called directly) holds the dataset's test split, untouched, and the curated training set as the
curation defined it: the kept originals, plus the kept samples' variants when the curation's
variant plan makes any (:func:`plan_makes_variants`, read from the ``plan`` parameter that
``curated_samples`` records). ``with_variants`` changes that: True adds the stored variants
whatever the plan, False leaves them out (originals only); None, the default everywhere,
follows the plan (:func:`choose_variants`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

#: Plan fields that give a sample copies; with a transform, any of them above 0 makes variants.
COPY_FIELDS = ("copies", "focus_copies", "class_focus")


def plan_makes_variants(params: dict[str, Any]) -> bool:
    """Whether the curation's variant plan (``curated_samples``' recorded ``plan``) makes any.

    Parameters
    ----------
    params : dict
        The table parameters of ``curated_samples`` (its preset); ``{}`` for tables made without
        a preset, whose plan is unknown and taken as none.
    """
    plan = params.get("plan") or {}
    return bool(plan.get("transforms")) and any(int(plan.get(k, 0)) > 0 for k in COPY_FIELDS)


@dataclass(frozen=True)
class VariantChoice:
    """Whether an export's train split holds variants, and why (one sentence for the card).

    Attributes
    ----------
    included : bool
        The kept samples' stored variants are rows of the train split.
    planned : bool
        The curation's plan makes variants (:func:`plan_makes_variants`).
    asked : bool or None
        The caller's ``with_variants``: None followed the plan.
    """

    included: bool
    planned: bool
    asked: bool | None

    @property
    def status(self) -> str:
        """``included``, ``left out`` (planned, not exported) or ``none`` (none planned)."""
        if self.included:
            return "included"
        return "left out" if self.planned else "none"

    def sentence(self) -> str:
        """Why the train split does or does not hold variants, as the card says it."""
        if self.included and self.planned:
            return (
                "Variants: included. The curation's variant plan makes them, and an export holds "
                "the training set as curation defined it: the kept originals and their variants."
            )
        if self.included:
            return (
                "Variants: included, as asked (`--with-variants` / `with_variants=True`), "
                "although the curation's plan makes none: the stored variants of the kept samples."
            )
        if self.planned:
            return (
                "Variants: left out. This export holds originals only (asked with "
                "`--originals-only` / `with_variants=False`); the curation's variant plan was not "
                "applied to these files."
            )
        return "Variants: none. The curation's plan makes no variants; originals only."


def choose_variants(params: dict[str, Any], with_variants: bool | None) -> VariantChoice:
    """The one rule for an export's variants (see the module docs).

    Parameters
    ----------
    params : dict
        ``curated_samples``' table parameters.
    with_variants : bool or None
        None follows the plan; True includes the stored variants; False leaves them out.
    """
    planned = plan_makes_variants(params)
    included = planned if with_variants is None else with_variants
    return VariantChoice(included, planned, with_variants)


def split_counts(tables: dict[str, pa.Table]) -> dict[str, dict[str, Any]]:
    """Per split: ``rows``, ``originals``, ``variants`` and variants ``per_transform``.

    A variant is a row with ``parent_sample_id`` set; its transform is the ``transform`` column.
    """
    counts: dict[str, dict[str, Any]] = {}
    for split, table in tables.items():
        parents = table.column("parent_sample_id").to_pylist()
        transforms = table.column("transform").to_pylist()
        per = Counter(t for p, t in zip(parents, transforms, strict=True) if p is not None)
        variants = sum(per.values())
        counts[split] = {
            "rows": table.num_rows,
            "originals": table.num_rows - variants,
            "variants": variants,
            "per_transform": dict(sorted(per.items())),
        }
    return counts


def contents_record(tables: dict[str, pa.Table], choice: VariantChoice) -> dict[str, Any]:
    """``lineage.json``'s ``contents``: the variants' status and why, the counts per split."""
    return {
        "variants": choice.status,
        "why": choice.sentence(),
        "splits": split_counts(tables),
    }
