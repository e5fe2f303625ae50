"""The one retry policy for every outgoing HTTP call (LLM server and upstreams, rerank, web search, Lark,
wkteam), built on tenacity: which failures are transient, exponential backoff with full jitter,
Retry-After honoured up to a cap, and bounds on attempts and on total time.

It does not send anything nor decide which exception a caller raises in the end: a caller wraps one
attempt in `send`, raises `TransientFailure(its_error)` for a failure worth another try, and re-raises
`failure.error` (or its own message) when the policy gives up.
"""
from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

import tenacity
from loguru import logger

T = TypeVar('T')

# 408 request timeout, 429 too many requests, 502/503/504 gateway or overload: the request was not
# served and may be served later. 500 only where the service documents it as transient (OpenAI-style APIs
# say "retry after a brief wait"); from our own server a 500 is a bug that another try repeats.
TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})


def transient_status(status: int, *, transient_500: bool = False) -> bool:
    """True if an HTTP status is worth another try under the shared policy."""
    return status in TRANSIENT_STATUSES or (transient_500 and status == 500)


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


class TransientFailure(Exception):
    """One attempt failed in a way another attempt may not: `error` is the caller's own exception for it,
    `retry_after` the server's requested wait (seconds) if it sent one.

    When the policy gives up it raises the last TransientFailure with `attempts` (how many were made)
    and `out_of_time` (True when the next wait would have passed `max_total`).
    """

    def __init__(self, error: Exception, retry_after: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.attempts = 0
        self.out_of_time = False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to try.

    attempts: tries in all (1 = no retry). base_delay, max_delay: the n-th retry waits a uniformly random
    time in [0, min(max_delay, base_delay * 2**(n-1))] ("full jitter", so clients that failed together do
    not come back together). max_total: no retry starts whose wait would end later than this many seconds
    after the first try (None: attempts alone bound it). retry_after_cap: a server's Retry-After is obeyed
    up to this many seconds.

    Usage:
        policy = RetryPolicy(attempts=3, base_delay=0.5, max_delay=10.0, max_total=30.0)
        body = await send_with_retry(policy, post_once, service='rerank')
    """
    attempts: int
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total: float | None = None
    retry_after_cap: float = 60.0

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f'attempts must be >= 1, got {self.attempts}')
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError(f'need 0 <= base_delay <= max_delay, got {self.base_delay} and {self.max_delay}')
        if self.max_total is not None and self.max_total <= 0:
            raise ValueError(f'max_total must be > 0 seconds or None, got {self.max_total}')
        if self.retry_after_cap < 0:
            raise ValueError(f'retry_after_cap must be >= 0, got {self.retry_after_cap}')

    @classmethod
    def from_retries(cls, max_retries: int, base_delay: float = 0.5, max_delay: float = 30.0,
                     max_total: float | None = None) -> 'RetryPolicy':
        """A policy from a config's `max_retries` (retries after the first try)."""
        if max_retries < 0:
            raise ValueError(f'max_retries must be >= 0, got {max_retries}')
        return cls(max_retries + 1, base_delay, max(max_delay, base_delay), max_total)


class _Wait(tenacity.wait.wait_base):
    """Retry-After when the server sent one (capped), else tenacity's full-jitter exponential backoff."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.jitter = tenacity.wait_random_exponential(multiplier=policy.base_delay, max=policy.max_delay)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        failure = retry_state.outcome.exception()
        if isinstance(failure, TransientFailure) and failure.retry_after is not None:
            return min(failure.retry_after, self.policy.retry_after_cap)
        return self.jitter(retry_state)


def _tenacity_settings(policy: RetryPolicy, service: str) -> dict:
    stop = tenacity.stop_after_attempt(policy.attempts)
    if policy.max_total is not None:
        # Judged on the upcoming wait: a retry that could only start after the budget is not made.
        stop = stop | tenacity.stop_before_delay(policy.max_total)

    def log_retry(state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception()
        logger.warning('{} attempt {}/{} failed ({}); retrying in {:.2f}s', service, state.attempt_number,
                       policy.attempts, failure, state.upcoming_sleep)

    def give_up(state: tenacity.RetryCallState):
        failure = state.outcome.exception()
        failure.attempts = state.attempt_number
        failure.out_of_time = state.attempt_number < policy.attempts
        raise failure

    return dict(stop=stop, wait=_Wait(policy), retry=tenacity.retry_if_exception_type(TransientFailure),
                before_sleep=log_retry, retry_error_callback=give_up, reraise=True)


async def send_with_retry(policy: RetryPolicy, send: Callable[[], Awaitable[T]], *, service: str) -> T:
    """Await `send()` until it returns, retrying while it raises TransientFailure and the policy allows.

    Any other exception propagates at once. When the policy gives up, the last TransientFailure is raised
    (see its `attempts` and `out_of_time`). Each retry logs one line: service, attempt, reason, delay.
    """
    retrying = tenacity.AsyncRetrying(**_tenacity_settings(policy, service))

    async def attempt() -> T:  # tenacity awaits only coroutine functions; `send` may be a lambda
        return await send()

    return await retrying(attempt)


def call_with_retry(policy: RetryPolicy, send: Callable[[], T], *, service: str) -> T:
    """send_with_retry for blocking code (the feature store builder's embedding calls run in a thread)."""
    return tenacity.Retrying(**_tenacity_settings(policy, service))(send)
