"""Plan durations as typed by owners: 30d, 12m, 1y, lifetime."""
from __future__ import annotations

import re

_DURATION = re.compile(r"^(\d{1,4})([dmy])$")
_DAYS = {"d": 1, "m": 30, "y": 365}
MAX_DAYS = 3660  # ten years; anything longer is "lifetime"


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> int | None:
    """Days, or None for lifetime. A month counts as 30 days, a year as 365."""
    t = text.strip().lower()
    if t == "lifetime":
        return None
    m = _DURATION.match(t)
    if not m:
        raise DurationError(f"'{text}' is not a duration like 30d, 12m, 1y or lifetime")
    n, unit = int(m[1]), m[2]
    days = 365 * (n // 12) + 30 * (n % 12) if unit == "m" else n * _DAYS[unit]
    if days <= 0:
        raise DurationError("a duration must be at least one day")
    if days > MAX_DAYS:
        raise DurationError("that duration is longer than ten years; use lifetime")
    return days


def parse_period(text: str) -> int:
    """A subscription billing period: 1m, 1y, or Nd (Stars uses 30d)."""
    days = parse_duration(text)
    if days is None:
        raise DurationError("a subscription renews, so its period cannot be lifetime")
    return days


def format_duration(days: int | None) -> str:
    if days is None:
        return "lifetime"
    if days % 365 == 0:
        return f"{days // 365}y"
    if days % 30 == 0:
        return f"{days // 30}m"
    return f"{days}d"
