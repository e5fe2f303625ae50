"""Which Host headers name this server: localhost, any IP address, the bound name and the allowed ones."""
from __future__ import annotations

from huixiangdou.primitive.host_allowlist import HostAllowList, host_name


def test_host_names_are_parsed_without_port_case_or_trailing_dot():
    assert host_name('[::1]:8080') == '::1' and host_name('Example.COM.:80') == 'example.com'
    for bad in ('a b', '[::1', 'x:y', 'a/b:80', '[nope]:1', 'user@host'):
        assert host_name(bad) is None, bad


def test_only_this_servers_names_are_allowed():
    hosts = HostAllowList.for_server('127.0.0.1', ['console.example.com'])
    for good in ('localhost:8080', '127.0.0.1', '[::1]:1', '192.168.1.5:8080', 'CONSOLE.example.com:443', None, ''):
        assert hosts.allows(good), good
    for bad in ('evil.example:8080', 'localhost.evil.example', 'sub.console.example.com', 'a b'):
        assert not hosts.allows(bad), bad


def test_a_named_bind_is_allowed_and_a_wildcard_bind_names_nothing():
    assert HostAllowList.for_server('myhost.lan').allows('myhost.lan:8080')
    assert not HostAllowList.for_server('0.0.0.0').allows('myhost.lan:8080')
    assert HostAllowList.for_server('0.0.0.0', ['*']).allows('anything.example')
