"""Markdown snippets shared by the stages' metadata and reports: inlined images, count tables."""

from __future__ import annotations

import base64
from collections.abc import Mapping


def inline_png(png: bytes, alt: str) -> str:
    """A markdown image with the PNG inlined (Dagster metadata and report.md show it in place)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def count_table(counts: Mapping[str, int], header: str, unit: str = "rows") -> str:
    """A two-column markdown table: ``header`` | ``unit``, one row per name.

    Counts are right-aligned with thousands separators, in the mapping's order.
    """
    lines = [f"| {header} | {unit} |", "|---|---:|"]
    return "\n".join(lines + [f"| {name} | {count:,} |" for name, count in counts.items()])
