"""The hybrid LLM server over real HTTP, with the remote backend pointed at the fake OpenAI service:
both endpoints, streaming, every fault (429, 500, hang, dropped connection), limits and error codes."""
from __future__ import annotations

import asyncio
import contextlib
import json
import sys

import aiohttp
import openai
import pytest
from aiohttp import web
from loguru import logger

from huixiangdou.config import LLMConfig, LLMServerConfig
from huixiangdou.service.llm_server_hybrid import create_app
from tests.fakes.fake_openai import FakeOpenAI, fake_openai  # noqa: F401 - fixture


def remote_config(base_url: str, **server) -> LLMConfig:
    """Remote backend only, pointed at a fake, with short delays so retries are quick."""
    settings = dict(remote_type='vllm', remote_base_url=base_url, remote_api_key='sk-fake',
                    remote_llm_model='fake-model', remote_retry_base_delay=0.01, remote_retry_max_delay=0.05,
                    remote_timeout=5.0)
    settings.update(server)
    return LLMConfig(enable_local=0, enable_remote=1, server=LLMServerConfig(**settings))


@contextlib.asynccontextmanager
async def serve(app: web.Application):
    """Run `app` on 127.0.0.1 at a free port; yield its base URL (no trailing slash)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, '127.0.0.1', 0, shutdown_timeout=0.5)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f'http://127.0.0.1:{port}'
    finally:
        await runner.cleanup()


async def post(url: str, payload=None, data: bytes | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=payload if data is None else None, data=data) as response:
            return response.status, await response.json(content_type=None)


def sse_text(body: str) -> str:
    """The answer carried by an OpenAI SSE body (delta contents joined)."""
    events = [line[6:] for line in body.splitlines() if line.startswith('data: ')]
    assert events[-1] == '[DONE]'
    return ''.join(c['delta'].get('content', '') for e in events[:-1] for c in json.loads(e)['choices'])


def chat_calls(fake: FakeOpenAI) -> list:
    return [r for r in fake.requests if r.path == '/v1/chat/completions']


async def test_inference_answers_with_history_pairs(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        status, body = await post(f'{url}/inference', {'prompt': '如何安装?', 'history': [['你好', '你好!']],
                                                       'backend': 'auto'})
    assert status == 200
    assert body == {'text': 'echo: 如何安装?', 'backend': 'remote', 'model': 'fake-model'}
    sent = chat_calls(fake_openai)[0]
    assert sent.body['messages'] == [{'role': 'user', 'content': '你好'}, {'role': 'assistant', 'content': '你好!'},
                                     {'role': 'user', 'content': '如何安装?'}]
    assert sent.headers['Authorization'] == 'Bearer sk-fake'


async def test_inference_accepts_role_content_history(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        status, _ = await post(f'{url}/inference', {'prompt': 'q', 'history': [
            {'role': 'system', 'content': 'be brief'}, {'role': 'user', 'content': 'a'},
            {'role': 'assistant', 'content': 'b'}]})
    assert status == 200
    assert chat_calls(fake_openai)[0].body['messages'][0] == {'role': 'system', 'content': 'be brief'}


async def test_openai_sdk_talks_to_the_server_plain_and_streaming(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        client = openai.AsyncOpenAI(base_url=f'{url}/v1', api_key='unused', max_retries=0)
        try:
            completion = await client.chat.completions.create(
                model='auto', messages=[{'role': 'user', 'content': 'hello world'}])
            pieces = []
            stream = await client.chat.completions.create(
                model='remote', messages=[{'role': 'user', 'content': '流式回答'}], stream=True)
            async for chunk in stream:
                pieces += [c.delta.content for c in chunk.choices if c.delta.content]
            models = await client.models.list()
        finally:
            await client.close()
    assert completion.choices[0].message.content == 'echo: hello world'
    assert completion.model == 'fake-model'
    assert len(pieces) > 1 and ''.join(pieces) == 'echo: 流式回答'
    assert {'auto', 'remote'} <= {m.id for m in models.data}
    assert chat_calls(fake_openai)[-1].body['stream'] is True


async def test_health_names_the_service_and_backends(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        async with aiohttp.ClientSession() as http, http.get(f'{url}/health') as response:
            body = await response.json()
    assert body == {'status': 'ok', 'service': 'huixiangdou-llm', 'backends': {'remote': 'fake-model'}}


@pytest.mark.parametrize('endpoint', ['/inference', '/v1/chat/completions'])
async def test_429_with_retry_after_is_retried_when_the_server_allows(fake_openai, endpoint):
    # Backoff alone would wait ~1000s and give up; succeeding proves Retry-After: 0 was honoured.
    config = remote_config(fake_openai.base_url, remote_retry_base_delay=1000.0, remote_retry_max_delay=1000.0)
    fake_openai.fail('429', times=2, retry_after=0)
    payload = ({'prompt': 'x'} if endpoint == '/inference'
               else {'messages': [{'role': 'user', 'content': 'x'}]})
    async with serve(create_app(config)) as url:
        status, _ = await post(url + endpoint, payload)
    assert status == 200
    assert len(chat_calls(fake_openai)) == 3


async def test_429_with_a_retry_after_past_the_timeout_gives_up_at_once(fake_openai):
    fake_openai.fail('429', retry_after=3600)
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        async with aiohttp.ClientSession() as http:
            async with http.post(f'{url}/inference', json={'prompt': 'x'}) as response:
                status, body = response.status, await response.json()
                retry_after = response.headers.get('Retry-After')
    assert status == 429 and body['error']['code'] == 'rate_limited'
    assert retry_after == '3600'
    assert len(chat_calls(fake_openai)) == 1


@pytest.mark.parametrize('mode', ['500', 'close'])
@pytest.mark.parametrize('endpoint', ['/inference', '/v1/chat/completions'])
async def test_transient_failures_are_retried(fake_openai, mode, endpoint):
    fake_openai.fail(mode, times=2)
    payload = ({'prompt': 'retry me'} if endpoint == '/inference'
               else {'messages': [{'role': 'user', 'content': 'retry me'}], 'stream': True})
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        async with aiohttp.ClientSession() as http, http.post(url + endpoint, json=payload) as response:
            status, text = response.status, await response.text()
    assert status == 200
    answer = json.loads(text)['text'] if endpoint == '/inference' else sse_text(text)
    assert answer == 'echo: retry me'
    assert len(chat_calls(fake_openai)) == 3


@pytest.mark.parametrize('endpoint', ['/inference', '/v1/chat/completions'])
async def test_persistent_500_answers_503_after_the_configured_retries(fake_openai, endpoint):
    fake_openai.fail('500')
    payload = ({'prompt': 'x'} if endpoint == '/inference' else {'messages': [{'role': 'user', 'content': 'x'}]})
    async with serve(create_app(remote_config(fake_openai.base_url, remote_max_retries=2))) as url:
        status, body = await post(url + endpoint, payload)
    assert status == 503
    assert body['error']['code'] == 'backend_unavailable' and '500' in body['error']['message']
    assert len(chat_calls(fake_openai)) == 3


@pytest.mark.parametrize('endpoint', ['/inference', '/v1/chat/completions'])
async def test_a_hanging_upstream_answers_504_within_the_timeout(fake_openai, endpoint):
    fake_openai.fail('hang')
    payload = ({'prompt': 'x'} if endpoint == '/inference'
               else {'messages': [{'role': 'user', 'content': 'x'}], 'stream': True})
    async with serve(create_app(remote_config(fake_openai.base_url, remote_timeout=0.5))) as url:
        # The outer guard only stops a broken test from hanging the suite; it is not a speed check.
        status, body = await asyncio.wait_for(post(url + endpoint, payload), 30)
    assert status == 504 and body['error']['code'] == 'upstream_timeout'


async def test_a_stream_that_breaks_midway_ends_with_an_error_event(fake_openai):
    fake_openai.fail('break_stream', times=1)
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        async with aiohttp.ClientSession() as http:
            async with http.post(f'{url}/v1/chat/completions', json={
                    'messages': [{'role': 'user', 'content': 'a long answer please'}], 'stream': True}) as response:
                events = [line[6:] for line in (await response.text()).splitlines() if line.startswith('data: ')]
    assert events[-1] == '[DONE]'
    assert 'error' in json.loads(events[-2])
    assert json.loads(events[1])['choices'][0]['delta']['content'] == 'echo'


async def test_a_wrong_key_is_not_retried_and_says_what_to_check(fake_openai):
    config = remote_config(fake_openai.base_url, remote_api_key='sk-wrong')
    async with serve(create_app(config)) as url:
        status, body = await post(f'{url}/inference', {'prompt': 'x'})
    assert status == 503 and 'remote_api_key' in body['error']['message']
    assert len(chat_calls(fake_openai)) == 1


async def test_the_api_key_never_reaches_the_log(fake_openai):
    fake_openai.api_key = 'sk-very-secret-key'
    lines: list[str] = []
    sink = logger.add(lines.append, level='DEBUG')
    try:
        fake_openai.fail('500', times=1)
        async with serve(create_app(remote_config(fake_openai.base_url, remote_api_key='sk-very-secret-key'))) as url:
            status, _ = await post(f'{url}/inference', {'prompt': 'x'})
    finally:
        logger.remove(sink)
    assert status == 200 and lines  # retries and startup were logged ...
    assert not any('sk-very-secret-key' in line for line in lines)  # ... without the key


async def test_rpm_budget_refuses_without_calling_upstream(fake_openai):
    config = remote_config(fake_openai.base_url, rpm=2, remote_timeout=0.5)
    async with serve(create_app(config)) as url:
        statuses = [(await post(f'{url}/inference', {'prompt': f'q{i}'}))[0] for i in range(3)]
    assert statuses == [200, 200, 429]
    assert len(chat_calls(fake_openai)) == 2


async def test_long_prompts_are_trimmed_to_the_remote_context(fake_openai):
    config = remote_config(fake_openai.base_url, remote_llm_max_text_length=300)
    history = [[f'第{i}轮问题' * 10, f'第{i}轮回答' * 10] for i in range(5)]
    prompt = '上下文' * 400 + '\n问题: HuixiangDou 支持飞书吗?'
    async with serve(create_app(config)) as url:
        status, body = await post(f'{url}/inference', {'prompt': prompt, 'history': history})
    assert status == 200
    sent = chat_calls(fake_openai)[0].body['messages']
    assert sum(len(m['content']) for m in sent) <= 300
    assert sent[-1]['content'].endswith('问题: HuixiangDou 支持飞书吗?')


@pytest.mark.parametrize('payload, data', [
    (None, b'{not json'),
    (None, b'[1, 2]'),
    ({'prompt': ''}, None),
    ({'prompt': 'x', 'history': 'nope'}, None),
    ({'prompt': 'x', 'backend': 'gpu'}, None),
    ({'prompt': 'x', 'history': [{'role': 'robot', 'content': 'x'}]}, None),
])
async def test_malformed_bodies_answer_400(fake_openai, payload, data):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        status, body = await post(f'{url}/inference', payload, data)
    assert status == 400 and body['error']['type'] == 'invalid_request_error'
    assert chat_calls(fake_openai) == []


async def test_chat_completions_without_messages_answers_400(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        status, body = await post(f'{url}/v1/chat/completions', {'model': 'auto', 'messages': []})
    assert status == 400 and 'messages' in body['error']['message']


@pytest.mark.parametrize('endpoint', ['/inference', '/v1/chat/completions'])
async def test_a_body_over_the_limit_answers_413(fake_openai, endpoint):
    config = remote_config(fake_openai.base_url, max_body_size=1024)
    async with serve(create_app(config)) as url:
        status, body = await post(url + endpoint, {'prompt': 'x' * 5000})
    assert status == 413 and 'max_body_size' in body['error']['message']


async def test_asking_for_a_disabled_backend_answers_503(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        status, body = await post(f'{url}/inference', {'prompt': 'x', 'backend': 'local'})
    assert status == 503 and 'enable_local' in body['error']['message']


async def test_self_hosted_preset_asks_the_server_for_its_model(fake_openai):
    fake_openai.model = 'Qwen2.5-7B-Instruct'
    config = remote_config(fake_openai.base_url, remote_llm_model='auto')
    async with serve(create_app(config)) as url:
        status, body = await post(f'{url}/inference', {'prompt': 'x'})
    assert status == 200 and body['model'] == 'Qwen2.5-7B-Instruct'


async def test_cli_help_names_the_config_option():
    process = await asyncio.create_subprocess_exec(
        sys.executable, '-m', 'huixiangdou.service.llm_server_hybrid', '--help',
        stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0 and b'--config' in out


async def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers) as response:
            return response.status, await response.json(content_type=None)


async def test_a_foreign_host_header_is_refused(fake_openai):
    """DNS rebinding: a page at evil.example whose name now points at 127.0.0.1 must not use the server."""
    config = remote_config(fake_openai.base_url, allowed_hosts=['llm.example.com'])
    async with serve(create_app(config)) as url:
        port = url.rsplit(':', 1)[1]
        evil = {'Host': f'evil.example:{port}'}
        async with aiohttp.ClientSession() as http:
            for path, body in (('/inference', {'prompt': 'x'}),
                               ('/v1/chat/completions', {'model': 'auto', 'messages': [{'role': 'user', 'content': 'x'}]})):
                async with http.post(url + path, json=body, headers=evil) as r:
                    assert r.status == 421, path
                    error = (await r.json())['error']
                    assert error['code'] == 'unknown_host' and '[llm.server] allowed_hosts' in error['message']
        for path in ('/v1/models', '/health'):
            assert (await get(url + path, evil))[0] == 421
        for host in ('llm.example.com', f'localhost:{port}', f'[::1]:{port}', f'127.0.0.1:{port}'):
            assert (await get(f'{url}/v1/models', {'Host': host}))[0] == 200, host
        status, _ = await post(f'{url}/inference', {'prompt': 'x'})
        assert status == 200
    assert len(chat_calls(fake_openai)) == 1  # the refused requests never reached the upstream


async def test_the_client_url_host_is_allowed_and_star_turns_the_check_off(fake_openai):
    # A compose service name in [llm] client_url is a name this server answers to.
    config = remote_config(fake_openai.base_url)
    config.client_url = 'http://llm-server:8888/inference'
    async with serve(create_app(config)) as url:
        assert (await get(f'{url}/v1/models', {'Host': 'llm-server:8888'}))[0] == 200
        assert (await get(f'{url}/v1/models', {'Host': 'other-name:8888'}))[0] == 421
    async with serve(create_app(remote_config(fake_openai.base_url, allowed_hosts=['*']))) as url:
        assert (await get(f'{url}/v1/models', {'Host': 'other-name:8888'}))[0] == 200


def test_allowed_hosts_must_be_host_names():
    from huixiangdou.config import ConfigError
    for bad in ('http://llm.example.com', 'llm.example.com:8888', ''):
        with pytest.raises(ConfigError, match=r'\[llm.server\] allowed_hosts\[0\]'):
            LLMServerConfig(allowed_hosts=[bad]).validate()


async def test_wrong_api_keys_are_throttled_and_never_logged(fake_openai):
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level='DEBUG')
    config = remote_config(fake_openai.base_url, api_key='the-right-key-0123456789')
    try:
        async with serve(create_app(config)) as url, aiohttp.ClientSession() as http:
            async def attempt(key: str):
                async with http.get(f'{url}/v1/models', headers={'Authorization': f'Bearer {key}'}) as r:
                    return r.status, r.headers.get('Retry-After'), await r.json()
            # Without any key nothing is guessed: not counted.
            for _ in range(10):
                async with http.get(f'{url}/v1/models') as r:
                    assert r.status == 401
            assert [(await attempt(f'guess-{i}'))[0] for i in range(6)] == [401] * 6
            answers = [await attempt(f'fast-{i}') for i in range(200)]
            assert {status for status, _, _ in answers} == {429}
            assert answers[0][1] == '1' and answers[0][2]['error']['code'] == 'too_many_attempts'
            # The right key during the lockout waits too; once it is over it works and resets the count.
            assert (await attempt('the-right-key-0123456789'))[0] == 429
            for _ in range(400):
                status, retry_after, _ = await attempt('the-right-key-0123456789')
                if status != 429:
                    break
                await asyncio.sleep(0.25)
            assert status == 200
            assert (await attempt('typo'))[0] == 401
    finally:
        logger.remove(sink)
    warnings = [line for line in lines if 'wrong API key from 127.0.0.1' in line]
    assert len(warnings) == 7 and 'locked out for 1 s' in warnings[5]
    assert not [line for line in lines if 'guess-' in line or 'the-right-key' in line]


async def test_a_body_that_is_not_what_its_content_encoding_says_is_a_400(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        async with aiohttp.ClientSession() as http:
            for path in ('/inference', '/v1/chat/completions'):
                async with http.post(url + path, data=b'{"prompt": "not gzip"}',
                                     headers={'Content-Type': 'application/json', 'Content-Encoding': 'gzip'}) as r:
                    body = await r.json()
                    assert r.status == 400 and body['error']['code'] == 'bad_body'
                    assert 'gzip' in body['error']['message'] and r.headers['Connection'] == 'close'
        import gzip
        status, body = await post(f'{url}/inference', data=gzip.compress(b'{"prompt": "x"}'))
    assert status == 400  # no Content-Encoding header: the gzip bytes are not JSON
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        async with aiohttp.ClientSession() as http:
            async with http.post(f'{url}/inference', data=gzip.compress(b'{"prompt": "x"}'),
                                 headers={'Content-Type': 'application/json', 'Content-Encoding': 'gzip'}) as r:
                assert r.status == 200  # real gzip still works
