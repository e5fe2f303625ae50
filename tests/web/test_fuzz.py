"""Property-based: no request body, however hostile, gets a 5xx or a traceback from the console: the JSON
endpoints (near-valid bodies with fields of any type, raw hostility, deep nesting), any body under a
Content-Encoding it may or may not match, and multipart uploads with mismatched boundaries, hostile part
headers and file names. A console on an empty folder (no store: /api/ask and /v1 answer 503 no_store)."""
from __future__ import annotations

import gzip
import http.client
import json
import zlib

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import free_port, write_config
from tests.frontend.callback_fuzz import LogWatch, ServerThread, encoded, hostile_bodies, mutated, texts
from tests.web.conftest import ADMIN_TOKEN

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
AUTH = {'Authorization': f'Bearer {ADMIN_TOKEN}'}
# Without a store these answer 503 (documented: build the store first); anything else 5xx is a bug.
NO_STORE_PATHS = ('/api/ask', '/v1/chat/completions')


class Console(ServerThread):
    app: web.Application

    def send(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, str]:
        connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers={'Content-Type': 'application/json', **AUTH,
                                                                  **headers})
            response = connection.getresponse()
            return response.status, response.read().decode('utf-8', 'replace')
        finally:
            connection.close()

    def fresh_throttle(self) -> None:
        """Wrong login tokens lock 127.0.0.1 out: start each property with a clean count."""
        from huixiangdou.primitive.failure_throttle import FailureThrottle
        from huixiangdou.web import auth

        self.app[auth.THROTTLE] = FailureThrottle()


@pytest.fixture(scope='module')
def console(tmp_path_factory, embedder):
    from huixiangdou.config import load_config
    from huixiangdou.web.app import create_app

    root = tmp_path_factory.mktemp('fuzz-console')
    port, dead_llm = free_port(), free_port()
    config = load_config(write_config(
        root / 'config.ini', feature_store={'embedding_model_path': ''},
        llm={'enable_local': 0, 'enable_remote': 1, 'client_url': f'http://127.0.0.1:{dead_llm}/inference',
             'client_max_retries': 0, 'client_timeout': 2.0},
        web={'port': port, 'admin_token': ADMIN_TOKEN, 'max_upload_mb': 0.05}))
    app = create_app(config, embedder=embedder)

    async def start():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, '127.0.0.1', port, shutdown_timeout=0.5).start()
        return port, runner.cleanup

    server = Console(start)
    server.app = app
    with server:
        yield server


def check(console: Console, watch: LogWatch, method: str, path: str, body: bytes, headers: dict) -> None:
    status, text = console.send(method, path, body, headers)
    no_store = path in NO_STORE_PATHS and status == 503 and 'no_store' in text
    assert status < 500 or no_store, (method, path, status, text[:300])
    assert 'Traceback' not in text
    # aiohttp itself answers 400 (and logs it) for a deflate stream that only fails at its very end.
    problems = [p for p in watch.problems if 'ContentEncodingError' not in p]
    assert not problems, problems[:3]


def ask_body() -> dict:
    return {'query': 'fuzz question', 'group_id': 'fuzz'}


def chat_body() -> dict:
    return {'model': 'huixiangdou', 'stream': False, 'user': 'fuzz',
            'messages': [{'role': 'user', 'content': 'q'}, {'role': 'assistant', 'content': 'a'},
                         {'role': 'user', 'content': [{'type': 'text', 'text': 'fuzz question'}]}]}


JSON_ENDPOINTS = [
    ('POST', '/api/ask', mutated(ask_body, ['query', 'group_id'])),
    ('POST', '/v1/chat/completions', mutated(chat_body, ['model', 'stream', 'user', 'messages'])),
    ('POST', '/api/examples', mutated(lambda: {'kind': 'good', 'text': 'fuzz example'}, ['kind', 'text'])),
    ('PUT', '/api/examples/bad/0', mutated(lambda: {'text': 'fuzz edit'}, ['text'])),
    ('POST', '/api/messages/abc/label', mutated(lambda: {'label': 'should_answer'}, ['label'])),
    ('POST', '/api/integrations/test', mutated(lambda: {'target': 'frontend'}, ['target'])),
    ('POST', '/api/login', mutated(lambda: {'token': ADMIN_TOKEN}, ['token'])),
]


@pytest.mark.parametrize('method, path, bodies', JSON_ENDPOINTS, ids=[p for _, p, _ in JSON_ENDPOINTS])
def test_hostile_json_bodies_get_no_5xx(console, method, path, bodies):
    console.fresh_throttle()
    with LogWatch() as watch:
        @FUZZ
        @given(body=hostile_bodies(bodies))
        def fuzz(body: bytes) -> None:
            check(console, watch, method, path, body, {})
        fuzz()
    assert not console.loop_errors


def compress(encoding: str, raw: bytes) -> bytes:
    if encoding in ('gzip', 'x-gzip'):
        return gzip.compress(raw)
    return zlib.compress(raw) if encoding == 'deflate' else raw


# How the bytes relate to the declared encoding: right, not compressed at all, cut short, or noise after.
encodings = st.sampled_from(['gzip', 'deflate', 'br', 'identity', 'x-gzip'])
shapes = st.sampled_from(['right', 'raw', 'truncated', 'trailing', 'flipped'])


def shaped(encoding: str, shape: str, raw: bytes, noise: bytes) -> bytes:
    packed = compress(encoding, raw)
    if shape == 'raw':
        return raw
    if shape == 'truncated':
        return packed[:max(1, len(packed) // 2)]
    if shape == 'trailing':
        return packed + noise
    if shape == 'flipped' and len(packed) > 12:
        middle = len(packed) // 2
        return packed[:middle] + bytes([packed[middle] ^ 0xFF]) + packed[middle + 1:]
    return packed


@pytest.mark.parametrize('method, path', [('POST', '/api/ask'), ('POST', '/v1/chat/completions'),
                                          ('POST', '/api/examples'), ('POST', '/api/login')])
def test_any_content_encoding_mismatch_gets_no_5xx(console, method, path):
    console.fresh_throttle()
    bodies = dict((p, b) for _, p, b in JSON_ENDPOINTS)[path]
    with LogWatch() as watch:
        @FUZZ
        @given(encoding=encodings, shape=shapes, raw=encoded(bodies) | st.binary(max_size=200),
               noise=st.binary(min_size=1, max_size=50))
        def fuzz(encoding: str, shape: str, raw: bytes, noise: bytes) -> None:
            check(console, watch, method, path, shaped(encoding, shape, raw, noise), {'Content-Encoding': encoding})
        fuzz()
    assert not console.loop_errors


boundaries = st.text(alphabet='abcdefghijklmnopqrstuvwxyz0123456789-_', min_size=1, max_size=20)
file_names = st.one_of(
    texts, st.sampled_from(['a.md', '../up.md', 'a\x00b.md', '文' * 100 + '.md', 'x' * 300 + '.txt', '.hidden.md',
                            'C:\\x.md', 'a%00b.md', '%E6%96%87.md', 'dir/', '']))
part_names = st.sampled_from(['file', 'folder', 'kind', 'other']) | texts
charsets = st.none() | st.sampled_from(['utf-8', 'latin-1', 'bogus-charset', 'utf-16'])


@st.composite
def multipart_bodies(draw) -> tuple[bytes, str]:
    declared = draw(boundaries)
    used = draw(st.sampled_from([declared, declared + 'x', 'other']) | boundaries)
    body = b''
    for _ in range(draw(st.integers(0, 3))):
        name, filename, charset = draw(part_names), draw(st.none() | file_names), draw(charsets)
        disposition = f'form-data; name="{name}"' + ('' if filename is None else f'; filename="{filename}"')
        head = f'Content-Disposition: {disposition}\r\n'
        if charset:
            head += f'Content-Type: text/plain; charset={charset}\r\n'
        content = draw(st.sampled_from([b'good', b'# doc\n', '文档'.encode(), b'[' * 200]) | st.binary(max_size=100))
        body += f'--{used}\r\n'.encode() + head.encode('utf-8', 'surrogatepass') + b'\r\n' + content + b'\r\n'
    ending = draw(st.sampled_from([f'--{used}--\r\n'.encode(), b'', b'--', b'garbage']))
    content_type = draw(st.sampled_from([f'multipart/form-data; boundary={declared}', 'multipart/form-data',
                                         f'multipart/mixed; boundary="{declared}"']))
    return body + ending, content_type


@pytest.mark.parametrize('path', ['/api/files', '/api/examples/import'])
def test_hostile_multipart_bodies_get_no_5xx(console, path):
    console.fresh_throttle()
    with LogWatch() as watch:
        @FUZZ
        @given(upload=multipart_bodies(), encoding=st.none() | encodings)
        def fuzz(upload: tuple[bytes, str], encoding: str | None) -> None:
            body, content_type = upload
            headers = {'Content-Type': content_type}
            if encoding:
                headers['Content-Encoding'] = encoding
            check(console, watch, 'POST', path, body, headers)
        fuzz()
        status, text = console.send('POST', path, b'', {'Content-Type': 'multipart/form-data; boundary=b'})
        assert status == 400, text
    assert not console.loop_errors


def test_the_console_still_answers_after_the_fuzzing(console):
    console.fresh_throttle()
    status, text = console.send('POST', '/api/login', json.dumps({'token': ADMIN_TOKEN}).encode(), {})
    assert status == 200, text
