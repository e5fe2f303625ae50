"""Hostile requests to the console get a 4xx with a message, never a 500: bodies whose Content-Encoding does
not decode, JSON nested 100,000 deep, fields of the wrong type, multipart bodies whose boundary does not
match, NUL and overlong file names, and /static/ paths the file system cannot hold."""
from __future__ import annotations

import gzip
import json
import zlib

import aiohttp
import pytest

from tests.web.conftest import ADMIN_TOKEN

AUTH = {'Authorization': f'Bearer {ADMIN_TOKEN}'}
JSON = {'Content-Type': 'application/json'}
# Every endpoint that reads a JSON body, with a valid body (some need the token).
JSON_ENDPOINTS = [('POST', '/api/login'), ('POST', '/api/ask'), ('POST', '/v1/chat/completions'),
                  ('POST', '/api/examples'), ('PUT', '/api/examples/good/0'), ('POST', '/api/messages/abc/label'),
                  ('POST', '/api/integrations/test'), ('POST', '/api/rebuild')]


@pytest.fixture
async def console(bare_console):
    url = await bare_console()
    async with aiohttp.ClientSession() as http:
        yield url, http


async def send(http: aiohttp.ClientSession, method: str, url: str, **kwargs) -> tuple[int, dict]:
    async with http.request(method, url, **kwargs) as r:
        text = await r.text()
        assert r.status < 500, (method, url, r.status, text[:300])
        assert 'Traceback' not in text
        return r.status, (json.loads(text) if r.content_type == 'application/json' else {'text': text})


async def test_a_body_that_is_not_what_its_content_encoding_says_is_a_400(console):
    url, http = console
    for method, path in JSON_ENDPOINTS:
        status, body = await send(http, method, f'{url}{path}', data=b'{"not": "gzip"}',
                                  headers={**JSON, **AUTH, 'Content-Encoding': 'gzip'})
        assert status == 400, path
        assert body['error']['code'] == 'bad_body' and 'gzip' in body['error']['message']
        # Other encodings are refused before reading (aiohttp's deflate decoder can hang on a bad stream).
        for encoding in ('deflate', 'br', 'zstd', 'bogus', 'gzip, gzip'):
            data = zlib.compress(b'{}') if encoding == 'deflate' else b'{}'
            status, body = await send(http, method, f'{url}{path}', data=data,
                                      headers={**JSON, **AUTH, 'Content-Encoding': encoding})
            if encoding in ('br', 'zstd') and status == 400:
                continue  # aiohttp refuses these itself (its decoders are not installed), before any handler
            assert status == 415 and body['error']['code'] == 'unsupported_encoding', (path, encoding)
    status, body = await send(http, 'POST', f'{url}/api/files', data=b'not gzip',
                              headers={**AUTH, 'Content-Encoding': 'gzip',
                                       'Content-Type': 'multipart/form-data; boundary=abc'})
    assert status == 400 and body['error']['code'] == 'bad_body'
    # The server is fine afterwards, and real gzip is read.
    assert (await send(http, 'GET', f'{url}/api/session'))[0] == 200
    status, _ = await send(http, 'POST', f'{url}/api/examples', data=gzip.compress(b'{"kind": "good", "text": "gz"}'),
                           headers={**JSON, **AUTH, 'Content-Encoding': 'gzip'})
    assert status == 201


async def test_json_nested_100000_deep_is_a_400_on_every_json_endpoint(console):
    url, http = console
    for method, path in JSON_ENDPOINTS:
        for raw in (b'[' * 100_000, b'{"query": ' + b'[' * 100_000, b'{"a":' * 50_000):
            status, body = await send(http, method, f'{url}{path}', data=raw, headers={**JSON, **AUTH})
            assert status == 400, path
            assert body['error']['code'] == 'bad_json' and 'deeper' in body['error']['message'], path


@pytest.mark.parametrize('method, path, body', [
    ('POST', '/api/messages/abc/label', {'label': {}}),
    ('POST', '/api/messages/abc/label', {'label': ['should_answer']}),
    ('POST', '/api/examples', {'kind': {}, 'text': 'x'}),
    ('POST', '/api/examples', {'kind': 'good', 'text': {'a': 1}}),
    ('PUT', '/api/examples/good/0', {'text': []}),
    ('POST', '/api/integrations/test', {'target': {}}),
    ('POST', '/api/rebuild', {'full': 'yes'}),
    ('POST', '/api/ask', {'query': ['q']}),
    ('POST', '/api/ask', {'query': 'q', 'group_id': {'a': 1}}),
    ('POST', '/api/ask', {'query': 'q', 'group_id': 'g' * 1000}),
    ('POST', '/v1/chat/completions', {'model': {}, 'messages': [{'role': 'user', 'content': 'q'}]}),
    ('POST', '/v1/chat/completions', {'messages': [{'role': 'user', 'content': 'q'}], 'user': 5}),
    ('POST', '/v1/chat/completions', {'messages': [{'role': 'user', 'content': 'q'}], 'stream': 'no'}),
    ('POST', '/v1/chat/completions', {'messages': {'role': 'user'}}),
])
async def test_a_field_of_the_wrong_type_is_a_400(console, method, path, body):
    url, http = console
    status, answer = await send(http, method, f'{url}{path}', json=body, headers=AUTH)
    assert status == 400, answer
    assert answer['error']['message']


def multipart(boundary: str, *parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body written by hand (clients refuse to send the hostile ones)."""
    out = b''
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else '')
        out += f'--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n'.encode() + content + b'\r\n'
    return out + f'--{boundary}--\r\n'.encode()


@pytest.mark.parametrize('path', ['/api/files', '/api/examples/import'])
async def test_a_multipart_body_whose_boundary_does_not_match_is_a_400(console, path):
    url, http = console
    for content_type in ('multipart/form-data; boundary=abc', 'multipart/form-data'):
        body = multipart('xyz', ('kind', None, b'good'), ('file', 'a.md', b'hello'))
        status, answer = await send(http, 'POST', f'{url}{path}', data=body,
                                    headers={**AUTH, 'Content-Type': content_type})
        assert status == 400, answer
        assert 'boundary' in answer['error']['message']


async def test_a_file_name_with_a_nul_byte_or_too_long_for_the_file_system_is_a_400(console, bare_console):
    url, http = console
    headers = {**AUTH, 'Content-Type': 'multipart/form-data; boundary=abc'}
    for name in ('a\x00b.md', '文' * 100 + '.md', 'a' * 256 + '.md'):
        body = multipart('abc', ('file', name, b'# hello'))
        status, answer = await send(http, 'POST', f'{url}/api/files', data=body, headers=headers)
        assert status == 400, name
        assert answer['error']['message']
    for folder in ('文' * 100, '/'.join(['d' * 200] * 10), 'a\x00b'):
        body = multipart('abc', ('folder', None, folder.encode()), ('file', 'ok.md', b'# hello'))
        status, answer = await send(http, 'POST', f'{url}/api/files', data=body, headers=headers)
        assert status == 400, folder[:20]
    async with http.get(f'{url}/api/kb') as r:
        assert (await r.json())['files'] == []  # nothing was stored
    # 85 CJK characters (255 bytes with .md) fit.
    body = multipart('abc', ('file', '文' * 84 + '.md', b'# hello'))
    assert (await send(http, 'POST', f'{url}/api/files', data=body, headers=headers))[0] == 201


async def test_an_example_file_nested_too_deep_is_a_400(console):
    url, http = console
    body = multipart('abc', ('kind', None, b'good'), ('file', 'q.json', b'[' * 100_000))
    status, answer = await send(http, 'POST', f'{url}/api/examples/import', data=body,
                                headers={**AUTH, 'Content-Type': 'multipart/form-data; boundary=abc'})
    assert status == 400 and answer['error']['code'] == 'bad_examples'


async def test_a_static_path_too_long_for_the_file_system_is_a_404(console):
    url, http = console
    for name in ('a' * 300, '文' * 100, 'x/' * 700 + 'y', 'a%00b'):
        status, _ = await send(http, 'GET', f'{url}/static/{name}')
        assert status in (400, 404), name[:20]
    assert (await send(http, 'GET', f'{url}/static/app.js'))[0] == 200
