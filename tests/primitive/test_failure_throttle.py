"""The per-address failure throttle: free failures, doubling lockouts capped at max_delay, a success resets,
memory bounded, an IPv6 /64 counted as one client."""
from __future__ import annotations

import pytest

from huixiangdou.primitive.failure_throttle import FailureThrottle, client_key, retry_after_header


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockouts_double_after_the_free_failures_and_are_capped():
    clock = Clock()
    throttle = FailureThrottle(free_failures=3, base_delay=1, max_delay=8, clock=clock)
    assert [throttle.failed('10.0.0.1') for _ in range(3)] == [0, 0, 0]
    lockouts = []
    for _ in range(6):
        lockouts.append(throttle.failed('10.0.0.1'))
        assert throttle.retry_after('10.0.0.1') == lockouts[-1]
        clock.now += lockouts[-1]
        assert throttle.retry_after('10.0.0.1') == 0
    assert lockouts == [1, 2, 4, 8, 8, 8]
    assert throttle.retry_after('10.0.0.2') == 0  # another address is not affected


def test_a_success_resets_and_a_quiet_address_is_forgotten():
    clock = Clock()
    throttle = FailureThrottle(free_failures=1, base_delay=1, max_delay=10, forget_after=60, clock=clock)
    throttle.failed('10.0.0.1')
    assert throttle.failed('10.0.0.1') == 1
    throttle.succeeded('10.0.0.1')
    assert throttle.failures('10.0.0.1') == 0 and throttle.retry_after('10.0.0.1') == 0
    throttle.failed('10.0.0.1')
    clock.now += 61
    assert throttle.failures('10.0.0.1') == 0


def test_memory_is_bounded():
    throttle = FailureThrottle(max_clients=100)
    for i in range(5000):
        throttle.failed(f'10.{i // 65536}.{i // 256 % 256}.{i % 256}')
    assert len(throttle) == 100


def test_a_locked_out_client_is_not_forgotten_to_make_room():
    # An attacker cycling through more addresses than are remembered must not push its own lockout out.
    throttle = FailureThrottle(free_failures=1, max_clients=50, clock=Clock())  # no time passes
    for _ in range(3):
        throttle.failed('192.0.2.1')
    assert throttle.retry_after('192.0.2.1') > 0
    for i in range(500):
        throttle.failed(f'10.0.{i // 256}.{i % 256}')  # one free failure each: none of them locked
    assert len(throttle) == 50
    assert throttle.retry_after('192.0.2.1') > 0


def test_an_ipv6_64_is_one_client():
    assert client_key('2001:db8::1') == client_key('2001:db8::ffff:1') == '2001:db8::/64'
    assert client_key('::ffff:10.0.0.1') == '10.0.0.1' and client_key(None) == 'unknown'
    assert retry_after_header(0.2) == '1' and retry_after_header(2.01) == '3'


def test_settings_are_checked():
    with pytest.raises(ValueError, match='base_delay'):
        FailureThrottle(base_delay=0)
