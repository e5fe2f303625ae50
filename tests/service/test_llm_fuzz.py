"""Property-based: no body, however hostile, gets a 5xx or a traceback from /inference or
/v1/chat/completions (remote backend on the fake), and a valid request is still answered afterwards.
Bounded (a few hundred examples, small body limit) and loopback only."""
from __future__ import annotations

import json

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huixiangdou.service.llm_server_hybrid import create_app
from tests.conftest import free_port
from tests.fakes.fake_openai import FakeOpenAI
from tests.frontend.callback_fuzz import (LogWatch, ServerThread, encoded, hostile_bodies, json_values, mutated,
                                          scalars, texts)
from tests.service.test_llm_server import remote_config

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MAX_BODY = 16 * 1024


@pytest.fixture(scope='module')
def server():
    """The real server app and the fake upstream on a private loop; budgets high so only input matters."""
    fake = FakeOpenAI()

    async def start():
        await fake.start()
        config = remote_config(fake.base_url, remote_max_retries=0, rpm=1_000_000, tpm=10**9,
                               max_body_size=MAX_BODY)
        runner = web.AppRunner(create_app(config), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, '127.0.0.1', port, shutdown_timeout=0.5).start()

        async def stop():
            await runner.cleanup()
            await fake.stop()
        return port, stop

    with ServerThread(start) as running:
        yield running


def inference_body() -> dict:
    return {'prompt': 'fuzz question', 'history': [['q', 'a'], {'role': 'system', 'content': 's'}],
            'backend': 'auto', 'max_new_tokens': 16}


def chat_body() -> dict:
    return {'model': 'auto', 'stream': False, 'max_tokens': 16, 'temperature': 0.5, 'top_p': 0.9, 'seed': 1,
            'stop': ['\n'], 'stream_options': None,
            'messages': [{'role': 'developer', 'content': 'brief'}, {'role': 'user', 'content': 'fuzz question'}]}


roles = st.sampled_from(['system', 'developer', 'user', 'assistant', 'tool', 'robot']) | texts
messages = st.lists(st.fixed_dictionaries({'role': roles, 'content': scalars | json_values}), max_size=4)
CHAT_PATHS = ['model', 'stream', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'seed', 'stop',
              'n', 'tools', 'tool_choice', 'logprobs', 'top_logprobs', 'stream_options',
              'stream_options.include_usage', 'messages']
chat_bodies = mutated(chat_body, CHAT_PATHS) | st.builds(lambda m, s: {**chat_body(), 'messages': m, 'stream': s},
                                                         messages, st.booleans())
inference_bodies = mutated(inference_body, ['prompt', 'history', 'backend', 'max_new_tokens'])

# Valid requests with varied values (odd text, surrogates, stops, limits, streaming): these reach the upstream.
words = texts.filter(lambda t: t.strip())
valid_chats = st.builds(
    lambda content, stream, usage, stop, limit: {
        **chat_body(), 'messages': [{'role': 'user', 'content': content}], 'stream': stream, 'stop': stop,
        'max_tokens': limit, 'stream_options': {'include_usage': usage} if stream else None},
    words, st.booleans(), st.booleans(), st.none() | words | st.lists(words, max_size=4), st.integers(1, 64))
valid_inferences = st.builds(lambda prompt, pairs: {'prompt': prompt, 'history': pairs},
                             words, st.lists(st.tuples(texts, texts).map(list), max_size=3))


def check(server, watch: LogWatch, path: str, body: bytes) -> None:
    status, text = server.post(path, body)
    # Asking /inference for the local backend, which is off here, is a documented 503.
    disabled = b'"backend": "local"' in body and path == '/inference'
    assert status < 500 or disabled, (status, text[:300])
    assert 'Traceback' not in text
    assert not watch.problems, watch.problems[:3]


def answers_a_valid_request(server, path: str, body: dict) -> None:
    status, text = server.post(path, json.dumps(body).encode())
    assert status == 200, text[:300]
    assert 'echo: fuzz question'[:8] in text


@pytest.mark.parametrize('path, valid, bodies, varied', [
    ('/inference', inference_body, inference_bodies, valid_inferences),
    ('/v1/chat/completions', chat_body, chat_bodies, valid_chats),
])
def test_hostile_bodies_get_no_5xx_and_no_traceback(server, path, valid, bodies, varied):
    with LogWatch() as watch:
        @FUZZ
        @given(body=hostile_bodies(bodies) | encoded(varied))
        def fuzz(body: bytes) -> None:
            check(server, watch, path, body)
        fuzz()
        answers_a_valid_request(server, path, valid())
    assert not server.loop_errors


# Any body under a Content-Encoding it may or may not match: right, raw, cut short, noise after, a flipped byte.
@pytest.mark.parametrize('path, valid, bodies, varied', [
    ('/inference', inference_body, inference_bodies, valid_inferences),
    ('/v1/chat/completions', chat_body, chat_bodies, valid_chats),
])
def test_content_encoding_mismatches_get_no_5xx(server, path, valid, bodies, varied):
    from tests.web.test_fuzz import encodings, shaped, shapes

    with LogWatch() as watch:
        @settings(FUZZ, max_examples=150)
        @given(encoding=encodings, shape=shapes, raw=hostile_bodies(bodies) | encoded(varied),
               noise=st.binary(min_size=1, max_size=50))
        def fuzz(encoding: str, shape: str, raw: bytes, noise: bytes) -> None:
            body = shaped(encoding, shape, raw, noise)
            status, text = server.post(path, body, headers={'Content-Encoding': encoding})
            disabled = b'"backend": "local"' in raw and path == '/inference'
            assert status < 500 or disabled, (status, text[:300])
            assert 'Traceback' not in text
            # aiohttp itself answers 400 (and logs it) for a br body (no decoder installed) or a deflate
            # stream that fails at its very end; both before any handler.
            problems = [p for p in watch.problems if 'ContentEncodingError' not in p]
            assert not problems, problems[:3]
        fuzz()
        answers_a_valid_request(server, path, valid())
    assert not server.loop_errors
