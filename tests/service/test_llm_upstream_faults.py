"""What the server makes of a misbehaving upstream (malformed JSON, a malformed SSE event, a dropped
connection, a burst of 429s) and of hostile client input (deep nesting, lone surrogates)."""
from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest

from huixiangdou.config import LLMConfig
from huixiangdou.service.llm.openai_compatible import OpenAICompatibleBackend
from huixiangdou.service.llm.router import Router
from huixiangdou.service.llm_server_hybrid import create_app
from tests.fakes.fake_openai import FakeOpenAI, fake_openai  # noqa: F401 - fixture
from tests.service.test_llm_server import chat_calls, post, remote_config, serve, sse_text

CHAT = {'messages': [{'role': 'user', 'content': 'a long answer please'}]}


async def post_raw(url: str, payload) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.post(url, json=payload) as response:
        return response.status, response.content_type, await response.text()


def sse_events(text: str) -> list:
    return [line[6:] for line in text.splitlines() if line.startswith('data: ')]


@pytest.mark.parametrize('endpoint, payload', [('/inference', {'prompt': 'x'}), ('/v1/chat/completions', CHAT)])
async def test_malformed_json_from_upstream_is_a_json_503(fake_openai, endpoint, payload):
    fake_openai.fail('bad_json')
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        status, content_type, text = await post_raw(url + endpoint, payload)
    assert (status, content_type) == (503, 'application/json')
    error = json.loads(text)['error']
    assert error['code'] == 'upstream_malformed' and 'malformed JSON' in error['message']
    assert 'Traceback' not in text


@contextlib.asynccontextmanager
async def two_remotes(first: FakeOpenAI, second: FakeOpenAI):
    """Two real remote backends, the first registered as 'local', so 'auto' tries it first."""
    backends = {}
    for name, fake in (('local', first), ('remote', second)):
        backend = OpenAICompatibleBackend(remote_config(fake.base_url, remote_max_retries=0).server)
        backend.name = name
        backend.warm_up()
        backends[name] = backend
    router = Router(backends)
    try:
        async with serve(create_app(LLMConfig(), router)) as url:
            yield url
    finally:
        await router.close()


@pytest.mark.parametrize('stream', [False, True])
async def test_malformed_json_falls_back_to_the_other_backend(fake_openai, stream):
    fake_openai.fail('bad_json')
    async with FakeOpenAI() as healthy, two_remotes(fake_openai, healthy) as url:
        async with aiohttp.ClientSession() as http:
            async with http.post(f'{url}/v1/chat/completions', json={**CHAT, 'stream': stream}) as response:
                status, backend, text = response.status, response.headers['X-HuixiangDou-Backend'], \
                    await response.text()
    assert (status, backend) == (200, 'remote')
    answer = sse_text(text) if stream else json.loads(text)['choices'][0]['message']['content']
    assert answer == 'echo: a long answer please'
    assert len(chat_calls(healthy)) == 1


async def test_a_malformed_sse_event_ends_the_stream_with_an_error_event_and_done(fake_openai):
    fake_openai.fail('bad_sse')
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        status, _, text = await post_raw(f'{url}/v1/chat/completions', {**CHAT, 'stream': True})
    events = sse_events(text)
    assert status == 200 and events[-1] == '[DONE]'
    assert json.loads(events[-2])['error']['code'] == 'upstream_malformed'
    assert json.loads(events[1])['choices'][0]['delta']['content'] == 'echo'


@pytest.mark.parametrize('endpoint, payload', [('/inference', {'prompt': 'x'}),
                                               ('/v1/chat/completions', {**CHAT, 'stream': True})])
async def test_a_dropped_connection_is_reported_as_such_not_as_a_timeout(fake_openai, endpoint, payload):
    fake_openai.fail('close')
    async with serve(create_app(remote_config(fake_openai.base_url, remote_max_retries=0,
                                              remote_timeout=8.0))) as url:
        status, body = await post(url + endpoint, payload)
    assert status == 503 and body['error']['code'] == 'upstream_disconnected'
    assert 'closed the connection' in body['error']['message']
    assert 'within' not in body['error']['message']


async def test_a_stream_cut_midway_says_the_connection_dropped(fake_openai):
    fake_openai.fail('break_stream', times=1)
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        _, _, text = await post_raw(f'{url}/v1/chat/completions', {**CHAT, 'stream': True})
    assert json.loads(sse_events(text)[-2])['error']['code'] == 'upstream_disconnected'


async def test_429_refusals_do_not_spend_the_rpm_budget(fake_openai):
    fake_openai.fail('429', times=2, retry_after=0)
    config = remote_config(fake_openai.base_url, rpm=2, remote_timeout=2.0)
    async with serve(create_app(config)) as url:
        statuses = [(await post(f'{url}/inference', {'prompt': f'q{i}'}))[0] for i in range(2)]
    assert statuses == [200, 200]
    assert len(chat_calls(fake_openai)) == 4  # two refused, two served: the budget held exactly the served


@pytest.mark.parametrize('endpoint', ['/inference', '/v1/chat/completions'])
async def test_deeply_nested_json_is_400(fake_openai, endpoint):
    deep = ('{"prompt": "x", "messages": ' + '[' * 1000 + ']' * 1000 + '}').encode()
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        status, body = await post(url + endpoint, data=deep)
    assert status == 400 and 'deeper' in body['error']['message']


@pytest.mark.parametrize('endpoint, payload', [
    ('/inference', {'prompt': 'a\ud800b', 'history': [['\udfff', 'ok']]}),
    ('/v1/chat/completions', {'messages': [{'role': 'user', 'content': 'a\ud800b'}], 'stream': True}),
])
async def test_lone_surrogates_are_replaced_not_a_500(fake_openai, endpoint, payload):
    data = json.dumps(payload).encode()  # ensure_ascii: the surrogate travels as a \ud800 escape
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        async with aiohttp.ClientSession() as http:
            async with http.post(url + endpoint, data=data,
                                 headers={'Content-Type': 'application/json'}) as response:
                status = response.status
    assert status == 200
    assert chat_calls(fake_openai)[-1].body['messages'][-1]['content'] == 'a\ufffdb'


async def test_lone_surrogates_from_upstream_do_not_break_the_stream(fake_openai):
    fake_openai.responder = lambda messages: 'bad \ud83d half'
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        status, _, text = await post_raw(f'{url}/v1/chat/completions', {**CHAT, 'stream': True})
    events = sse_events(text)
    assert status == 200 and events[-1] == '[DONE]'
    answer = ''.join(c['delta'].get('content', '') for e in events[:-1] for c in json.loads(e)['choices'])
    assert answer == 'bad \ufffd half'


@pytest.mark.parametrize('mode, retry_after', [('429', 0.2), ('503', 0), ('500', None), ('close', None)],
                         ids=['429-retry-after', '503', '500-documented-transient', 'dropped-connection'])
async def test_the_remote_backend_retries_transient_upstream_failures(fake_openai, mode, retry_after):
    fake_openai.fail(mode, times=2, retry_after=retry_after)
    config = remote_config(fake_openai.base_url, remote_max_retries=2)
    async with serve(create_app(config)) as url:
        status, body = await post(f'{url}/inference', {'prompt': 'try again'})
    assert status == 200 and body['text'] == 'echo: try again'
    assert len(chat_calls(fake_openai)) == 3


async def test_the_remote_backend_does_not_retry_a_400(fake_openai):
    fake_openai.fail('400', times=1)
    async with serve(create_app(remote_config(fake_openai.base_url, remote_max_retries=3))) as url:
        status, body = await post(f'{url}/inference', {'prompt': 'x'})
    assert status == 503 and 'refused the request (400)' in body['error']['message']
    assert len(chat_calls(fake_openai)) == 1


async def test_a_retry_after_past_remote_timeout_fails_at_once(fake_openai):
    fake_openai.fail('429', retry_after=30)
    async with serve(create_app(remote_config(fake_openai.base_url, remote_max_retries=5,
                                              remote_timeout=2.0))) as url:
        started = asyncio.get_running_loop().time()
        status, body = await post(f'{url}/inference', {'prompt': 'x'})
    assert asyncio.get_running_loop().time() - started < 1.5
    assert status == 429 and body['error']['code'] == 'rate_limited'
    assert len(chat_calls(fake_openai)) == 1
