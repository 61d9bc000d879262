"""Shared by the benchmarks: print a section and append it to bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def record(
    title: str,
    what: str,
    header: list[str],
    rows: list[list[str]],
    summary: str,
    device: str = "",
) -> str:
    """Print and append one section: heading with date and machine, a markdown table, a summary.

    ``device`` names an accelerator the figures were measured on, if any.
    """
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    machine += f", {device}" if device else ""
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
