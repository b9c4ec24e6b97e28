"""Durations as plans and options write them: ``90s``, ``15m``, ``2h``, ``1.5`` (seconds)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d)?\s*$", re.IGNORECASE)
_UNIT = {"ms": 0.001, "s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60,
         "h": 3600, "hr": 3600, "hrs": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``1.5``: seconds. Raises ValueError."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (write e.g. 90s, 15m, 2h)")
    value = float(m.group(1)) * _UNIT[(m.group(2) or "s").lower()]
    if value <= 0:
        raise ValueError(f"a duration must be positive: {text!r}")
    return value
