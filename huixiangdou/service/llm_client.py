"""The async client the worker uses to reach the hybrid LLM server (POST /inference, streaming via
/v1/chat/completions), retried under the shared policy (primitive/http_retry.py) within [llm] client_timeout.

It does not generate anything itself nor pick backends (the server does), nor start the server
(llm_server_process.py does).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from huixiangdou.config import ConfigError, LLMConfig
from huixiangdou.primitive.http_retry import (RetryPolicy, TransientFailure, parse_retry_after, send_with_retry,
                                              transient_status)

# The HTTP status an error event in a stream stands for (OpenAI's shape carries a code, not a status).
STREAM_ERROR_STATUS = {'upstream_timeout': 504, 'rate_limited': 429}


class LLMClientError(Exception):
    """The LLM server could not be reached, timed out, or answered an error. `status` is the HTTP code
    (0 when there was no answer)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


@dataclass
class LLMReply:
    text: str
    backend: str
    model: str


def chat_completions_url(client_url: str) -> str:
    """http://host:port/inference -> http://host:port/v1/chat/completions (same scheme, host, port)."""
    parts = urlsplit(client_url)
    return urlunsplit((parts.scheme, parts.netloc, '/v1/chat/completions', '', ''))


def history_messages(history: list[tuple[str, str]] | None) -> list[dict]:
    messages = []
    for user, assistant in history or []:
        messages += [{'role': 'user', 'content': user}, {'role': 'assistant', 'content': assistant}]
    return messages


@dataclass(frozen=True)
class StreamPiece:
    """One piece of a streamed answer; the last one carries why generation stopped ('stop', 'length')."""
    text: str
    finish_reason: str | None = None


class LLMClient:
    """Ask the hybrid LLM server for answers.

    Usage:
        async with LLMClient(config.llm) as llm:
            reply = await llm.generate('HuixiangDou 是什么?', history=[('你好', '你好!')])
            print(reply.text, reply.backend)
            async for piece in llm.stream('Explain BM25 briefly'):
                print(piece, end='')
    """

    def __init__(self, config: LLMConfig, retry_base_delay: float = 0.5, retry_max_delay: float = 10.0):
        if not config.client_url.startswith(('http://', 'https://')):
            raise ConfigError(f'[llm] client_url must be an http(s) URL, got {config.client_url!r}')
        self.url = config.client_url
        self.chat_url = chat_completions_url(config.client_url)
        self.timeout = config.client_timeout
        self.max_retries = config.client_max_retries
        self.retry_base_delay, self.retry_max_delay = retry_base_delay, retry_max_delay
        # The server's own key ([llm.server] api_key), sent when set; never logged.
        key = config.server.api_key
        self._headers = {'Authorization': f'Bearer {key}'} if key else {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> 'LLMClient':
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _post(self, url: str, payload: dict, deadline: float) -> aiohttp.ClientResponse:
        """POST with retries; return an open 200 response (the caller reads and releases it)."""
        loop = asyncio.get_running_loop()
        policy = RetryPolicy.from_retries(self.max_retries, self.retry_base_delay, self.retry_max_delay,
                                          max_total=self.timeout)

        async def attempt() -> aiohttp.ClientResponse:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError
            try:
                response = await self._http().post(url, json=payload, headers=self._headers,
                                                   timeout=aiohttp.ClientTimeout(total=None, sock_read=left,
                                                                                 connect=left))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
                if isinstance(exc, (aiohttp.ServerTimeoutError, TimeoutError)):
                    raise TimeoutError from exc  # the per-attempt limit is what is left of client_timeout
                raise TransientFailure(LLMClientError(
                    f'cannot reach the LLM server at {url}: {exc or type(exc).__name__}')) from exc
            if response.status == 200:
                return response
            status, message = response.status, await _error_message(response)
            retry_after = parse_retry_after(response.headers.get('Retry-After'))
            response.release()
            error = LLMClientError(f'LLM server answered {status}: {message}', status)
            # Our own server answers 500 only for a bug: another try would repeat it.
            if transient_status(status):
                raise TransientFailure(error, retry_after)
            raise error

        try:
            return await send_with_retry(policy, attempt, service=f'LLM server {url}')
        except TransientFailure as failure:
            raise LLMClientError(f'{failure.error} (gave up after {failure.attempts} attempts)',
                                 failure.error.status) from None
        except TimeoutError:
            raise LLMClientError(f'the LLM server at {url} gave no answer within {self.timeout:g}s ([llm] '
                                 'client_timeout)', 504) from None

    async def generate(self, prompt: str, history: list[tuple[str, str]] | None = None,
                       backend: str = 'auto', system: str = '') -> LLMReply:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        payload = {'prompt': prompt, 'history': _system_message(system) + [list(pair) for pair in history or []],
                   'backend': backend}
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._post(self.url, payload, deadline)
                async with response:
                    body = await response.json(content_type=None)
        except TimeoutError:
            raise LLMClientError(f'the LLM server at {self.url} gave no answer within {self.timeout:g}s '
                                 '([llm] client_timeout)', 504) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise LLMClientError(f'the LLM server at {self.url} sent an unreadable answer: {exc}') from exc
        try:
            return LLMReply(text=body['text'], backend=body['backend'], model=body['model'])
        except (KeyError, TypeError):
            raise LLMClientError(f'the LLM server at {self.url} answered without text/backend/model: '
                                 f'{str(body)[:200]}') from None

    async def stream(self, prompt: str, history: list[tuple[str, str]] | None = None,
                     backend: str = 'auto', system: str = '') -> AsyncIterator[str]:
        """The answer's text as it comes (stream_pieces without the finish reason)."""
        async with contextlib.aclosing(self.stream_pieces(prompt, history, backend, system)) as pieces:
            async for piece in pieces:
                if piece.text:
                    yield piece.text

    async def stream_pieces(self, prompt: str, history: list[tuple[str, str]] | None = None,
                            backend: str = 'auto', system: str = '') -> AsyncIterator[StreamPiece]:
        """The answer as StreamPiece items; the one with `finish_reason` set says whether it was cut."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        payload = {'model': backend, 'stream': True,
                   'messages': _system_message(system) + history_messages(history)
                   + [{'role': 'user', 'content': prompt}]}
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._post(self.chat_url, payload, deadline)
                async with response:
                    async for raw in response.content:
                        line = raw.decode('utf-8').strip()
                        if not line.startswith('data:'):
                            continue
                        data = line[5:].strip()
                        if data == '[DONE]':
                            return
                        event = json.loads(data)
                        if 'error' in event:
                            error = event['error']
                            raise LLMClientError(f'LLM stream broke: {error.get("message")}',
                                                 STREAM_ERROR_STATUS.get(error.get('code'), 503))
                        for choice in event.get('choices', []):
                            piece = (choice.get('delta') or {}).get('content') or ''
                            finish = choice.get('finish_reason')
                            if piece or finish:
                                yield StreamPiece(piece, finish)
            raise LLMClientError(f'the LLM server at {self.chat_url} ended the stream without [DONE]')
        except TimeoutError:
            raise LLMClientError(f'the LLM server at {self.chat_url} did not finish within {self.timeout:g}s '
                                 '([llm] client_timeout)', 504) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise LLMClientError(f'the LLM stream from {self.chat_url} broke: {exc}') from exc


def _system_message(system: str) -> list[dict]:
    """The system prompt as the first message (the server accepts role items in `history`)."""
    return [{'role': 'system', 'content': system}] if system else []


async def _error_message(response: aiohttp.ClientResponse) -> str:
    try:
        body = await response.json(content_type=None)
        return str(body['error']['message'])
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        return ''
