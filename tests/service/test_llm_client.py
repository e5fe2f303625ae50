"""LLMClient against the real server app (remote backend on the fake), and its retries against the fake
directly."""
from __future__ import annotations

import asyncio

import pytest

from huixiangdou.config import LLMConfig
from huixiangdou.service.llm_client import LLMClient, LLMClientError, chat_completions_url
from huixiangdou.service.llm_server_hybrid import create_app
from tests.conftest import free_port
from tests.fakes.fake_openai import fake_openai  # noqa: F401 - fixture
from tests.service.test_llm_server import remote_config, serve


def client_config(url: str, **kwargs) -> LLMConfig:
    return LLMConfig(client_url=f'{url}/inference', **kwargs)


def test_streaming_url_is_derived_from_the_inference_url():
    assert chat_completions_url('http://10.0.0.2:8888/inference') == 'http://10.0.0.2:8888/v1/chat/completions'


async def test_generate_returns_text_backend_and_model(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        async with LLMClient(client_config(url)) as llm:
            reply = await llm.generate('茴香豆是什么?', history=[('你好', '你好!')])
    assert (reply.text, reply.backend, reply.model) == ('echo: 茴香豆是什么?', 'remote', 'fake-model')
    assert fake_openai.requests[-1].body['messages'][0] == {'role': 'user', 'content': '你好'}


async def test_stream_yields_the_answer_in_pieces(fake_openai):
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        async with LLMClient(client_config(url)) as llm:
            pieces = [p async for p in llm.stream('stream this', history=[('a', 'b')])]
    assert len(pieces) > 1 and ''.join(pieces) == 'echo: stream this'


async def test_an_unreachable_server_raises_after_retries():
    config = client_config(f'http://127.0.0.1:{free_port()}', client_timeout=10.0, client_max_retries=1)
    async with LLMClient(config, retry_base_delay=0.01) as llm:
        with pytest.raises(LLMClientError, match='cannot reach'):
            await llm.generate('x')


async def test_a_server_error_is_raised_with_its_status_and_message(fake_openai):
    fake_openai.fail('500')
    async with serve(create_app(remote_config(fake_openai.base_url, remote_max_retries=0))) as url:
        async with LLMClient(client_config(url, client_max_retries=2), retry_base_delay=0.01) as llm:
            with pytest.raises(LLMClientError) as info:
                await llm.generate('x')
    assert info.value.status == 503 and 'answered 500' in str(info.value)
    # The client retried the server's 503 twice; each reached upstream once.
    assert len([r for r in fake_openai.requests if r.path == '/v1/chat/completions']) == 3


async def test_a_transient_server_error_is_retried_by_the_client(fake_openai):
    fake_openai.fail('500', times=1)
    async with serve(create_app(remote_config(fake_openai.base_url, remote_max_retries=0))) as url:
        async with LLMClient(client_config(url), retry_base_delay=0.01) as llm:
            reply = await llm.generate('again')
    assert reply.text == 'echo: again'


@pytest.mark.parametrize('streaming', [False, True])
async def test_the_client_times_out_instead_of_hanging(fake_openai, streaming):
    fake_openai.fail('hang')
    async with serve(create_app(remote_config(fake_openai.base_url, remote_timeout=60.0))) as url:
        async with LLMClient(client_config(url, client_timeout=0.5)) as llm:
            with pytest.raises(LLMClientError) as info:
                if streaming:
                    await asyncio.wait_for(anext(llm.stream('x')), 30)
                else:
                    await asyncio.wait_for(llm.generate('x'), 30)
    assert info.value.status == 504


async def test_a_broken_stream_raises(fake_openai):
    fake_openai.fail('break_stream', times=1)
    async with serve(create_app(remote_config(fake_openai.base_url))) as url:
        async with LLMClient(client_config(url)) as llm:
            with pytest.raises(LLMClientError, match='stream broke'):
                [p async for p in llm.stream('a long answer')]


async def test_the_client_sends_the_server_api_key(fake_openai):
    llm = remote_config(fake_openai.base_url, api_key='s3cret-key')
    async with serve(create_app(llm)) as url:
        async with LLMClient(client_config(url, server=llm.server)) as keyed:
            reply = await keyed.generate('with key')
            pieces = [p async for p in keyed.stream('streamed with key')]
        async with LLMClient(client_config(url)) as keyless:
            with pytest.raises(LLMClientError) as info:
                await keyless.generate('without')
    assert reply.text == 'echo: with key' and ''.join(pieces) == 'echo: streamed with key'
    assert info.value.status == 401


async def test_a_stream_error_event_keeps_its_status(fake_openai):
    fake_openai.stream_delay = 0.4  # the first piece arrives, then the upstream is too slow
    async with serve(create_app(remote_config(fake_openai.base_url, remote_timeout=0.6))) as url:
        async with LLMClient(client_config(url)) as llm:
            with pytest.raises(LLMClientError) as info:
                [p async for p in llm.stream('a slow answer')]
    assert info.value.status == 504 and 'stream broke' in str(info.value)


# The client's retries under the shared policy, straight against the fake's /v1/chat/completions (the path
# stream() posts to), so each fault reaches the client itself rather than the server in between.

def direct_config(fake, **kwargs) -> LLMConfig:
    from huixiangdou.config import LLMServerConfig
    host = fake.base_url.removesuffix('/v1')
    return LLMConfig(client_url=f'{host}/inference', server=LLMServerConfig(api_key=fake.api_key), **kwargs)


def chat_posts(fake) -> int:
    return len([r for r in fake.requests if r.path == '/v1/chat/completions'])


@pytest.mark.parametrize('mode, retry_after', [('429', 0.2), ('503', None), ('close', None)],
                         ids=['429-retry-after', '503', 'dropped-connection'])
async def test_the_client_retries_transient_failures(fake_openai, mode, retry_after):
    fake_openai.fail(mode, times=2, retry_after=retry_after)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with LLMClient(direct_config(fake_openai, client_max_retries=2), retry_base_delay=0.01,
                         retry_max_delay=0.02) as llm:
        pieces = [p async for p in llm.stream('retry me')]
    assert ''.join(pieces) == 'echo: retry me'
    assert chat_posts(fake_openai) == 3
    if retry_after:
        assert loop.time() - started >= 2 * retry_after  # the server's Retry-After was waited out


@pytest.mark.parametrize('mode', ['400', '500'])
async def test_the_client_does_not_retry_a_refusal_or_a_server_bug(fake_openai, mode):
    """400: the request is wrong; 500 from our own server: a bug that another try would repeat."""
    fake_openai.fail(mode, times=1)
    async with LLMClient(direct_config(fake_openai, client_max_retries=3), retry_base_delay=0.01) as llm:
        with pytest.raises(LLMClientError) as info:
            [p async for p in llm.stream('x')]
    assert info.value.status == int(mode)
    assert chat_posts(fake_openai) == 1


async def test_the_client_stops_retrying_within_client_timeout(fake_openai):
    fake_openai.fail('503')  # for ever
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with LLMClient(direct_config(fake_openai, client_max_retries=1000, client_timeout=1.0),
                         retry_base_delay=0.05, retry_max_delay=0.2) as llm:
        # Either no further wait fits, or (on a loaded machine) the last try is cut at client_timeout.
        with pytest.raises(LLMClientError, match='gave up after|within 1s') as info:
            [p async for p in llm.stream('x')]
    assert loop.time() - started <= 1.0 + 0.25  # event-loop scheduling slack
    assert info.value.status in (503, 504) and 3 < chat_posts(fake_openai) < 1000
