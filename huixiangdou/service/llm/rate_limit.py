"""Requests-per-minute and tokens-per-minute budgets for a remote API, as an async sliding window,
and a rough token estimate that works for Chinese and English text.

It does not retry or talk to the network; callers wait on acquire() right before each request they
send, and refund() a request the upstream refused (429), so refusals do not spend the budget.
"""
from __future__ import annotations

import asyncio
import re
import time
from collections import deque

from huixiangdou.service.llm.backend import RateLimited


_CJK = re.compile('[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]')


def estimate_tokens(text: str) -> int:
    """CJK characters are about one token each; other text about four characters per token."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


class MinuteWindowLimiter:
    """Admit a request only when it fits the last 60 seconds' rpm and tpm budgets.

    Usage:
        limiter = MinuteWindowLimiter(rpm=500, tpm=20000)
        ticket = await limiter.acquire(tokens=1200, deadline=loop.time() + 30)
        ...                      # send; if the upstream answered 429 it served nothing:
        limiter.refund(ticket)
    """

    def __init__(self, rpm: int, tpm: int, window: float = 60.0, clock=time.monotonic):
        if rpm < 1 or tpm < 1:
            raise ValueError(f'rpm and tpm must be >= 1, got rpm={rpm} tpm={tpm}')
        self.rpm, self.tpm, self.window, self.clock = rpm, tpm, window, clock
        self._events: deque[tuple[float, int]] = deque()
        self._used = 0
        self._lock = asyncio.Lock()

    def _expire(self, now: float) -> None:
        while self._events and now - self._events[0][0] >= self.window:
            self._used -= self._events.popleft()[1]

    def wait_time(self, tokens: int) -> float:
        """Seconds until a request of `tokens` would fit; 0 if it fits now."""
        now = self.clock()
        self._expire(now)
        if len(self._events) < self.rpm and self._used + tokens <= self.tpm:
            return 0.0
        # Free events oldest first until both budgets fit.
        used, count = self._used, len(self._events)
        for stamp, spent in self._events:
            used -= spent
            count -= 1
            if count < self.rpm and used + tokens <= self.tpm:
                return max(0.0, stamp + self.window - now)
        return 0.0  # pragma: no cover - an empty window always fits (tokens are capped at tpm)

    async def acquire(self, tokens: int, deadline: float | None = None) -> tuple[float, int]:
        """Wait until the request fits, or raise RateLimited if that is past `deadline` (clock time).

        Returns a ticket for refund()."""
        # One request bigger than the whole budget could never fit; let it through alone.
        tokens = min(tokens, self.tpm)
        async with self._lock:
            while True:
                wait = self.wait_time(tokens)
                if wait <= 0:
                    ticket = (self.clock(), tokens)
                    self._events.append(ticket)
                    self._used += tokens
                    return ticket
                if deadline is not None and self.clock() + wait > deadline:
                    raise RateLimited(f'rpm/tpm budget ({self.rpm} requests, {self.tpm} tokens per minute) '
                                      f'is spent for the next {wait:.1f}s: raise [llm.server] rpm / tpm '
                                      'if your API plan allows', retry_after=wait)
                await asyncio.sleep(wait)

    def refund(self, ticket: tuple[float, int]) -> None:
        """Give back a request that was not served (the upstream refused it); no-op once it expired."""
        try:
            self._events.remove(ticket)
        except ValueError:
            return
        self._used -= ticket[1]
