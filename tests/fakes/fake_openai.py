"""A fake OpenAI-compatible service for tests: a real aiohttp app on 127.0.0.1 speaking the wire format
of /v1/chat/completions (plain and SSE), /v1/models, /v1/embeddings and /v1/rerank, with scripted faults.

It does not model anything: answers echo the prompt (or come from `responder`), vectors are hashed n-grams.

Usage:
    from tests.fakes.fake_openai import FakeOpenAI, fake_openai   # importing the fixture registers it

    async def test_x(fake_openai):                  # started fake, key 'sk-fake', base_url '.../v1'
        fake_openai.responder = lambda messages: '答案: ' + messages[-1]['content']
        fake_openai.fail('429', times=2, retry_after=0)   # next 2 requests get 429, then normal answers
        ...
        assert fake_openai.requests[-1].path == '/v1/chat/completions'

    async with FakeOpenAI(api_key='sk-x', embedding_dim=128) as fake: ...

API:
- `base_url` (ends in /v1), `api_key` (Authorization: Bearer <key> required; None accepts anything; a
  wrong key gets 401), `model` (listed by /v1/models and echoed in answers when the request has none).
- `responder(messages: list[dict]) -> str`: answer text; default 'echo: <last user message>'.
- `fail(mode, times=None, retry_after=None, paths=None)`: mode '429' or '503' (with Retry-After when given),
  '500', '400' (a bad-request refusal),
  'hang' (never answers until stop()), 'close' (drops the connection), 'break_stream' (streams one
  chunk then drops the connection), 'bad_json' (200 with a truncated JSON body), 'bad_sse' (streams one
  chunk, then an event that is not JSON). times=None fails forever; paths limits it to those paths.
- Chat answers honour `max_tokens` (one character per token: the text is cut, finish_reason "length"),
  `stop` (cut before the first stop string) and `stream_options.include_usage` (a last chunk with usage);
  usage counts characters.
  `clear_faults()` undoes it.
- `requests`: every request received, as Recorded(method, path, headers, body).
- `stream_delay`: seconds between SSE chunks (default 0).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import pytest_asyncio
from aiohttp import web

BODY = web.RequestKey('body', object)
STREAM_FAULT = web.RequestKey('stream_fault', str)
FAULT_MODES = ('429', '503', '500', '400', 'hang', 'close', 'break_stream', 'bad_json', 'bad_sse')


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: dict | None


@dataclass
class _Fault:
    mode: str
    times: int | None
    retry_after: float | None
    paths: tuple[str, ...] | None


def default_responder(messages: list[dict]) -> str:
    last_user = next((m.get('content', '') for m in reversed(messages) if m.get('role') == 'user'), '')
    if isinstance(last_user, list):
        last_user = ''.join(p.get('text', '') for p in last_user if isinstance(p, dict))
    return f'echo: {last_user[:200]}'


def cut_answer(text: str, max_tokens, stop) -> tuple[str, str]:
    """Apply `stop` and `max_tokens` (one character per token) the way the real API does."""
    for word in ([stop] if isinstance(stop, str) else stop or []):
        if isinstance(word, str) and word and word in text:
            text = text[:text.index(word)]
    if isinstance(max_tokens, int) and 0 < max_tokens < len(text):
        return text[:max_tokens], 'length'
    return text, 'stop'


def hashed_embedding(text: str, dim: int) -> list[float]:
    """Deterministic unit vector from hashed character 1- to 3-grams (similar texts, similar vectors)."""
    vec = [0.0] * dim
    for n in (1, 2, 3):
        for i in range(max(0, len(text) - n + 1)):
            digest = hashlib.md5(text[i:i + n].encode('utf-8')).digest()
            bucket = int.from_bytes(digest[:4], 'little') % dim
            vec[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def overlap_score(query: str, document: str) -> float:
    """Share of the query's distinct characters found in the document."""
    chars = set(query) - set(' \t\n')
    return len(chars & set(document)) / len(chars) if chars else 0.0


class FakeOpenAI:
    def __init__(self, api_key: str | None = 'sk-fake', model: str = 'fake-model', embedding_dim: int = 64,
                 responder: Callable[[list[dict]], str] | None = None, host: str = '127.0.0.1', port: int = 0):
        self.api_key, self.model, self.embedding_dim = api_key, model, embedding_dim
        self.responder = responder or default_responder
        self.host, self.port = host, port
        self.requests: list[Recorded] = []
        self.stream_delay = 0.0
        self._faults: list[_Fault] = []
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f'http://{self.host}:{self.port}/v1'

    def fail(self, mode: str, times: int | None = None, retry_after: float | None = None,
             paths: list[str] | tuple[str, ...] | None = None) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f'fault mode must be one of {FAULT_MODES}, got {mode!r}')
        self._faults.append(_Fault(mode, times, retry_after, tuple(paths) if paths else None))

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.paths and path not in fault.paths:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault
        return None

    async def start(self) -> 'FakeOpenAI':
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._gate])
        app.router.add_post('/v1/chat/completions', self._chat)
        app.router.add_get('/v1/models', self._models)
        app.router.add_post('/v1/embeddings', self._embeddings)
        app.router.add_post('/v1/rerank', self._rerank)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=0.5)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    def release(self) -> None:
        """Let every request held by `hang` return now (the connection it came on may be gone)."""
        self._release.set()

    async def stop(self) -> None:
        self.release()  # let hanging handlers return so shutdown does not wait on them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> 'FakeOpenAI':
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @staticmethod
    def _error(status: int, message: str, kind: str, headers: dict | None = None) -> web.Response:
        return web.json_response({'error': {'message': message, 'type': kind, 'code': status}},
                                 status=status, headers=headers)

    @web.middleware
    async def _gate(self, request: web.Request, handler):
        body = None
        if request.method == 'POST':
            try:
                body = await request.json()
            except ValueError:
                body = None
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), body))
        if self.api_key is not None and request.headers.get('Authorization') != f'Bearer {self.api_key}':
            return self._error(401, 'Incorrect API key provided', 'invalid_request_error')
        if request.method == 'POST' and body is None:
            return self._error(400, 'body must be JSON', 'invalid_request_error')
        request[BODY] = body
        fault = self._take_fault(request.path)
        if fault is None or fault.mode in ('break_stream', 'bad_sse'):
            request[STREAM_FAULT] = fault.mode if fault else ''
            return await handler(request)
        if fault.mode == 'bad_json':
            return web.Response(body=b'{"id": "chatcmpl-1", "choices": [{"index": 0, "mess',
                                content_type='application/json')
        if fault.mode == '429':
            headers = {'Retry-After': f'{fault.retry_after:g}'} if fault.retry_after is not None else None
            return self._error(429, 'Rate limit reached', 'rate_limit_exceeded', headers)
        if fault.mode == '503':
            headers = {'Retry-After': f'{fault.retry_after:g}'} if fault.retry_after is not None else None
            return self._error(503, 'The engine is currently overloaded', 'server_error', headers)
        if fault.mode == '500':
            return self._error(500, 'The server had an error', 'server_error')
        if fault.mode == '400':
            return self._error(400, 'Invalid request', 'invalid_request_error')
        if fault.mode == 'hang':
            await self._release.wait()
            return self._error(503, 'fake stopped', 'server_error')
        # 'close': drop the connection without an answer.
        request.transport.close()
        return web.Response()  # never reaches the client: the transport is closed

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        messages = body.get('messages')
        if not isinstance(messages, list) or not messages:
            return self._error(400, 'messages must be a non-empty list', 'invalid_request_error')
        text = self.responder(messages)
        text, finish = cut_answer(text, body.get('max_tokens'), body.get('stop'))
        model = body.get('model') or self.model
        cid, created = f'chatcmpl-{uuid.uuid4().hex[:12]}', int(time.time())
        prompt_chars = sum(len(m.get('content') or '') for m in messages if isinstance(m, dict)
                           and isinstance(m.get('content'), str))
        usage = {'prompt_tokens': prompt_chars, 'completion_tokens': len(text),
                 'total_tokens': prompt_chars + len(text)}
        if not body.get('stream'):
            return web.json_response({
                'id': cid, 'object': 'chat.completion', 'created': created, 'model': model,
                'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': text},
                             'finish_reason': finish}],
                'usage': usage})
        response = web.StreamResponse(headers={'Content-Type': 'text/event-stream'})
        await response.prepare(request)
        pieces = [text[i:i + 4] for i in range(0, len(text), 4)] or ['']

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            data = {'id': cid, 'object': 'chat.completion.chunk', 'created': created, 'model': model,
                    'choices': [{'index': 0, 'delta': delta, 'finish_reason': finish}]}
            return b'data: ' + json.dumps(data).encode() + b'\n\n'  # escapes, as a real API may send

        await response.write(chunk({'role': 'assistant', 'content': ''}))
        for i, piece in enumerate(pieces):
            await response.write(chunk({'content': piece}))
            if request[STREAM_FAULT] == 'break_stream':
                request.transport.close()
                return response
            if request[STREAM_FAULT] == 'bad_sse':
                await response.write(b'data: {"choices": [{"delta": {"content": \n\n')
                await response.write(b'data: [DONE]\n\n')
                return response
            if self.stream_delay:
                await asyncio.sleep(self.stream_delay)
        await response.write(chunk({}, finish))
        if (body.get('stream_options') or {}).get('include_usage'):
            data = {'id': cid, 'object': 'chat.completion.chunk', 'created': created, 'model': model,
                    'choices': [], 'usage': usage}
            await response.write(b'data: ' + json.dumps(data).encode() + b'\n\n')
        await response.write(b'data: [DONE]\n\n')
        await response.write_eof()
        return response

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({'object': 'list', 'data': [
            {'id': self.model, 'object': 'model', 'created': 0, 'owned_by': 'fake'}]})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = request[BODY]
        texts = body.get('input')
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self._error(400, 'input must be a string or a list of strings', 'invalid_request_error')
        dim = int(body.get('dimensions') or self.embedding_dim)
        return web.json_response({
            'object': 'list', 'model': body.get('model') or self.model,
            'data': [{'object': 'embedding', 'index': i, 'embedding': hashed_embedding(t, dim)}
                     for i, t in enumerate(texts)],
            'usage': {'prompt_tokens': sum(len(t) for t in texts), 'total_tokens': sum(len(t) for t in texts)}})

    async def _rerank(self, request: web.Request) -> web.Response:
        body = request[BODY]
        query, documents = body.get('query'), body.get('documents')
        if not isinstance(query, str) or not isinstance(documents, list):
            return self._error(400, 'query must be a string and documents a list', 'invalid_request_error')
        texts = [d if isinstance(d, str) else (d or {}).get('text', '') for d in documents]
        ranked = sorted(range(len(texts)), key=lambda i: (-overlap_score(query, texts[i]), i))
        top_n = body.get('top_n') or len(texts)
        results = []
        for i in ranked[:top_n]:
            item = {'index': i, 'relevance_score': overlap_score(query, texts[i])}
            if body.get('return_documents'):
                item['document'] = {'text': texts[i]}
            results.append(item)
        return web.json_response({'id': uuid.uuid4().hex, 'results': results})


@pytest_asyncio.fixture
async def fake_openai():
    """A started FakeOpenAI (api_key 'sk-fake'), stopped after the test."""
    async with FakeOpenAI() as fake:
        yield fake
