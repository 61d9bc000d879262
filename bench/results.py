"""Shared by the benchmarks: print a section and append it to bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def record(title: str, what: str, header: list[str], rows: list[list[str]], summary: str) -> str:
    """Print and append one section: heading with date and machine, a markdown table, a summary."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        f"\n## {title} ({datetime.now(UTC):%Y-%m-%d}, {machine})\n",
        f"{what}\n",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in rows),
        f"\n{summary}\n",
    ]
    text = "\n".join(lines)
    print(text)
    with open(RESULTS, "a") as handle:
        handle.write(text)
    return text
