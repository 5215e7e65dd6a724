"""Human-readable numbers for tables."""

from __future__ import annotations

import math


def human(n: float) -> str:
    """1234567 -> '1.23M'; SI prefixes from k to P."""
    if math.isnan(n):
        return "nan"
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"
