"""Per-group reply rate limit: at most N replies per group in any 60-second window.

Counts replies only; it does not queue or delay anything (the dispatcher decides what to skip).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable

WINDOW_SECONDS = 60.0


class ReplyRateLimiter:
    """Sliding-window counter keyed by group id.

    >>> limiter = ReplyRateLimiter(per_minute=2)
    >>> limiter.allows('g'), limiter.record('g'), limiter.record('g'), limiter.allows('g')
    (True, None, None, False)
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        if per_minute < 1:
            raise ValueError(f'per_minute must be >= 1, got {per_minute}')
        self.per_minute = per_minute
        self._clock = clock
        self._sent: dict[str, deque[float]] = {}

    def _window(self, group_id: str) -> deque[float]:
        sent = self._sent.setdefault(group_id, deque())
        horizon = self._clock() - WINDOW_SECONDS
        while sent and sent[0] <= horizon:
            sent.popleft()
        return sent

    def allows(self, group_id: str) -> bool:
        """True if one more reply fits in this group's window."""
        return len(self._window(group_id)) < self.per_minute

    def record(self, group_id: str) -> None:
        self._window(group_id).append(self._clock())
