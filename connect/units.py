"""The one syntax for durations and sizes, shared by connect/tables.toml policies and every CLI option."""

from __future__ import annotations

import re
from datetime import timedelta

from .exceptions import ConnectError

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def duration_seconds(text: str) -> float:
    """'90s', '10m', '24h', '7d' (a bare number is seconds) as seconds."""
    found = DURATION.match(str(text))
    if not found:
        raise ConnectError(f"{text!r} is not a duration like 90s, 10m, 24h or 7d (a bare number is seconds)")
    return float(found[1]) * DURATION_UNITS[found[2] or "s"]


def parse_duration(text: str) -> timedelta:
    """A duration (see duration_seconds) as a timedelta."""
    return timedelta(seconds=duration_seconds(text))


def duration_text(seconds: float) -> str:
    """``seconds`` in the same syntax, in the largest unit that holds it whole (300.0: '5m', 90.0: '90s')."""
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
