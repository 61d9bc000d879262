"""The browser's forms: which samples a post acts on, its checked reviews, the confirm page.

A post names its samples by checkbox (``sample_id``, repeated) or by the grid view it was sent
from (``scope=filter`` and ``view``, the grid's query string, parsed and checked again here).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import TYPE_CHECKING

from starlette.responses import Response

from pipelines.browser_guard import Refused
from robust_data.curation.reviews import DECISIONS, Review, check_reviews
from robust_data.errors import DatasetError, RobustDataError
from robust_data.explore.filters import SampleFilter, parse_whole, shown
from robust_data.explore.sample_index import SORTABLE, SampleIndex

if TYPE_CHECKING:
    from pipelines.browser import Pages

#: Most samples one bulk action may touch (a whole dataset of this size is fine).
MAX_BULK = 100_000


def first_value(form: dict[str, list[str]], name: str, default: str = "") -> str:
    """The first value of a form field (``default`` when absent)."""
    return (form.get(name) or [default])[0]


def parse_view(values: dict[str, str]) -> tuple[SampleFilter, str, bool]:
    """A grid view from URL parameters: its filter, sort column and direction.

    Raises
    ------
    Refused
        400 for a bad filter or sort, in one line.
    """
    try:
        where = SampleFilter.from_query(values)
    except DatasetError as exc:
        raise Refused(400, "Refused: a bad filter", str(exc)) from None
    sort = values.get("sort") or "sample_id"
    if sort not in SORTABLE:
        raise Refused.of(
            400,
            "Refused: a bad sort",
            f"sort by one of {', '.join(SORTABLE)}",
            shown(sort),
            "pick a sort column in the filters",
        )
    return where, sort, values.get("order") == "desc"


def view_query(values: dict[str, str]) -> str:
    """The part of a grid URL that is its view (filters, sort), for links back to it."""
    keep = {k: v for k, v in values.items() if k not in ("dataset", "offset") and v != ""}
    return urllib.parse.urlencode(keep)


def chosen_ids(index: SampleIndex, form: dict[str, list[str]]) -> list[str]:
    """The samples a posted form acts on: the checked ones, or every one matching its view.

    Raises
    ------
    Refused
        400 when none is chosen, or for a bad view; 413 above :data:`MAX_BULK`.
    """
    if first_value(form, "scope") == "filter":
        where, _, _ = parse_view(dict(urllib.parse.parse_qsl(first_value(form, "view"))))
        check_split(index, where)
        ids = index.ids(where, MAX_BULK + 1)
    else:
        ids = list(dict.fromkeys(form.get("sample_id", [])))
    if not ids:
        raise Refused.of(
            400, "Not recorded", "at least one sample", "none checked or matching", "tick one first"
        )
    if len(ids) > MAX_BULK:
        raise Refused.of(
            413,
            "Not recorded: too many samples",
            f"at most {MAX_BULK:,} samples in one action",
            f"more than {MAX_BULK:,} match",
            "narrow the filters first",
        )
    return ids


def form_reviews(index: SampleIndex, form: dict[str, list[str]], ids: list[str]) -> list[Review]:
    """The checked decisions a review form asks for, one per sample.

    Raises
    ------
    Refused
        400 for no decision chosen, a bad label or an unknown sample, in one line.
    """
    decision = first_value(form, "decision")
    if decision not in DECISIONS:
        raise Refused.of(
            400,
            "Not recorded: no decision",
            f"a decision ({', '.join(DECISIONS)})",
            shown(decision) if decision else "none chosen",
            "choose one in the form's decision menu",
        )
    raw_label = first_value(form, "new_label").strip()
    note = first_value(form, "note") or None
    try:
        label = None
        if decision == "relabel" and raw_label:
            label = parse_whole("new_label", raw_label, "pick a label in the form")
        reviews = [Review(i, decision, label, note) for i in ids]
        check_reviews(reviews, index.sample_ids, len(index.class_names))
    except RobustDataError as exc:
        raise Refused(400, "Not recorded: a bad review", str(exc)) from None
    return reviews


def confirm_page(
    pages: Pages,
    index: SampleIndex,
    form: dict[str, list[str]],
    reviews: list[Review],
    next_url: str,
) -> Response:
    """The page that names how many samples a bulk review touches and asks to confirm it."""
    first = reviews[0]
    to = f" to {first.new_label}" if first.decision == "relabel" else ""
    action = f"{first.decision} {len(reviews):,} samples{to}"
    verb = f"{first.decision}{to}"
    scope = first_value(form, "scope", "checked")
    where = "matching the filters" if scope == "filter" else "checked"
    summary = (
        f"Record '{verb}' for all {len(reviews):,} samples {where} in {index.dataset}"
        + (f", with the note {first.note!r}" if first.note else "")
        + ". Each gets its own row in the reviews table; the next curation honours it."
    )
    fields = [
        (name, value)
        for name in ("dataset", "scope", "view", "decision", "new_label", "note", "next", "action")
        for value in form.get(name, [])[:1]
    ]
    if scope != "filter":
        fields += [("sample_id", r.sample_id) for r in reviews]
    fields += [("selection", selection_digest([r.sample_id for r in reviews]))]
    return pages.html(
        "confirm",
        index,
        title="confirm",
        action=action,
        ids=[r.sample_id for r in reviews],
        summary=summary,
        fields=fields,
        next_url=next_url,
    )


def selection_digest(ids: list[str]) -> str:
    """A short digest of which samples a bulk action touches (order-free), for its confirm."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:32]


def check_confirmed(form: dict[str, list[str]], ids: list[str]) -> bool:
    """Whether a bulk action was confirmed for exactly ``ids``; False when not confirmed yet.

    Raises
    ------
    Refused
        409 when it was confirmed for other samples (the filter or the tables changed since
        the confirm page): a different count, or as many but not the same ones.
    """
    confirmed = first_value(form, "confirmed")
    if not confirmed:
        return False
    if confirmed == str(len(ids)) and first_value(form, "selection") == selection_digest(ids):
        return True
    found = (
        f"{len(ids):,} samples match now"
        if confirmed != str(len(ids))
        else "as many samples match now, but not the same ones"
    )
    raise Refused.of(
        409,
        "Not recorded: the selection changed",
        f"the {confirmed} samples you confirmed",
        found,
        "look at the grid again and confirm what it shows now",
    )


def check_split(index: SampleIndex, where: SampleFilter) -> None:
    """Refuse a split filter naming no split of the dataset (400, one line)."""
    splits = index.splits()
    if where.split is not None and where.split not in splits:
        raise Refused.of(
            400,
            "Refused: a bad filter",
            f"split as one of {', '.join(splits)}",
            shown(where.split),
            "pick a split in the filters",
        )
