"""Cells of the benchmark's Markdown tables."""

from __future__ import annotations

import statistics


def cell(values: list[float] | None, unit: str) -> str:
    """Median (min–max) of ``values`` in ``unit``, with as many digits as its size needs."""
    if not values:
        return "-"
    digits = 0 if statistics.median(values) >= 100 else (1 if statistics.median(values) >= 10 else 2)
    fmt = f"{{:.{digits}f}}"
    if len(values) == 1:
        return f"{fmt.format(values[0])} {unit}"
    return f"{fmt.format(statistics.median(values))} {unit} ({fmt.format(min(values))}–{fmt.format(max(values))})"
