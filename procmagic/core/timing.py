"""Time-outs and deadlines, one way everywhere.

A time-out given by a user is validated once (:func:`seconds`), turned into a monotonic
deadline once (:func:`deadline_after`), and every wait converts what is left of it with
:func:`poll_ms`: milliseconds rounded *up*, so a poll never returns a hair early and spins
(``poll(0)`` over and over in the last millisecond), and never negative.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Iterable

__all__ = ["seconds", "deadline_after", "remaining", "poll_ms", "earliest"]


def seconds(value: Any, what: str = "timeout") -> float | None:
    """Validate a time-out in seconds: a real number >= 0, or None (wait forever)."""
    if value is None:
        return None
    if (type(value) is float or type(value) is int) and value >= 0:  # (NaN is not >= 0)
        return float(value)  # the common case, without the ABC check (~0.3 us)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number of seconds or None, not {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{what} must be >= 0 seconds (or None to wait forever), got {value}")
    return float(value)


def deadline_after(timeout: float | None, now: float | None = None) -> float | None:
    """The monotonic time ``timeout`` seconds from ``now`` (None stays None: no deadline)."""
    if timeout is None:
        return None
    return (time.monotonic() if now is None else now) + max(0.0, timeout)


def remaining(deadline: float | None, now: float | None = None) -> float | None:
    """Seconds left until ``deadline`` (never negative; None for no deadline)."""
    if deadline is None:
        return None
    return max(0.0, deadline - (time.monotonic() if now is None else now))


def poll_ms(deadline: float | None, now: float | None = None) -> int | None:
    """What ``select.poll().poll()`` wants for ``deadline``: whole milliseconds, rounded up;
    None (block) without a deadline."""
    left = remaining(deadline, now)
    if left is None:
        return None
    return int(math.ceil(left * 1000.0))


def earliest(deadlines: Iterable[float | None]) -> float | None:
    """The soonest of several deadlines, None if none is set."""
    times = [d for d in deadlines if d is not None]
    return min(times) if times else None
