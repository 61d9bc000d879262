"""Which samples the browser shows: :class:`SampleFilter`, parsed from URL parameters.

A filter becomes an SQL condition over the sample index's ``samples`` table with its values as
parameters, never as SQL text. Every URL value is checked here first, with a one-line error
that names the parameter, the range expected and the value found.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from robust_data.errors import DatasetError
from robust_data.ingest.sources.base import MAX_LABEL

#: The largest value each numeric URL or form parameter may take (whole numbers from 0).
INT_LIMITS = {
    "offset": 1_000_000_000,
    "label": MAX_LABEL,
    "suggested_label": MAX_LABEL,
    "new_label": MAX_LABEL,
    "min_steps": 1_000_000_000,
    "max_steps": 1_000_000_000,
    "expected": 1_000_000_000,
}
_WHOLE = re.compile(r"[0-9]{1,20}")
_FRACTION = re.compile(r"[0-9]{0,3}(\.[0-9]{0,12})?")
#: A tag: a letter or digit, then up to 39 letters, digits, spaces, ``_``, ``.`` or ``-``.
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}")


def shown(value: str, limit: int = 60) -> str:
    """A URL value as quoted in a message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _error(expected: str, found: str, fix: str) -> DatasetError:
    return DatasetError(expected, found, fix)


def parse_whole(
    name: str, raw: str, fix: str = "fix the address, or press clear on the filters"
) -> int:
    """A numeric URL or form parameter: a whole number in ``0..INT_LIMITS[name]``.

    Raises
    ------
    DatasetError
        One line naming the parameter, the range expected and the value found.
    """
    high = INT_LIMITS[name]
    value = int(raw) if _WHOLE.fullmatch(raw) else None
    if value is None or value > high:
        raise _error(f"{name} as a whole number in 0..{high:,}", shown(raw), fix)
    return value


def parse_fraction(
    name: str, raw: str, fix: str = "fix the address, or press clear on the filters"
) -> float:
    """A score bound from the URL: a decimal number in [0, 1] (``0.25``, ``1``, ``.5``).

    Raises
    ------
    DatasetError
        One line naming the parameter, the range expected and the value found.
    """
    value = float(raw) if raw not in ("", ".") and _FRACTION.fullmatch(raw) else math.nan
    if not 0.0 <= value <= 1.0:
        raise _error(f"{name} as a number in 0..1", shown(raw), fix)
    return value


def parse_tag(raw: str, fix: str = "type a short tag: letters, digits, space, _ . -") -> str:
    """A tag name (:data:`TAG`), surrounding spaces removed.

    Raises
    ------
    DatasetError
        One line with the tag found and the characters allowed.
    """
    tag = raw.strip()
    if not TAG.fullmatch(tag):
        raise _error("a tag of 1-40 letters, digits, spaces, _ . or -", shown(tag), fix)
    return tag


def parse_box(raw: str) -> tuple[float, float, float, float]:
    """An embedding selection ``x0,y0,x1,y1`` (each in [0, 1]) as (x low, y low, x high, y high).

    Raises
    ------
    DatasetError
        One line when it is not four numbers in [0, 1].
    """
    parts = raw.split(",")
    fix = "drag a box on the embedding page, or press clear"
    if len(parts) != 4:
        raise _error("box as x0,y0,x1,y1 (four numbers in 0..1)", shown(raw), fix)
    x0, y0, x1, y1 = (parse_fraction("box", p.strip(), fix) for p in parts)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


#: Score columns with a range filter and a histogram: URL prefix -> (column, title).
RANGES = {
    "quality": ("label_quality", "label quality (low = likely mislabelled)"),
    "outlier": ("outlier_score", "outlier score (low = atypical)"),
    "steps": ("coalesce(steps_to_flip, max_steps + 1)", "steps to flip (low = fragile)"),
}


@dataclass(frozen=True)
class SampleFilter:
    """Which samples a page shows; None leaves a field unfiltered.

    Attributes
    ----------
    split : str or None
        ``train`` or ``test``.
    label, suggested_label : int or None
        Class index (the stored label; cleanlab's suggestion).
    robust, label_issue, outlier, kept : bool or None
    misclassified : bool or None
        The reference model already gets the unperturbed image wrong (``clean_correct`` false).
    min_steps, max_steps : int or None
        Range of ``steps_to_flip`` (inclusive); a robust sample (no flip) counts as
        ``max_steps`` of its scoring run + 1, so ``min_steps`` keeps it.
    min_quality, max_quality, min_outlier, max_outlier : float or None
        Inclusive ranges in [0, 1] of ``label_quality`` and ``outlier_score`` (low is bad);
        samples without the score (the test split) fail a range.
    group : str or None
        A near-duplicate group (its first sample id).
    reason : str or None
        A ledger reason (``kept`` for kept rows).
    transform : str or None
        Samples with a variant made by this transform spec.
    review : str or None
        The latest review decision (``keep``, ``drop``, ``relabel``) or ``none``.
    tag : str or None
        Samples carrying this tag.
    box : str or None
        ``x0,y0,x1,y1``: samples whose embedding point lies in this box (coordinates in [0, 1]).
    """

    split: str | None = None
    label: int | None = None
    robust: bool | None = None
    misclassified: bool | None = None
    min_steps: int | None = None
    max_steps: int | None = None
    min_quality: float | None = None
    max_quality: float | None = None
    min_outlier: float | None = None
    max_outlier: float | None = None
    label_issue: bool | None = None
    suggested_label: int | None = None
    outlier: bool | None = None
    group: str | None = None
    kept: bool | None = None
    reason: str | None = None
    transform: str | None = None
    review: str | None = None
    tag: str | None = None
    box: str | None = None

    @classmethod
    def from_query(cls, params: dict[str, str]) -> SampleFilter:
        """From URL query parameters: empty values are unset; bools are ``true``/``false``.

        Raises
        ------
        DatasetError
            One line naming the parameter, the value expected and the value found.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = (params.get(f.name) or "").strip()
            if not raw:
                continue
            if f.type == "int | None":
                values[f.name] = parse_whole(f.name, raw)
            elif f.type == "float | None":
                values[f.name] = parse_fraction(f.name, raw)
            elif f.type == "bool | None":
                if raw not in ("true", "false"):
                    raise _error(
                        f"true or false for {f.name}", shown(raw), "pick yes or no in the filters"
                    )
                values[f.name] = raw == "true"
            elif f.name == "box":
                parse_box(raw)
                values[f.name] = raw
            elif f.name == "tag":
                values[f.name] = parse_tag(raw)
            else:
                values[f.name] = raw
        return cls(**values)

    def query(self) -> dict[str, str]:
        """The URL parameters that give this filter back (:meth:`from_query`'s inverse)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out

    def without(self, prefix: str) -> SampleFilter:
        """This filter without the range ``min_<prefix>`` / ``max_<prefix>`` (for its histogram)."""
        return replace(self, **{f"min_{prefix}": None, f"max_{prefix}": None})

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition over ``samples`` (alias-free) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []

        def add(sql: str, *values: Any) -> None:
            clauses.append(sql)
            params.extend(values)

        for name, column in (
            ("split", "split"),
            ("label", "label"),
            ("robust", "robust"),
            ("label_issue", "is_label_issue"),
            ("suggested_label", "suggested_label"),
            ("outlier", "is_outlier"),
            ("group", "near_duplicate_group"),
            ("kept", "kept"),
        ):
            value = getattr(self, name)
            if value is not None:
                add(f"{column} = ?", value)
        if self.misclassified is not None:
            add("(clean_correct = ?)", not self.misclassified)
        for prefix, (column, _) in RANGES.items():
            low, high = getattr(self, f"min_{prefix}"), getattr(self, f"max_{prefix}")
            if low is not None:
                add(f"{column} >= ?", low)
            if high is not None:
                add(f"{column} <= ?", high)
        if self.reason is not None:
            add("coalesce(reason, CASE WHEN kept THEN 'kept' END) = ?", self.reason)
        if self.transform is not None:
            add(
                "sample_id IN (SELECT parent_sample_id FROM variants WHERE transform = ?)",
                self.transform,
            )
        if self.review is not None:
            add("coalesce(review, 'none') = ?", self.review)
        if self.tag is not None:
            add("sample_id IN (SELECT sample_id FROM tags WHERE tag = ?)", self.tag)
        if self.box is not None:
            x0, y0, x1, y1 = parse_box(self.box)
            add(
                "sample_id IN (SELECT sample_id FROM embedding_xy "
                "WHERE x BETWEEN ? AND ? AND y BETWEEN ? AND ?)",
                x0,
                x1,
                y0,
                y1,
            )
        return (" AND ".join(clauses) or "TRUE"), params
