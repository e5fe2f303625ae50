"""The shared retry policy on its own: what is retried, how long it waits (jitter, Retry-After, caps) and
when it gives up. Each caller's use of it is tested against its fake service in the caller's test file."""
from __future__ import annotations

import asyncio
import time

import pytest
from loguru import logger

from huixiangdou.primitive.http_retry import (RetryPolicy, TransientFailure, parse_retry_after, send_with_retry,
                                              transient_status)


class Flaky:
    """Fails its first `failures` calls with TransientFailure (optionally with a Retry-After), then answers."""

    def __init__(self, failures: int, retry_after: float | None = None):
        self.failures, self.retry_after = failures, retry_after
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise TransientFailure(RuntimeError(f'HTTP 503 try {len(self.calls)}'), self.retry_after)
        return 'answer'


@pytest.fixture
def retry_lines():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record['message']), level='WARNING')
    yield lines
    logger.remove(sink)


async def test_transient_failures_are_retried_until_an_answer(retry_lines):
    send = Flaky(failures=2)
    assert await send_with_retry(RetryPolicy(4, 0.001, 0.01), send, service='rerank API') == 'answer'
    assert len(send.calls) == 3
    assert len(retry_lines) == 2
    assert retry_lines[0].startswith('rerank API attempt 1/4 failed (HTTP 503 try 1); retrying in ')


async def test_other_errors_are_not_retried():
    calls = []

    async def refused():
        calls.append(1)
        raise PermissionError('HTTP 400 bad request')

    with pytest.raises(PermissionError):
        await send_with_retry(RetryPolicy(5, 0.001, 0.01), refused, service='x')
    assert len(calls) == 1


async def test_giving_up_raises_the_last_failure_with_the_attempt_count():
    send = Flaky(failures=10)
    with pytest.raises(TransientFailure) as info:
        await send_with_retry(RetryPolicy(3, 0.001, 0.01), send, service='x')
    assert len(send.calls) == 3
    assert info.value.attempts == 3 and not info.value.out_of_time
    assert str(info.value.error) == 'HTTP 503 try 3'


async def test_delays_are_jittered_and_bounded(retry_lines):
    """Full jitter: each wait is random in [0, min(max_delay, base * 2**n)], so two runs differ."""
    runs = []
    for _ in range(2):
        retry_lines.clear()
        with pytest.raises(TransientFailure):
            await send_with_retry(RetryPolicy(5, 0.04, 0.1), Flaky(failures=10), service='x')
        runs.append([float(line.rsplit(' ', 1)[1].rstrip('s')) for line in retry_lines])
    # The log shows 0.01 s steps: waits of up to 40-100 ms give ~10 values each, so two jittered runs of
    # four waits coincide by chance about once in 10^4 (with 10 ms caps they often printed the same).
    assert runs[0] != runs[1]
    for delays in runs:
        assert len(delays) == 4
        assert all(0 <= d <= cap + 0.005 for d, cap in zip(delays, [0.04, 0.08, 0.1, 0.1]))


async def test_retry_after_is_honoured():
    send = Flaky(failures=1, retry_after=0.3)
    await send_with_retry(RetryPolicy(3, 0.0, 0.0), send, service='x')
    assert send.calls[1] - send.calls[0] >= 0.29


async def test_retry_after_is_capped():
    send = Flaky(failures=1, retry_after=3600)
    policy = RetryPolicy(3, 0.0, 0.0, retry_after_cap=0.05)
    assert await asyncio.wait_for(send_with_retry(policy, send, service='x'), 5) == 'answer'
    assert send.calls[1] - send.calls[0] < 1


async def test_a_wait_past_the_time_budget_gives_up_at_once():
    send = Flaky(failures=5, retry_after=10)
    started = time.monotonic()
    with pytest.raises(TransientFailure) as info:
        await send_with_retry(RetryPolicy(5, 0.1, 1.0, max_total=2.0), send, service='x')
    assert time.monotonic() - started < 0.5
    assert info.value.attempts == 1 and info.value.out_of_time


async def test_retries_never_exceed_the_total_time():
    send = Flaky(failures=1000)
    started = time.monotonic()
    with pytest.raises(TransientFailure) as info:
        await send_with_retry(RetryPolicy(1000, 0.05, 0.1, max_total=0.5), send, service='x')
    # No wait is planned past 0.5 s; the slack is for a late wake-up on a loaded machine.
    assert time.monotonic() - started <= 0.5 + 0.25
    assert 1 < info.value.attempts < 1000 and info.value.out_of_time


def test_which_statuses_are_transient():
    assert all(transient_status(s) for s in (408, 429, 502, 503, 504))
    assert not any(transient_status(s) for s in (400, 401, 403, 404, 409, 422, 500, 501))
    assert transient_status(500, transient_500=True)


def test_retry_after_parses_seconds_and_dates():
    assert parse_retry_after('7') == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after('garbage') is None
    assert parse_retry_after('Wed, 21 Oct 2015 07:28:00 GMT') == 0.0  # a past date means now


@pytest.mark.parametrize('kwargs', [{'attempts': 0}, {'attempts': 2, 'base_delay': -1},
                                    {'attempts': 2, 'base_delay': 2, 'max_delay': 1},
                                    {'attempts': 2, 'max_total': 0}])
def test_bad_policies_are_refused(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)
