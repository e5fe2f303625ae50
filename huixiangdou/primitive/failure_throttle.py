"""Slows the guessing of a secret (an admin token, an API key) per client address: a few free failures,
then a lockout that doubles with each further failure, for a bounded number of tracked addresses.

It checks no secret and answers no request: the server asks `retry_after` first, then reports the outcome.
"""
from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

FREE_FAILURES = 5
BASE_DELAY = 1.0        # seconds of the first lockout
MAX_DELAY = 15 * 60.0   # a lockout never lasts longer
FORGET_AFTER = 3600.0   # an address quiet this long (and not locked) starts again from zero
MAX_CLIENTS = 10_000    # tracked addresses; the least recently failing one is forgotten first


def parse_networks(entries: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """IP addresses or networks ("10.0.0.5", "10.0.0.0/8", "::1"); ValueError naming a bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f'{entry!r} is not an IP address or network') from None
    return networks


def client_address(remote: str | None, forwarded_for: str,
                   trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str | None:
    """The address a request is counted against: `remote`, or, when `remote` is one of the `trusted`
    reverse proxies, the right-most X-Forwarded-For address that is not one (each proxy appends the
    address it received from, so addresses to the left of the last untrusted one may be forged).

    >>> nets = parse_networks(['127.0.0.1'])
    >>> client_address('127.0.0.1', '6.6.6.6, 203.0.113.9', nets), client_address('198.51.100.2', '1.2.3.4', nets)
    ('203.0.113.9', '198.51.100.2')
    """
    if not trusted or not _within(remote, trusted):
        return remote
    for hop in reversed([part.strip() for part in forwarded_for.split(',') if part.strip()]):
        if not _within(hop, trusted):
            return hop
    return remote


def _within(address: str | None, networks) -> bool:
    try:
        ip = ipaddress.ip_address((address or '').split('%')[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float = 0.0


def client_key(address: str | None) -> str:
    """The unit that is throttled: an IPv4 address, or an IPv6 /64 (one host usually holds the whole /64)."""
    try:
        ip = ipaddress.ip_address((address or '').split('%')[0])
    except ValueError:
        return address or 'unknown'
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f'{ip}/64', strict=False))
    return str(ip)


class FailureThrottle:
    """Usage:
        throttle = FailureThrottle()
        if (wait := throttle.retry_after(request.remote)): refuse with 429 and Retry-After: ceil(wait)
        elif secret_matches: throttle.succeeded(request.remote)
        else: lock = throttle.failed(request.remote)    # seconds of the lockout this failure started, or 0
    """

    def __init__(self, free_failures: int = FREE_FAILURES, base_delay: float = BASE_DELAY,
                 max_delay: float = MAX_DELAY, forget_after: float = FORGET_AFTER, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic):
        if free_failures < 0 or base_delay <= 0 or max_delay < base_delay or max_clients < 1:
            raise ValueError(f'need free_failures >= 0, 0 < base_delay <= max_delay and max_clients >= 1, got '
                             f'{free_failures}, {base_delay}, {max_delay}, {max_clients}')
        self.free_failures, self.base_delay, self.max_delay = free_failures, base_delay, max_delay
        self.forget_after, self.max_clients, self.clock = max(forget_after, max_delay), max_clients, clock
        self._by_client: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_client)

    def retry_after(self, address: str | None) -> float:
        """Seconds until `address` may try again; 0 when it may now."""
        record = self._current(client_key(address))
        return max(0.0, record.locked_until - self.clock()) if record else 0.0

    def failed(self, address: str | None) -> float:
        """Count a failure; the length of the lockout it starts (0 while failures are still free)."""
        key, now = client_key(address), self.clock()
        record = self._current(key) or _Failures(0, now)
        record.count += 1
        record.last = now
        self._by_client[key] = record
        self._by_client.move_to_end(key)
        if len(self._by_client) > self.max_clients:
            self._forget_one(now)
        over = record.count - self.free_failures
        if over <= 0:
            return 0.0
        delay = min(self.max_delay, self.base_delay * 2 ** min(over - 1, 64))
        record.locked_until = now + delay
        return delay

    def _forget_one(self, now: float) -> None:
        """Make room: forget the least recently failing client that is not locked out (so an attacker
        cycling through addresses cannot push its own lockouts out), or the oldest if every one is."""
        for key, record in self._by_client.items():
            if record.locked_until <= now:
                del self._by_client[key]
                return
        self._by_client.popitem(last=False)

    def succeeded(self, address: str | None) -> None:
        self._by_client.pop(client_key(address), None)

    def failures(self, address: str | None) -> int:
        record = self._current(client_key(address))
        return record.count if record else 0

    def _current(self, key: str) -> _Failures | None:
        record = self._by_client.get(key)
        now = self.clock()
        if record is not None and record.locked_until <= now and now - record.last > self.forget_after:
            del self._by_client[key]
            return None
        return record


def retry_after_header(seconds: float) -> str:
    """Retry-After is whole seconds; round up so a client that obeys it is never refused again."""
    return str(max(1, math.ceil(seconds)))
