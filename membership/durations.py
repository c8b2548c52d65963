"""Plan durations as typed by owners: 30d, 12m, 1y, lifetime."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^(\d+)([dmy])$")
_DAYS = {"d": 1, "m": 30, "y": 365}
MAX_DAYS = 3660  # ten years; anything longer is "lifetime"


class DurationError(ValueError):
    """A duration that cannot be used: one English line, and the message-catalog `key` (with
    `params`) the bot says it with in the user's language."""

    def __init__(self, message: str, key: str, **params: object) -> None:
        super().__init__(message)
        self.key = key
        self.params = params


def parse_duration(text: str) -> int | None:
    """Days, or None for lifetime. A month counts as 30 days, a year as 365."""
    t = text.strip().lower()
    if t == "lifetime":
        return None
    m = _DURATION.match(t)
    if not m:
        raise DurationError(
            f"'{text}' is not a duration like 30d, 12m, 1y or lifetime",
            "duration_invalid",
            text=text,
        )
    # More digits than MAX_DAYS has: too long, before int() (which refuses over 4300 digits).
    n = int(m[1]) if len(m[1].lstrip("0")) <= len(str(MAX_DAYS)) else MAX_DAYS + 1
    unit = m[2]
    if n > MAX_DAYS:  # any unit: too long, and no need to multiply a huge number
        raise DurationError(
            f"'{text}' is too long: a duration cannot be longer than ten years",
            "duration_too_long",
            text=text,
        )
    days = 365 * (n // 12) + 30 * (n % 12) if unit == "m" else n * _DAYS[unit]
    if days <= 0:
        raise DurationError("a duration must be at least one day", "duration_too_short", text=text)
    if days > MAX_DAYS:
        raise DurationError(
            f"'{text}' is too long: a duration cannot be longer than ten years",
            "duration_too_long",
            text=text,
        )
    return days


def parse_period(text: str) -> int:
    """A subscription billing period: 1m, 1y, or Nd (Stars uses 30d)."""
    days = parse_duration(text)
    if days is None:
        raise DurationError(
            "a subscription renews, so its period cannot be lifetime", "period_not_lifetime"
        )
    return days


def format_duration(days: int | None) -> str:
    if days is None:
        return "lifetime"
    if days % 365 == 0:
        return f"{days // 365}y"
    if days % 30 == 0:
        return f"{days // 30}m"
    return f"{days}d"
