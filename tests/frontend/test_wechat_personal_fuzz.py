"""Property-based fuzzing of the wechat_personal endpoint: hostile bodies get 4xx, never 5xx or a traceback.

One real server on 127.0.0.1 (in a thread, so hypothesis drives it with a plain blocking client); bodies are
random bytes, random JSON, deep nesting, huge strings, lone surrogates and wrong types in both formats.
About 15 s on two cores.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from huixiangdou.frontend.wechat_personal import WechatPersonalServer
from tests.frontend.conftest import ScriptedResponder, frontend_config

TOKEN = 'fuzz-token'
PATH = '/huixiangdou/Zq3vX9kLm2Tr8WbYc4Hd'
MAX_BODY = 64 * 1024
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Live:
    """The server running on its own event loop thread, plus every ERROR / traceback it logged."""

    def __init__(self):
        self.problems: list[str] = []
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        frontend = frontend_config(type='wechat_personal', max_body_size=MAX_BODY, reply_rate_per_minute=1000)
        settings_ = frontend.wechat_personal
        settings_.host, settings_.token, settings_.path, settings_.reply_timeout = '127.0.0.1', TOKEN, PATH, 5.0
        self.server = WechatPersonalServer(frontend, ScriptedResponder(), port=0)
        self.port = self.loop.run_until_complete(self.server.start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())

    def start(self):
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def post(self, raw: bytes, token: str = TOKEN) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
        headers = {'Content-Type': 'application/json'}
        if token:
            headers['Authorization'] = f'Bearer {token}'
        try:
            conn.request('POST', PATH, body=raw, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


class _StdlibErrors(logging.Handler):
    def __init__(self, problems):
        super().__init__(logging.ERROR)
        self.problems = problems

    def emit(self, record):  # aiohttp reports unhandled handler errors through stdlib logging
        self.problems.append(f'{record.name}: {record.getMessage()}')


@pytest.fixture(scope='module')
def live():
    live = Live()

    def sink(message):
        record = message.record
        if record['level'].no >= logging.ERROR or record['exception'] is not None or 'Traceback' in str(message):
            live.problems.append(str(message))

    sink_id = logger.add(sink, level='DEBUG')
    stdlib = _StdlibErrors(live.problems)
    logging.getLogger().addHandler(stdlib)
    live.start()
    yield live
    live.stop()
    logging.getLogger().removeHandler(stdlib)
    logger.remove(sink_id)


def encode(value) -> bytes:
    # ensure_ascii writes lone surrogates as \ud800 escapes, which is how they arrive over the wire.
    return json.dumps(value, ensure_ascii=True).encode()


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=50))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=15)
surrogate_text = st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(),
                         min_size=1, max_size=30)
huge_text = st.integers(min_value=1_000, max_value=2 * MAX_BODY).map(lambda n: '茴' * (n // 3) + 'a' * (n % 3))
field_value = st.one_of(json_values, surrogate_text, huge_text, st.sampled_from(['text', 'poll', 'image', '']))

MISSING = object()
APP_FIELDS = ('query_id', 'groupname', 'username', 'query', 'query.type', 'query.content')
OUR_FIELDS = ('group_id', 'group_name', 'sender', 'content', 'message_id')


def mutated(base: dict, changes: dict) -> dict:
    """`base` with some fields (dotted for nested) replaced by hostile values or removed."""
    body = json.loads(json.dumps(base))
    for dotted, value in changes.items():
        *parents, key = dotted.split('.')
        target = body
        for parent in parents:
            target = target.get(parent) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue   # a parent was already replaced by a non-object
        if value is MISSING:
            target.pop(key, None)
        else:
            target[key] = value
    return body


# Start from a valid post and break one to three fields, so every field's check is reached.
app_bodies = st.builds(
    mutated,
    st.sampled_from(['text', 'poll']).map(lambda kind: {'query_id': 'g', 'groupname': 'g', 'username': 'u',
                                                        'query': {'type': kind, 'content': 'install?'}}),
    st.dictionaries(st.sampled_from(APP_FIELDS), field_value | st.just(MISSING), min_size=1, max_size=3))
our_bodies = st.builds(
    mutated, st.just({'group_id': 'g', 'group_name': 'g', 'sender': 'u', 'content': 'install?', 'message_id': 'm'}),
    st.dictionaries(st.sampled_from(OUR_FIELDS), field_value | st.just(MISSING), min_size=1, max_size=3))
deep = st.tuples(st.integers(min_value=1, max_value=20_000), st.sampled_from(['[', '{"query": '])).map(
    lambda d: (d[1] * d[0] + '1' + (']' if d[1] == '[' else '}') * d[0]).encode())
junk = st.one_of(st.binary(max_size=3000), st.binary(max_size=50).map(lambda b: b'{"query": "' + b + b'"}'),
                 st.just(b'\xed\xa0\x80'), st.just(b'{"groupname": NaN, "query": {}}'))


def assert_handled(live: Live, raw: bytes, token: str = TOKEN) -> None:
    status, body = live.post(raw, token)
    assert status < 500, (status, body[:200])
    assert not live.problems, live.problems[:3]
    if status != 413:
        assert isinstance(json.loads(body), dict)   # a JSON answer, never an HTML error page


@FUZZ
@given(raw=junk)
def test_random_bytes(live, raw):
    assert_handled(live, raw)


@FUZZ
@given(value=json_values)
def test_random_json(live, value):
    assert_handled(live, encode(value))


@FUZZ
@given(raw=deep)
def test_deep_nesting(live, raw):
    assert_handled(live, raw)


@FUZZ
@given(body=app_bodies, with_token=st.booleans())
def test_app_format_with_wrong_types_huge_strings_and_surrogates(live, body, with_token):
    assert_handled(live, encode(body), TOKEN if with_token else '')   # the secret path admits the app


@FUZZ
@given(body=our_bodies)
def test_our_format_with_wrong_types_huge_strings_and_surrogates(live, body):
    assert_handled(live, encode(body))


def test_valid_requests_still_work_after_the_fuzzing(live):
    # Runs after the fuzz tests in this module (pytest keeps file order).
    status, body = live.post(encode({'group_id': 'after-fuzz', 'content': 'how to install huixiangdou?'}))
    assert status == 200 and json.loads(body)['status'] == 'answered'
    app_post = {'query_id': 'after-fuzz-app', 'groupname': 'after-fuzz-app', 'username': 'u',
                'query': {'type': 'text', 'content': 'install?'}}
    assert live.post(encode(app_post), token='')[0] == 200
    asyncio.run_coroutine_threadsafe(live.server.dispatcher.wait_idle(), live.loop).result(10)
    status, body = live.post(encode({**app_post, 'query': {'type': 'poll', 'content': ''}}), token='')
    assert status == 200
    assert [item['rsp']['text'] for item in json.loads(body)['data']] == ['Answer to: install?']
    assert not live.problems
