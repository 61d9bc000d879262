"""Markdown snippets shared by the stages' metadata and reports: inlined images, count tables."""

from __future__ import annotations

import base64
from collections.abc import Mapping

_MARKDOWN_SPECIALS = "\\`*_[]!#"


def markdown_cell(text: object) -> str:
    """``text`` as one literal table cell of a Markdown page (a card on the Hub, the UI).

    Line breaks and tabs become spaces; ``&``, ``<``, ``>`` and ``|`` become entities and
    Markdown's markup characters (``\\ ` * _ [ ] ! #``) are backslash-escaped, so a class named
    ``<img src=x onerror=...>`` or ``![x](http://...)`` shows as typed and runs nothing.
    """
    flat = " ".join(str(text).replace("\r", " ").replace("\t", " ").split("\n"))
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = "".join(f"\\{c}" if c in _MARKDOWN_SPECIALS else c for c in flat)
    return escaped.replace("|", "&#124;")


def inline_png(png: bytes, alt: str) -> str:
    """A markdown image with the PNG inlined (Dagster metadata and report.md show it in place)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def count_table(counts: Mapping[str, int], header: str, unit: str = "rows") -> str:
    """A two-column markdown table: ``header`` | ``unit``, one row per name.

    Counts are right-aligned with thousands separators, in the mapping's order.
    """
    lines = [f"| {header} | {unit} |", "|---|---:|"]
    return "\n".join(lines + [f"| {name} | {count:,} |" for name, count in counts.items()])
