"""Decides whether a request's Host header names this server, so that a page on another site cannot read a
loopback server through DNS rebinding (its requests carry the attacker's name in Host).

It only parses and compares names; each server refuses in its own error format. Usage:
    hosts = HostAllowList.for_server('127.0.0.1', ['console.example.com'])
    hosts.allows('evil.example:8080')    # False
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

ANY_HOST = '*'
# Names that always mean this machine. (A browser resolves "localhost" itself, never through DNS.)
LOOPBACK_NAMES = frozenset({'localhost'})
# Bind addresses that stand for every interface, not a name a client would use.
WILDCARD_BINDS = frozenset({'', '0.0.0.0', '::', '[::]'})


def is_loopback(host: str) -> bool:
    """True for a bind address only this machine can reach: localhost, 127.0.0.0/8, ::1 (bracketed or not).

    >>> is_loopback('127.0.0.1'), is_loopback('[::1]'), is_loopback('localhost'), is_loopback('0.0.0.0')
    (True, True, True, False)
    """
    text = host.strip().lower()
    if text in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(text.strip('[]')).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to a public address


def host_name(header: str) -> str | None:
    """The name in a Host header, lower case, without port, brackets or a trailing dot; None if malformed.

    >>> host_name('[::1]:8080'), host_name('Example.COM.:80'), host_name('a b')
    ('::1', 'example.com', None)
    """
    text = header.strip().lower()
    if text.startswith('['):
        name, sep, rest = text[1:].partition(']')
        if not sep or (rest and not (rest.startswith(':') and rest[1:].isdigit())):
            return None
        return name if is_ip_address(name) else None
    name, sep, port = text.rpartition(':')
    if not sep:
        name = port
    elif not port.isdigit():
        return None
    name = name.rstrip('.')
    if not name or any(c.isspace() or c in '/\\@[]:' or not c.isprintable() for c in name):
        return None
    return name


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostAllowList:
    """Names a Host header may carry. Any IP address is allowed: DNS rebinding needs a name the attacker
    controls, and a page whose origin is an IP address is served by that very address. The port is not
    compared (a reverse proxy or an ssh tunnel changes it; the name is what rebinding cannot fake)."""
    names: frozenset[str]
    any_host: bool = False

    @classmethod
    def for_server(cls, bind_host: str, allowed_hosts: Iterable[str] = ()) -> 'HostAllowList':
        """`localhost`, the bound host when it is a name, and `allowed_hosts` ("*" turns the check off)."""
        allowed = [h.strip().lower() for h in allowed_hosts]
        names = set(LOOPBACK_NAMES)
        bound = host_name(bind_host) if bind_host.strip().lower() not in WILDCARD_BINDS else None
        if bound:
            names.add(bound)
        for entry in allowed:
            if entry != ANY_HOST and (name := host_name(entry)):
                names.add(name)
        return cls(frozenset(names), any_host=ANY_HOST in allowed)

    def allows(self, header: str | None) -> bool:
        if self.any_host or not header:  # no Host at all is not a browser (browsers always send it)
            return True
        name = host_name(header)
        return name is not None and (name in self.names or is_ip_address(name))
