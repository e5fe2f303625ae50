"""Requests-per-minute and tokens-per-minute budgets for a remote API, on aiolimiter's leaky bucket, and a
rough token estimate that works for Chinese and English text.

It does not retry or talk to the network; callers acquire() right before each attempt they send, and
refund() an attempt the upstream refused (429), so refusals do not spend the budget.
"""
from __future__ import annotations

import asyncio
import re

from aiolimiter import AsyncLimiter

from huixiangdou.service.llm.backend import RateLimited

_CJK = re.compile('[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]')


def estimate_tokens(text: str) -> int:
    """CJK characters are about one token each; other text about four characters per token."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


class RefundableLimiter(AsyncLimiter):
    """aiolimiter's AsyncLimiter plus the two things it lacks: how long an acquire would wait (to refuse at
    once a request that cannot fit before its deadline) and giving capacity back (a 429 served nothing).

    Both read the bucket's level (`_level`, `_leak`, `_wake_next`: aiolimiter internals, stable since 1.0);
    tests/service/test_llm_units.py checks them against the installed version.
    """

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` fits; 0 if it fits now."""
        self._leak()
        return max(0.0, (self._level + amount - self.max_rate) / self._rate_per_sec)

    def refund(self, amount: float) -> None:
        self._leak()
        self._level = max(0.0, self._level - amount)
        self._wake_next()  # a waiter may fit now


class RequestBudget:
    """Admit a request only when it fits the rpm and tpm budgets (a burst of up to rpm requests, then rpm
    per minute on average; the same for tokens).

    Usage:
        budget = RequestBudget(rpm=500, tpm=20000)
        ticket = await budget.acquire(tokens=1200, deadline=loop.time() + 30)
        ...                      # send; if the upstream answered 429 it served nothing:
        budget.refund(ticket)
    """

    def __init__(self, rpm: int, tpm: int):
        if rpm < 1 or tpm < 1:
            raise ValueError(f'rpm and tpm must be >= 1, got rpm={rpm} tpm={tpm}')
        self.rpm, self.tpm = rpm, tpm
        self.requests = RefundableLimiter(rpm, 60.0)
        self.tokens = RefundableLimiter(tpm, 60.0)

    def wait_time(self, tokens: int) -> float:
        """Seconds until a request of `tokens` would fit; 0 if it fits now."""
        return max(self.requests.wait_time(1), self.tokens.wait_time(min(tokens, self.tpm)))

    async def acquire(self, tokens: int, deadline: float | None = None) -> int:
        """Wait until the request fits, or raise RateLimited if that is past `deadline` (loop time).

        Returns a ticket for refund()."""
        # One request bigger than the whole budget could never fit; let it through alone.
        tokens = min(tokens, self.tpm)
        wait = self.wait_time(tokens)
        loop = asyncio.get_running_loop()
        if deadline is not None and loop.time() + wait > deadline:
            raise self._spent(wait)
        counted = False
        try:
            async with asyncio.timeout_at(deadline):
                await self.requests.acquire(1)
                counted = True
                await self.tokens.acquire(tokens)
        except TimeoutError:  # other requests took the budget first
            if counted:
                self.requests.refund(1)
            raise self._spent(self.wait_time(tokens)) from None
        return tokens

    def refund(self, ticket: int) -> None:
        """Give back a request that was not served (the upstream refused it)."""
        self.requests.refund(1)
        self.tokens.refund(ticket)

    def _spent(self, wait: float) -> RateLimited:
        return RateLimited(f'rpm/tpm budget ({self.rpm} requests, {self.tpm} tokens per minute) is spent for '
                           f'the next {wait:.1f}s: raise [llm.server] rpm / tpm if your API plan allows',
                           retry_after=wait)
