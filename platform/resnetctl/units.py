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


_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
}


def parse_bytes(text: str) -> int:
    """'256MiB' -> 268435456, '64MB' -> 64000000, '1048576' -> 1048576; ValueError otherwise."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _BYTE_UNITS:
        raise ValueError(f"{text!r} is not a size such as 256MiB, 64MB or 1048576")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])
