"""/v1 as the official openai SDK sees it (server on loopback, remote backend on the fake): finish_reason,
sampling parameters passed on, refused features as 400s, model lookup and 404s, usage, 429 with
Retry-After, and the optional API key."""
from __future__ import annotations

import asyncio
import contextlib
import sys

import aiohttp
import openai
import pytest

from huixiangdou.config import LLMServerConfig
from huixiangdou.service.llm_server_hybrid import UnsafeBind, check_bind, create_app
from tests.conftest import free_port, write_config
from tests.fakes.fake_openai import fake_openai  # noqa: F401 - fixture
from tests.service.test_llm_server import chat_calls, post, remote_config, serve

HELLO = [{'role': 'user', 'content': 'hello world'}]


@contextlib.asynccontextmanager
async def sdk(fake, api_key: str = 'unused', **server):
    """The server on loopback and an SDK client for it (no SDK retries, so each call is one request)."""
    async with serve(create_app(remote_config(fake.base_url, **server))) as url:
        client = openai.AsyncOpenAI(base_url=f'{url}/v1', api_key=api_key, max_retries=0)
        try:
            yield client
        finally:
            await client.close()


async def test_finish_reason_is_length_when_max_tokens_cut_the_answer(fake_openai):
    async with sdk(fake_openai) as client:
        cut = await client.chat.completions.create(model='auto', messages=HELLO, max_tokens=4)
        whole = await client.chat.completions.create(model='auto', messages=HELLO)
        stream = await client.chat.completions.create(model='auto', messages=HELLO, max_tokens=4, stream=True)
        reasons = [c.finish_reason async for chunk in stream for c in chunk.choices if c.finish_reason]
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ('echo', 'length')
    assert whole.choices[0].finish_reason == 'stop'
    assert reasons == ['length']


async def test_sampling_parameters_and_stop_reach_the_remote_backend(fake_openai):
    async with sdk(fake_openai) as client:
        completion = await client.chat.completions.create(
            model='remote', messages=HELLO, stop=['wor'], temperature=0.7, top_p=0.9, seed=42)
    sent = chat_calls(fake_openai)[-1].body
    assert (sent['stop'], sent['temperature'], sent['top_p'], sent['seed']) == (['wor'], 0.7, 0.9, 42)
    assert completion.choices[0].message.content == 'echo: hello '  # the upstream honoured stop


@pytest.mark.parametrize('extra, param', [
    ({'n': 2}, 'n'),
    ({'tools': [{'type': 'function', 'function': {'name': 'f', 'parameters': {'type': 'object'}}}]}, 'tools'),
    ({'logprobs': True}, 'logprobs'),
    ({'top_logprobs': 2}, 'top_logprobs'),
    ({'temperature': 3}, 'temperature'),
    ({'stop': ['a', 'b', 'c', 'd', 'e']}, 'stop'),
])
async def test_unsupported_or_invalid_parameters_are_400_not_ignored(fake_openai, extra, param):
    async with sdk(fake_openai) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model='auto', messages=HELLO, **extra)
    assert info.value.param == param and info.value.body['type'] == 'invalid_request_error'
    assert chat_calls(fake_openai) == []


async def test_stream_must_be_a_boolean(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        status, body = await post(f'{url}/v1/chat/completions', {'messages': HELLO, 'stream': 'yes'})
    assert status == 400 and body['error']['param'] == 'stream'
    assert set(body['error']) == {'message', 'type', 'param', 'code'}


async def test_developer_role_and_null_assistant_content_are_accepted(fake_openai):
    messages = [{'role': 'developer', 'content': 'be brief'}, {'role': 'user', 'content': 'a'},
                {'role': 'assistant', 'content': None}, {'role': 'user', 'content': 'b'}]
    async with sdk(fake_openai) as client:
        completion = await client.chat.completions.create(model='auto', messages=messages)
    assert completion.choices[0].message.content == 'echo: b'
    sent = chat_calls(fake_openai)[-1].body['messages']
    assert sent[0] == {'role': 'system', 'content': 'be brief'}  # what every upstream understands
    assert sent[2] == {'role': 'assistant', 'content': ''}


async def test_models_can_be_fetched_by_id_and_unknown_ones_are_404(fake_openai):
    async with sdk(fake_openai) as client:
        model = await client.models.retrieve('remote')
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve('gpt-5')
        with pytest.raises(openai.NotFoundError) as slashed:
            await client.models.retrieve('Qwen/Qwen2.5-7B-Instruct')
    assert (model.id, model.owned_by) == ('remote', 'huixiangdou-llm')
    assert missing.value.code == slashed.value.code == 'model_not_found'


@pytest.mark.parametrize('model', ['gpt-4o', 'local'])  # local is not enabled here, so not listed
async def test_an_unknown_model_is_404_model_not_found_not_a_fallback(fake_openai, model):
    async with sdk(fake_openai) as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(model=model, messages=HELLO)
    assert info.value.code == 'model_not_found' and info.value.param == 'model'
    assert chat_calls(fake_openai) == []


async def test_usage_comes_from_the_backend_and_streams_report_it_when_asked(fake_openai):
    async with sdk(fake_openai) as client:
        completion = await client.chat.completions.create(model='auto', messages=HELLO)
        stream = await client.chat.completions.create(model='auto', messages=HELLO, stream=True,
                                                      stream_options={'include_usage': True})
        chunks = [chunk async for chunk in stream]
    # The fake counts characters: 11 in 'hello world', 17 in 'echo: hello world'.
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 17)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 28
    assert all(c.usage is None for c in chunks[:-1])
    assert chat_calls(fake_openai)[-1].body['stream_options'] == {'include_usage': True}


async def test_an_upstream_429_reaches_the_client_as_429_with_retry_after(fake_openai):
    fake_openai.fail('429', retry_after=120)
    async with sdk(fake_openai) as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model='auto', messages=HELLO)
    assert info.value.response.headers['Retry-After'] == '120'
    assert info.value.code == 'rate_limited'


async def test_with_an_api_key_requests_without_it_get_401(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url, api_key='s3cret-key'))) as url:
        for key, expected in (('wrong', openai.AuthenticationError), ('s3cret-key', None)):
            client = openai.AsyncOpenAI(base_url=f'{url}/v1', api_key=key, max_retries=0)
            try:
                if expected:
                    with pytest.raises(expected):
                        await client.chat.completions.create(model='auto', messages=HELLO)
                    with pytest.raises(expected):
                        await client.models.list()
                else:
                    assert (await client.chat.completions.create(model='auto', messages=HELLO)).choices
            finally:
                await client.close()
        status, body = await post(f'{url}/inference', {'prompt': 'x'})
        async with aiohttp.ClientSession() as http:
            async with http.post(f'{url}/inference', json={'prompt': 'x'},
                                 headers={'Authorization': 'Bearer s3cret-key'}) as response:
                keyed = response.status
            async with http.get(f'{url}/health') as response:
                health = response.status
    assert status == 401 and body['error']['code'] == 'invalid_api_key'
    assert keyed == 200 and health == 200
    assert len(chat_calls(fake_openai)) == 2  # refused requests never reached the upstream


@pytest.mark.parametrize('raw', [b'Bearer \xff\xfe', b'Bearer \xed\xa0\x80', b'Bearer s3cret-key\xc3\xa9'])
async def test_an_undecodable_authorization_header_is_401_not_500(fake_openai, raw):
    async with serve(create_app(remote_config(fake_openai.base_url, api_key='s3cret-key'))) as url:
        reader, writer = await asyncio.open_connection('127.0.0.1', int(url.rsplit(':', 1)[1]))
        writer.write(b'POST /inference HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n'
                     b'Authorization: ' + raw + b'\r\n\r\n{}')
        await writer.drain()
        status_line = (await reader.readline()).decode()
        await reader.read()
        writer.close()
    assert status_line.split()[1] == '401'


async def run_cli(tmp_path, **server) -> tuple[int, str]:
    path = write_config(tmp_path / 'config.ini', llm={'enable_local': 0, 'enable_remote': 1},
                        **{'llm.server': {'remote_type': 'vllm', 'remote_base_url': 'http://127.0.0.1:1/v1',
                                          'local_llm_bind_port': free_port(), **server}})
    process = await asyncio.create_subprocess_exec(
        sys.executable, '-m', 'huixiangdou.service.llm_server_hybrid', '--config', str(path),
        stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.terminate()
        await process.wait()
        return -1, 'still running'
    return process.returncode, err.decode()


async def test_the_server_refuses_a_public_host_without_an_api_key(tmp_path):
    code, log = await run_cli(tmp_path, host='0.0.0.0')
    assert code == 2
    assert '[llm.server] api_key' in log and 'api_key = "' in log  # offers a generated key


@pytest.mark.parametrize('host, key, allowed', [
    ('127.0.0.1', '', True), ('localhost', '', True), ('::1', '', True),
    ('0.0.0.0', '', False), ('192.168.1.5', '', False), ('0.0.0.0', 'k' * 32, True),
])
def test_only_loopback_hosts_may_run_without_an_api_key(host, key, allowed):
    config = LLMServerConfig(host=host, api_key=key)
    if allowed:
        check_bind(config)
    else:
        with pytest.raises(UnsafeBind, match='api_key'):
            check_bind(config)
