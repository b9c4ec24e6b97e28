"""Durations as plans and options write them: ``90s``, ``15m``, ``2h``, ``1.5`` (seconds)."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d)?\s*$", re.IGNORECASE)
_UNIT = {"ms": 0.001, "s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60,
         "h": 3600, "hr": 3600, "hrs": 3600, "d": 86400}


def format_duration(seconds: float) -> str:
    """``2592000`` -> ``30d``, ``0.1`` -> ``0.1s``: the form a plan would write."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_duration(text: str, *, lo: float | None = None, hi: float | None = None) -> float:
    """``90s``, ``15m``, ``2h``, ``1.5``: seconds. Raises ValueError.

    ``lo`` and ``hi`` bound the value (inclusive); the message names the bound as
    a plan writes it ("above the longest allowed, 30d").
    """
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {_short(text)!r} (write e.g. 90s, 15m, 2h)")
    value = float(m.group(1)) * _UNIT[(m.group(2) or "s").lower()]
    if value <= 0:
        raise ValueError(f"a duration must be positive: {_short(text)!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{_short(text)} is below the shortest allowed, {format_duration(lo)}")
    if hi is not None and (value > hi or not math.isfinite(value)):
        raise ValueError(f"{_short(text)} is above the longest allowed, {format_duration(hi)}")
    if not math.isfinite(value):  # 400 digits: float() says inf
        raise ValueError(f"not a duration: {_short(text)!r} (write e.g. 90s, 15m, 2h)")
    return value


def _short(text: str) -> str:
    text = str(text).strip()
    return text if len(text) <= 24 else text[:20] + "..."


def format_elapsed(seconds: float) -> str:
    """``5s``, ``2m05s``, ``1h02m05s``: how long something has run, for a person."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"
