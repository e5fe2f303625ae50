"""The remote backend: any OpenAI-compatible chat API (presets in presets.py) through the official
openai SDK, with the shared retry policy (primitive/http_retry.py), an rpm/tpm budget and a hard deadline
per request.

It does not trim prompts or fall back to another backend (router.py does).

Why the SDK is driven the way it is (bench/bench_llm_server.py, 2 cores): its typed
`chat.completions.create()` spends roughly 0.4 ms per call walking the request TypedDicts and 0.1-0.2 ms
building pydantic models we only read one string from, and its default httpx2 transport ~0.3 ms more
than aiohttp. So requests go through the SDK's own `client.post(..., cast_to=object)` (same auth, URL, headers,
timeouts and APIStatusError mapping, JSON in and out as plain dicts) over `openai.DefaultAioHttpClient()`.
"""
from __future__ import annotations

import asyncio
import os
from typing import AsyncIterator

import aiohttp
import openai
from loguru import logger

from huixiangdou.config import LLMServerConfig
from huixiangdou.primitive.http_retry import (RetryPolicy, TransientFailure, parse_retry_after,
                                              send_with_retry, transient_status)
from huixiangdou.primitive.json_input import clean_text
from huixiangdou.service.llm.backend import (FINISH_REASONS, Answer, BackendUnavailable, ChatMessage, Chunk,
                                             GenerationParams, LLMBackend, RateLimited,
                                             UpstreamDisconnected, UpstreamMalformed, UpstreamTimeout, Usage)
from huixiangdou.service.llm.presets import PRESETS
from huixiangdou.service.llm.rate_limit import RequestBudget, estimate_tokens


CHAT_PATH = '/chat/completions'


class OpenAICompatibleBackend(LLMBackend):
    """Chat completions from a remote OpenAI-compatible service.

    Usage:
        backend = OpenAICompatibleBackend(config.llm.server)   # remote_type = "deepseek", key in env
        backend.warm_up()
        text = await backend.generate([ChatMessage('user', '你好')])
    """

    name = 'remote'

    def __init__(self, config: LLMServerConfig):
        if config.remote_type not in PRESETS:
            raise ValueError(f'[llm.server] remote_type {config.remote_type!r} is not one of '
                             f'{", ".join(PRESETS)}')
        if config.remote_timeout <= 0:
            raise ValueError(f'[llm.server] remote_timeout must be > 0, got {config.remote_timeout}')
        preset = PRESETS[config.remote_type]
        self.preset_name = config.remote_type
        self.base_url = (config.remote_base_url or preset.base_url).rstrip('/')
        self.model = preset.model if config.remote_llm_model in ('', 'auto') else config.remote_llm_model
        self.max_text_length = config.remote_llm_max_text_length or preset.context_length
        self.max_new_tokens = config.remote_max_new_tokens
        self.timeout = config.remote_timeout
        self.max_retries = config.remote_max_retries
        self.retry_base_delay = config.remote_retry_base_delay
        self.retry_max_delay = config.remote_retry_max_delay
        # A key in config.ini wins; the preset's environment variable is the documented fallback.
        self._api_key = config.remote_api_key or os.environ.get(preset.api_key_env, '')
        if not self._api_key:
            if preset.needs_key:
                raise BackendUnavailable(
                    f'remote backend {config.remote_type!r} needs an API key: set [llm.server] remote_api_key '
                    f'or the {preset.api_key_env} environment variable')
            self._api_key = 'EMPTY'
        self.limiter = RequestBudget(config.rpm, config.tpm)
        self._client: openai.AsyncOpenAI | None = None
        self._model_lock = asyncio.Lock()

    def warm_up(self) -> None:
        if self._client is None:
            # Retries are ours (deadline-aware, logged per backend); the SDK's are switched off.
            # aiohttp under the SDK: the same event loop library as our server, and cheaper per call than
            # httpx2. It opens its aiohttp session lazily, inside the serving loop.
            self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key,
                                              max_retries=0, timeout=self.timeout,
                                              http_client=openai.DefaultAioHttpClient(timeout=self.timeout))
        logger.info(f'remote backend ready: preset={self.preset_name} base_url={self.base_url} '
                    f'model={self.model}')

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _resolved_model(self, deadline: float) -> str:
        """Self-hosted presets say model 'auto': ask the server which model it serves (once)."""
        if self.model != 'auto':
            return self.model
        async with self._model_lock:
            if self.model == 'auto':
                try:
                    page = await self._attempt(lambda: self._client.models.list(), deadline)
                except TransientFailure as failure:
                    raise failure.error from None
                ids = [m.id for m in page.data]
                if not ids:
                    raise BackendUnavailable(f'{self.base_url}/models lists no model: set remote_llm_model')
                self.model = ids[0]
                logger.info(f'remote backend serves model {self.model}')
        return self.model

    def _payload(self, model: str, messages: list[ChatMessage], params: GenerationParams) -> dict:
        payload = {'model': model, 'messages': [{'role': m.role, 'content': m.content} for m in messages]}
        limit = params.max_new_tokens or self.max_new_tokens
        if limit:
            payload['max_tokens'] = limit
        for key in ('temperature', 'top_p', 'seed'):
            if getattr(params, key) is not None:
                payload[key] = getattr(params, key)
        if params.stop:
            payload['stop'] = list(params.stop)
        return payload

    async def _attempt(self, call, deadline: float):
        """Run one SDK call within the deadline and translate its failure into our errors."""
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise UpstreamTimeout(f'remote {self.base_url} gave no answer within {self.timeout:g}s')
        try:
            async with asyncio.timeout(remaining):
                return await call()
        except openai.APITimeoutError as exc:
            # The SDK reports a connection the server closed as a "timeout"; say what happened.
            if dropped_connection(exc):
                raise TransientFailure(UpstreamDisconnected(
                    f'remote {self.base_url} closed the connection before answering')) from exc
            raise TransientFailure(self._timeout_error()) from exc
        except TimeoutError as exc:
            raise TransientFailure(self._timeout_error()) from exc
        except openai.APIStatusError as exc:
            retry_after = parse_retry_after(exc.response.headers.get('retry-after'))
            if exc.status_code == 429:
                raise TransientFailure(RateLimited(f'remote {self.base_url} answered 429 (rate limited)',
                                                   retry_after), retry_after) from exc
            # OpenAI documents 500 as "retry after a brief wait"; compatible servers follow it.
            if transient_status(exc.status_code, transient_500=True):
                raise TransientFailure(BackendUnavailable(
                    f'remote {self.base_url} answered {exc.status_code}'), retry_after) from exc
            hint = (': check remote_api_key or the preset\'s key variable' if exc.status_code in (401, 403)
                    else '')
            raise BackendUnavailable(f'remote {self.base_url} refused the request '
                                     f'({exc.status_code}){hint}') from exc
        except openai.APIConnectionError as exc:
            if dropped_connection(exc):
                raise TransientFailure(UpstreamDisconnected(
                    f'remote {self.base_url} closed the connection before the answer was complete')) from exc
            raise TransientFailure(BackendUnavailable(f'cannot reach remote {self.base_url}: {exc}')) from exc
        except ValueError as exc:  # the SDK decodes JSON bodies and SSE events with json.loads
            raise UpstreamMalformed(f'remote {self.base_url} answered with malformed JSON ({exc}): check '
                                    'remote_base_url points at an OpenAI-compatible /v1') from None

    def _timeout_error(self) -> UpstreamTimeout:
        return UpstreamTimeout(f'remote {self.base_url} gave no answer within {self.timeout:g}s '
                               '(raise [llm.server] remote_timeout if the model is slow)')

    async def _with_retries(self, call, deadline: float, messages: list[ChatMessage]):
        loop = asyncio.get_running_loop()
        tokens = estimate_tokens(''.join(m.content for m in messages))
        policy = RetryPolicy.from_retries(self.max_retries, self.retry_base_delay, self.retry_max_delay,
                                          max_total=max(deadline - loop.time(), 1e-3))

        async def attempt():
            # Acquired per attempt, right before sending: the budget counts what reaches the upstream.
            ticket = await self.limiter.acquire(tokens, deadline=deadline)
            try:
                return await self._attempt(call, deadline)
            except TransientFailure as failure:
                if isinstance(failure.error, RateLimited):  # a 429 served nothing: not spent
                    self.limiter.refund(ticket)
                raise

        try:
            return await send_with_retry(policy, attempt, service=f'backend={self.name} {self.base_url}')
        except TransientFailure as failure:
            error = failure.error
            if isinstance(error, UpstreamTimeout) or loop.time() >= deadline:
                raise UpstreamTimeout(str(error)) from None
            if isinstance(error, RateLimited):
                raise RateLimited(f'{error}; gave up after {failure.attempts} attempts', failure.retry_after)
            raise type(error)(f'{error}; gave up after {failure.attempts} attempts') from None

    def _ensure_client(self) -> None:
        if self._client is None:
            raise BackendUnavailable('remote backend used before warm_up(): call warm_up() first')

    async def generate(self, messages: list[ChatMessage], params: GenerationParams = GenerationParams()) -> Answer:
        self._ensure_client()
        deadline = asyncio.get_running_loop().time() + self.timeout
        model = await self._resolved_model(deadline)
        payload = self._payload(model, messages, params)
        completion = await self._with_retries(
            lambda: self._client.post(CHAT_PATH, cast_to=object, body=payload), deadline, messages)
        try:
            choice = completion['choices'][0]
            content = choice['message'].get('content')
        except (TypeError, KeyError, IndexError, AttributeError):
            raise UpstreamMalformed(f'remote {self.base_url} answered without a chat completion choice: '
                                    'check remote_base_url points at an OpenAI-compatible /v1') from None
        if content is not None and not isinstance(content, str):
            raise UpstreamMalformed(f'remote {self.base_url} answered a non-text message content')
        return Answer(clean_text(content or ''), finish_reason(choice), read_usage(completion))

    async def stream(self, messages: list[ChatMessage],
                     params: GenerationParams = GenerationParams()) -> AsyncIterator[Chunk]:
        self._ensure_client()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        model = await self._resolved_model(deadline)
        payload = self._payload(model, messages, params)
        payload['stream'] = True
        if params.include_usage:
            payload['stream_options'] = {'include_usage': True}
        # Retries cover opening the stream only: once text has gone out it cannot be taken back.
        response = await self._with_retries(
            lambda: self._client.post(CHAT_PATH, cast_to=object, body=payload, stream=True,
                                      stream_cls=openai.AsyncStream[object]),
            deadline, messages)
        finish, usage, events = None, None, 0
        try:
            iterator = response.__aiter__()
            while True:
                try:
                    chunk = await self._attempt(iterator.__anext__, deadline)
                except StopAsyncIteration:
                    if not events:  # e.g. a JSON body where server-sent events were asked for
                        raise UpstreamMalformed(f'remote {self.base_url} answered a stream request without '
                                                'any server-sent event') from None
                    break
                except TransientFailure as failure:
                    raise failure.error from None
                events += 1
                if not isinstance(chunk, dict):
                    raise UpstreamMalformed(f'remote {self.base_url} streamed a chunk that is not an object')
                usage = read_usage(chunk) or usage
                finish = chunk_finish_reason(chunk) or finish
                text = delta_text(chunk)
                if text:
                    yield Chunk(text)
        finally:
            await response.close()
        yield Chunk('', finish or 'stop', usage)


def dropped_connection(exc: BaseException) -> bool:
    """True if an SDK connection error was caused by the peer closing the connection (not a timeout)."""
    cause = exc.__cause__ or exc.__context__
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                              ConnectionResetError)):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def finish_reason(choice: dict) -> str:
    reason = choice.get('finish_reason') if isinstance(choice, dict) else None
    return reason if reason in FINISH_REASONS else 'stop'


def chunk_finish_reason(chunk: dict) -> str | None:
    for choice in chunk.get('choices') or ():
        if isinstance(choice, dict) and choice.get('finish_reason'):
            return finish_reason(choice)
    return None


def read_usage(body: object) -> Usage | None:
    """Token counts from an upstream completion or final chunk; None when absent or unreadable."""
    usage = body.get('usage') if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get('prompt_tokens'), usage.get('completion_tokens')
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (prompt, completion)):
        return None
    return Usage(prompt, completion)


def delta_text(chunk: object) -> str:
    """The text of one streamed chat.completion.chunk (a plain dict); '' for role-only or usage chunks."""
    if not isinstance(chunk, dict):
        return ''
    text = ''
    for choice in chunk.get('choices') or ():
        delta = choice.get('delta') if isinstance(choice, dict) else None
        if isinstance(delta, dict) and isinstance(delta.get('content'), str):
            text += delta['content']
    return clean_text(text)
