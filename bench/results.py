"""Shared by the benchmarks: print a section and append it to bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def cpu_model() -> str:
    """The CPU's model name and its bf16 matrix units (AMX, AVX512-BF16 only, or neither)."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if "amx_bf16" in flags:
        units = "AMX bf16"
    elif "avx512_bf16" in flags:
        units = "AVX512-BF16 only, no AMX"
    else:
        units = "no bf16 matrix units"
    return f"{name} ({units})"


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
