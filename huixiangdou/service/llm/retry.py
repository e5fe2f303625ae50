"""Backoff policy shared by the remote backend and the client: exponential delays with jitter,
`Retry-After` honoured, and everything bounded by one deadline.

It does not perform requests; callers ask it how long to wait and whether time is left.
"""
from __future__ import annotations

import email.utils
import random
import time


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (0-based).

    The server's Retry-After wins when given; otherwise base * 2**attempt with "equal jitter" (half
    fixed, half random) so many clients that failed together do not come back together.
    """
    if retry_after is not None:
        return retry_after
    rng = rng or random
    delay = min(cap, base * (2 ** attempt))
    return delay / 2 + rng.uniform(0, delay / 2)
