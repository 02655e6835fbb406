"""Turning "when" into a delay: '+90 minutes', seconds, timedelta, datetime.

The delay is applied by the database clock at insert, so producers on hosts
with skewed clocks still agree; an aware datetime is turned into seconds
from this host's now, the one place a wall clock is read.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

from fuwad.errors import InvalidJob
from fuwad.policy import MAX_DELAY_S

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_RELATIVE = re.compile(r"^\+?\s*(\d+(?:\.\d+)?)\s*([a-z]+)$")

When = str | int | float | timedelta | datetime


def delay_seconds(when: When, *, now: datetime | None = None) -> float:
    """Return how many seconds from now ``when`` lies; refuse nonsense."""
    if isinstance(when, bool):
        raise InvalidJob("a delay must be a number of seconds, not a bool")
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise InvalidJob(
                "a naive datetime is ambiguous; pass one with a timezone, "
                "such as datetime.now(timezone.utc) + timedelta(hours=1)"
            )
        current = now or datetime.now(timezone.utc)
        seconds = (when - current).total_seconds()
        return check_delay(max(seconds, 0.0))
    if isinstance(when, timedelta):
        return check_delay(when.total_seconds())
    if isinstance(when, int | float):
        return check_delay(float(when))
    if isinstance(when, str):
        return check_delay(parse_relative(when))
    raise InvalidJob(
        f"cannot schedule at a {type(when).__name__}; pass seconds, a "
        "timedelta, an aware datetime or a string such as '+1 day'"
    )


def parse_relative(text: str) -> float:
    """Parse '+1 day', '+90 minutes', '30s' or a bare number of seconds."""
    cleaned = text.strip().lower()
    try:
        return float(cleaned)
    except ValueError:
        pass
    match = _RELATIVE.match(cleaned)
    if not match or match.group(2) not in _UNITS:
        raise InvalidJob(
            f"cannot read {text!r} as a time; write it like '+90 minutes', "
            "'+1 day', '+2 hours' or a number of seconds"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def check_delay(seconds: float) -> float:
    """Return ``seconds`` if it is a usable delay, else raise InvalidJob."""
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidJob(f"a delay must be 0 or more seconds, not {seconds}")
    if seconds > MAX_DELAY_S:
        raise InvalidJob(
            f"a delay of {seconds:.0f}s is over the 10-year limit"
        )
    return seconds
