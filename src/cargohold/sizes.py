"""Byte sizes as people write and read them."""

from __future__ import annotations

import re
from typing import Final

_UNITS: Final = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_size(text: str) -> int:
    """Bytes from ``500M``, ``2G``, ``1.5GiB``, ``10gb`` or ``4096`` (binary multiples, as docker reads them)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if found is None:
        raise ValueError(f"invalid size {text!r}: expected a number with an optional K, M, G or T (500M, 2G)")
    return int(float(found.group(1)) * _UNITS[found.group(2).lower()])


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
