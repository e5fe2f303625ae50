"""Who may change what: the admin token for scripts, login sessions with CSRF for the pages, a read-only
console without a token, protect_api for reads, and no public bind without a token."""
from __future__ import annotations

import aiohttp
import pytest

from huixiangdou.config import ConfigError, load_config
from tests.conftest import write_config
from tests.web.conftest import ADMIN_TOKEN

NEW_EXAMPLE = {'kind': 'good', 'text': '控制台登录后能添加示例吗？'}


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies like a browser (aiohttp's default jar ignores those of an IP address)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_changes_need_the_token_or_a_session_with_its_csrf(web_server):
    url = web_server.base_url
    async with browser() as http:
        async with http.get(f'{url}/api/session') as r:
            assert await r.json() == {'admin': False, 'token_configured': True, 'csrf': None, 'protect_api': False,
                                      'role': None, 'kb': None}
        async with http.get(f'{url}/api/examples') as r:   # reading is open
            assert r.status == 200
        async with http.post(f'{url}/api/examples', json=NEW_EXAMPLE) as r:
            assert r.status == 401 and (await r.json())['error']['code'] == 'unauthorized'
        async with http.post(f'{url}/api/examples', json=NEW_EXAMPLE,
                             headers={'Authorization': 'Bearer wrong-token'}) as r:
            assert r.status == 401
        async with http.post(f'{url}/api/login', json={'token': 'wrong-token'}) as r:
            assert r.status == 401
        async with http.post(f'{url}/api/login', json={'token': web_server.admin_token}) as r:
            assert r.status == 200
            login = await r.json()
            cookie = r.cookies['hxd_session']
        assert login['admin'] is True and len(login['csrf']) >= 32
        assert cookie['httponly'] and cookie['samesite'] == 'Strict'

        async with http.get(f'{url}/api/session') as r:
            assert await r.json() == {'admin': True, 'token_configured': True, 'csrf': login['csrf'],
                                      'protect_api': False, 'role': 'admin', 'kb': None}
        # The cookie alone is what a forged cross-site request carries: refused without the CSRF header.
        async with http.post(f'{url}/api/examples', json=NEW_EXAMPLE) as r:
            assert r.status == 403 and (await r.json())['error']['code'] == 'csrf'
        async with http.post(f'{url}/api/examples', json=NEW_EXAMPLE, headers={'X-CSRF-Token': 'guess'}) as r:
            assert r.status == 403
        async with http.delete(f'{url}/api/files', params={'path': 'zh/安装.md'}) as r:
            assert r.status == 403
        assert (web_server.repo_dir / 'zh/安装.md').is_file()
        async with http.post(f'{url}/api/examples', json=NEW_EXAMPLE, headers={'X-CSRF-Token': login['csrf']}) as r:
            assert r.status == 201

        async with http.post(f'{url}/api/logout') as r:
            assert r.status == 200
        async with http.post(f'{url}/api/examples', json=NEW_EXAMPLE | {'text': '退出后还能改吗？'},
                             headers={'X-CSRF-Token': login['csrf']}) as r:
            assert r.status == 401
    # A script with the token needs no session and no CSRF header.
    async with aiohttp.ClientSession(headers=web_server.auth) as http:
        async with http.delete(f'{url}/api/examples/good/0') as r:
            assert r.status == 200


async def test_another_site_cannot_make_the_bot_answer_through_a_browser(web_server):
    # A form or text/plain is what a page elsewhere can send without a preflight; JSON it cannot.
    async with aiohttp.ClientSession() as http:
        for path in ('/api/ask', '/v1/chat/completions', '/api/login'):
            async with http.post(f'{web_server.base_url}{path}', data='{"query": "hi", "token": "x"}',
                                 headers={'Content-Type': 'text/plain'}) as r:
                assert r.status == 415, path
                assert 'application/json' in (await r.json())['error']['message']
        async with http.options(f'{web_server.base_url}/api/ask', headers={
                'Origin': 'https://evil.example', 'Access-Control-Request-Method': 'POST'}) as r:
            assert 'Access-Control-Allow-Origin' not in r.headers


async def test_errors_are_json_with_a_code_and_a_message(web_server):
    async with aiohttp.ClientSession(headers=web_server.auth) as http:
        async with http.get(f'{web_server.base_url}/api/no-such-thing') as r:
            assert r.status == 404
            assert (await r.json())['error']['code'] == 'not_found'
        async with http.get(f'{web_server.base_url}/api/chunks', params={'path': 'zh/没有这个文件.md'}) as r:
            assert r.status == 404
            assert 'rebuild' in (await r.json())['error']['message']


async def test_the_pages_are_served_without_a_login(web_server):
    async with aiohttp.ClientSession() as http:
        async with http.get(f'{web_server.base_url}/') as r:
            assert r.status == 200 and 'text/html' in r.headers['Content-Type']
            assert r.headers['X-Frame-Options'] == 'DENY'
        async with http.get(f'{web_server.base_url}/static/../../config.py') as r:
            assert r.status in (403, 404)


async def test_without_a_token_the_console_is_read_only(bare_console, monkeypatch):
    monkeypatch.delenv('HUIXIANGDOU_ADMIN_TOKEN', raising=False)
    url = await bare_console(web={'admin_token': ''})
    async with aiohttp.ClientSession() as http:
        async with http.get(f'{url}/api/session') as r:
            assert (await r.json())['token_configured'] is False
        async with http.get(f'{url}/api/kb') as r:
            assert r.status == 200 and (await r.json())['store'] is None
        for method, path in (('POST', '/api/examples'), ('POST', '/api/rebuild'), ('DELETE', '/api/files?path=a.md'),
                             ('POST', '/api/login')):
            async with http.request(method, f'{url}{path}', json={'token': '', **NEW_EXAMPLE},
                                    headers={'Authorization': 'Bearer '}) as r:
                assert r.status == 403, path
                error = (await r.json())['error']
                assert error['code'] == 'read_only' and 'HUIXIANGDOU_ADMIN_TOKEN' in error['message']


async def test_protect_api_needs_the_token_for_reads_too(bare_console):
    url = await bare_console(web={'admin_token': 'secret-token', 'protect_api': 1})
    async with browser() as http:
        async with http.get(f'{url}/api/session') as r:
            assert r.status == 200 and (await r.json())['protect_api'] is True
        for path in ('/api/kb', '/api/messages', '/v1/models'):
            async with http.get(f'{url}{path}') as r:
                assert r.status == 401, path
        async with http.post(f'{url}/v1/chat/completions', json={'model': 'huixiangdou', 'messages': []}) as r:
            assert r.status == 401
            assert (await r.json())['error']['type'] == 'authentication_error'
        async with http.post(f'{url}/api/ask', json={'query': '安装需要什么？'}) as r:
            assert r.status == 401
        for path in ('/api/kb', '/v1/models'):
            async with http.get(f'{url}{path}', headers={'Authorization': 'Bearer secret-token'}) as r:
                assert r.status == 200, path
        async with http.post(f'{url}/api/login', json={'token': 'secret-token'}) as r:
            assert r.status == 200
        async with http.get(f'{url}/api/kb') as r:   # a logged-in page reads with its cookie
            assert r.status == 200


def test_a_public_address_without_a_token_is_refused(tmp_path, monkeypatch, capsys):
    from huixiangdou.web.__main__ import check_bind, is_loopback, main

    monkeypatch.delenv('HUIXIANGDOU_ADMIN_TOKEN', raising=False)
    path = write_config(tmp_path / 'config.ini', web={'host': '0.0.0.0'})
    config = load_config(path)
    assert is_loopback('127.0.0.1') and is_loopback('::1') and is_loopback('localhost')
    assert not is_loopback('0.0.0.0') and not is_loopback('192.168.1.10') and not is_loopback('example.com')
    check_bind(config, '127.0.0.1')
    with pytest.raises(ConfigError, match='admin_token'):
        check_bind(config, '0.0.0.0')
    assert main(['--config', str(path)]) == 1
    assert 'HUIXIANGDOU_ADMIN_TOKEN' in capsys.readouterr().err
    assert main(['--config', str(path), '--host', '::']) == 1
    monkeypatch.setenv('HUIXIANGDOU_ADMIN_TOKEN', 'from-the-environment')
    check_bind(load_config(path), '0.0.0.0')


# ---- Host header (DNS rebinding) and throttled token guessing ---------------------------------------

READS = ('/', '/static/app.js', '/api/messages', '/api/kb', '/api/examples', '/api/chunks?path=a.md',
         '/api/integrations', '/api/session', '/v1/models')


async def test_a_foreign_host_header_is_refused_everywhere(bare_console):
    # What a page at evil.example sends once it has rebound its name to 127.0.0.1.
    url = await bare_console(web={'allowed_hosts': ['console.example.com']})
    port = url.rsplit(':', 1)[1]
    async with aiohttp.ClientSession() as http:
        for path in READS:
            async with http.get(f'{url}{path}', headers={'Host': f'evil.example:{port}'}) as r:
                assert r.status == 421, path
                error = (await r.json())['error']
                assert error['code'] == 'unknown_host' and 'allowed_hosts' in error['message'], path
        for path, body in (('/api/ask', {'query': '安装需要什么？'}), ('/api/login', {'token': 'x'}),
                           ('/v1/chat/completions', {'model': 'huixiangdou',
                                                     'messages': [{'role': 'user', 'content': 'hi'}]})):
            async with http.post(f'{url}{path}', json=body, headers={'Host': f'evil.example:{port}'}) as r:
                assert r.status == 421, path
        # The names of this server: localhost, IP addresses, the configured name (any port: a proxy's).
        for host in (f'localhost:{port}', f'127.0.0.1:{port}', f'[::1]:{port}', 'console.example.com',
                     'Console.Example.com:443', f'LOCALHOST.:{port}'):
            async with http.get(f'{url}/api/messages', headers={'Host': host}) as r:
                assert r.status == 200, host
        async with http.get(f'{url}/api/kb', headers={'Host': 'sub.console.example.com'}) as r:
            assert r.status == 421


async def test_allowed_hosts_star_turns_the_check_off(bare_console):
    url = await bare_console(web={'allowed_hosts': ['*']})
    async with aiohttp.ClientSession() as http:
        async with http.get(f'{url}/api/messages', headers={'Host': 'anything.example'}) as r:
            assert r.status == 200


def test_allowed_hosts_must_be_host_names(tmp_path):
    for bad in ('https://console.example.com', 'console.example.com:8080', 'a/b', ''):
        path = write_config(tmp_path / 'config.ini', web={'allowed_hosts': [bad]})
        with pytest.raises(ConfigError, match=r'\[web\] allowed_hosts\[0\]'):
            load_config(path)


async def attempt(http: aiohttp.ClientSession, url: str, token: str, via: str) -> aiohttp.ClientResponse:
    if via == 'bearer':
        response = await http.post(f'{url}/api/examples', json=NEW_EXAMPLE, headers={'Authorization': f'Bearer {token}'})
    else:
        response = await http.post(f'{url}/api/login', json={'token': token})
    await response.read()
    return response


async def retry_after_lockout(http, url: str, token: str, via: str, deadline: float = 120) -> aiohttp.ClientResponse:
    """Keep trying (as a client obeying Retry-After would) until the answer is not 429."""
    import asyncio
    import time

    end = time.monotonic() + deadline
    while True:
        response = await attempt(http, url, token, via)
        if response.status != 429 or time.monotonic() > end:
            return response
        await asyncio.sleep(min(float(response.headers['Retry-After']), 1.0) / 4)


@pytest.mark.parametrize('via', ['bearer', 'login'])
async def test_wrong_tokens_are_throttled_with_a_growing_delay(bare_console, via):
    from loguru import logger

    url = await bare_console()
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level='DEBUG')
    try:
        async with aiohttp.ClientSession() as http:
            statuses = [(await attempt(http, url, f'guess-{i}', via)).status for i in range(5)]
            assert statuses == [401] * 5
            # The sixth wrong token starts a lockout; every attempt during it, however fast, is a 429.
            assert (await attempt(http, url, 'guess-5', via)).status == 401
            waits = []
            for i in range(50):
                r = await attempt(http, url, f'fast-{i}', via)
                assert r.status == 429
                waits.append(int(r.headers['Retry-After']))
            assert waits[0] == 1 and (await r.json())['error']['code'] == 'too_many_attempts'
            # Once it is over the next wrong token locks the address out twice as long, then four times.
            for lockout in (2, 4):
                assert (await retry_after_lockout(http, url, 'guess-again', via)).status == 401
                r = await attempt(http, url, 'guess-again', via)
                assert r.status == 429 and 1 <= int(r.headers['Retry-After']) <= lockout
            # Even the right token waits out the lockout (else it would not slow guessing); then it works,
            # and a success starts the count again.
            r = await attempt(http, url, ADMIN_TOKEN, via)
            assert r.status == 429
            assert (await retry_after_lockout(http, url, ADMIN_TOKEN, via)).status in (200, 201)
            assert (await attempt(http, url, 'one-more-typo', via)).status == 401
    finally:
        logger.remove(sink)
    warnings = [line for line in lines if 'wrong admin token from 127.0.0.1' in line]
    lockouts = [line.rsplit('locked out for ', 1)[1].split(')')[0] for line in warnings if 'locked out' in line]
    assert len(warnings) == 9 and lockouts == ['1 s', '2 s', '4 s']  # 5 free, then doubling
    assert not [line for line in lines if 'guess' in line or ADMIN_TOKEN in line]


async def test_behind_a_trusted_proxy_one_guesser_does_not_lock_other_clients_out(bare_console):
    """With [web] trusted_proxies naming the proxy, wrong tokens count against the client X-Forwarded-For
    names: a guesser locks itself out, another client behind the same proxy still logs in. Without it,
    the header is ignored (a client could write any address there to escape its lockout)."""
    async def login(http, url, token, client):
        async with http.post(f'{url}/api/login', json={'token': token},
                             headers={'X-Forwarded-For': f'6.6.6.6, {client}'}) as r:
            return r.status

    proxied = await bare_console(web={'trusted_proxies': ['127.0.0.1']})
    direct = await bare_console()
    async with aiohttp.ClientSession() as http:
        for _ in range(6):
            assert await login(http, proxied, 'guess', '203.0.113.7') == 401
        assert await login(http, proxied, 'guess', '203.0.113.7') == 429        # the guesser is locked out
        assert await login(http, proxied, ADMIN_TOKEN, '198.51.100.4') == 200   # another client is not
        for i in range(6):
            assert await login(http, direct, 'guess', f'203.0.113.{i}') == 401
        # Untrusted: the header changed every time and still the one address (the proxy's) is locked out.
        assert await login(http, direct, ADMIN_TOKEN, '198.51.100.4') == 429


def test_trusted_proxies_must_be_addresses(tmp_path):
    path = write_config(tmp_path / 'config.ini', web={'trusted_proxies': ['proxy.example.com']})
    with pytest.raises(ConfigError, match=r'\[web\] trusted_proxies.*proxy.example.com'):
        load_config(path)
