"""Pure decisions: retry backoff and the supervisor's plan.

Nothing here performs I/O or reads a clock; callers pass ``now`` and a
random number in, so tests call these functions with chosen values.
"""

from __future__ import annotations

import math

# Ten years: the longest delay any caller may ask for, and the cap that
# keeps exponential backoff far from overflowing a timestamp.
MAX_DELAY_S = 10 * 365 * 24 * 3600.0
MAX_ATTEMPTS = 1000


def backoff(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Return seconds to wait before the attempt after ``attempt``.

    The delay doubles with each attempt from ``base``, is capped at ``cap``,
    and ``jitter`` (0 to 1, from the caller's random source) spreads it over
    its upper half so that jobs failing together do not retry together.
    """
    exponent = min(max(attempt - 1, 0), 64)  # 2**64 * base is already capped
    full = min(cap, base * math.pow(2.0, exponent), MAX_DELAY_S)
    return full / 2 + full / 2 * min(max(jitter, 0.0), 1.0)


def should_retry(attempts: int, max_attempts: int) -> bool:
    """Tell whether a job that failed its ``attempts``-th try runs again."""
    return attempts < max_attempts
