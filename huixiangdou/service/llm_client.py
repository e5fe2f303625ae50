"""The async client the worker uses to reach the hybrid LLM server (POST /inference, streaming via
/v1/chat/completions), with deadline-bounded retries; and start_server() for `main --standalone`.

It does not generate anything itself nor pick backends (the server does).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from loguru import logger

from huixiangdou.config import Config, LLMConfig
from huixiangdou.service.llm.retry import backoff_delay, parse_retry_after

SERVICE_NAME = 'huixiangdou-llm'  # what GET /health answers in "service"
RETRY_STATUSES = {429, 500, 502, 503}
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
            raise ValueError(f'[llm] client_url must be an http(s) URL, got {config.client_url!r}')
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
        last, last_status = '', 0
        for attempt in range(self.max_retries + 1):
            left = deadline - loop.time()
            if left <= 0:
                break
            retry_after = None
            try:
                response = await self._http().post(url, json=payload, headers=self._headers,
                                                   timeout=aiohttp.ClientTimeout(total=None, sock_read=left,
                                                                                 connect=left))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
                last, last_status = f'cannot reach the LLM server at {url}: {exc or type(exc).__name__}', 0
            except TimeoutError:
                break
            else:
                if response.status == 200:
                    return response
                status, message = response.status, await _error_message(response)
                retry_after = parse_retry_after(response.headers.get('Retry-After'))
                response.release()
                last, last_status = f'LLM server answered {status}: {message}', status
                if status not in RETRY_STATUSES:
                    raise LLMClientError(last, status)
            delay = backoff_delay(attempt, self.retry_base_delay, self.retry_max_delay, retry_after)
            if attempt >= self.max_retries or delay >= deadline - loop.time():
                raise LLMClientError(last + f' (gave up after {attempt + 1} attempts)', last_status)
            logger.warning(f'LLM request attempt {attempt + 1} failed ({last}); retrying in {delay:.2f}s')
            await asyncio.sleep(delay)
        raise LLMClientError(f'the LLM server at {url} gave no answer within {self.timeout:g}s ([llm] '
                             f'client_timeout){": " + last if last else ""}', 504)

    async def generate(self, prompt: str, history: list[tuple[str, str]] | None = None,
                       backend: str = 'auto') -> LLMReply:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        payload = {'prompt': prompt, 'history': [list(pair) for pair in history or []], 'backend': backend}
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
                     backend: str = 'auto') -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        payload = {'model': backend, 'stream': True,
                   'messages': history_messages(history) + [{'role': 'user', 'content': prompt}]}
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
                            piece = (choice.get('delta') or {}).get('content')
                            if piece:
                                yield piece
            raise LLMClientError(f'the LLM server at {self.chat_url} ended the stream without [DONE]')
        except TimeoutError:
            raise LLMClientError(f'the LLM server at {self.chat_url} did not finish within {self.timeout:g}s '
                                 '([llm] client_timeout)', 504) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise LLMClientError(f'the LLM stream from {self.chat_url} broke: {exc}') from exc


async def _error_message(response: aiohttp.ClientResponse) -> str:
    try:
        body = await response.json(content_type=None)
        return str(body['error']['message'])
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        return ''


def probe_health(url: str, timeout: float = 2.0) -> dict | None:
    """GET /health; the JSON body if a huixiangdou LLM server answered there, else None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own loopback URL
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body if isinstance(body, dict) and body.get('service') == SERVICE_NAME else None


class LLMServerProcess:
    """The hybrid LLM server as a child process, started and stopped as a context manager.

    A plain (sync) context manager; `async with` works too and waits without blocking the loop.
    If a healthy huixiangdou LLM server already answers on the configured port it is reused and
    left running on exit.

    Usage:
        with start_server(Path('config.ini'), config) as server:
            print(server.url, server.reused)
    """

    def __init__(self, config_path: Path, config: Config, timeout: float = 600.0):
        if timeout <= 0:
            raise ValueError(f'timeout must be > 0, got {timeout}')
        self.config_path = Path(config_path)
        server = config.llm.server
        # A server bound to every interface is still reached on loopback.
        host = '127.0.0.1' if server.host in ('0.0.0.0', '::', '') else server.host
        self.url = f'http://{host}:{server.local_llm_bind_port}'
        self.health_url = f'{self.url}/health'
        self.timeout = timeout
        self.process: subprocess.Popen | None = None
        self.reused = False

    def start(self) -> 'LLMServerProcess':
        if probe_health(self.health_url):
            self.reused = True
            logger.info(f'reusing the LLM server already running at {self.url}')
            return self
        command = [sys.executable, '-m', 'huixiangdou.service.llm_server_hybrid', '--config', str(self.config_path),
                   '--parent-pid', str(os.getpid())]
        logger.info(f'starting the LLM server: {" ".join(command)}')
        self.process = subprocess.Popen(command, env=dict(os.environ, HF_HUB_OFFLINE='1'))
        try:
            return self._wait_ready()
        except BaseException:
            # Ctrl-C or a timeout while the model loads: __exit__ will not run, so stop it here.
            self.stop()
            raise

    def _wait_ready(self) -> 'LLMServerProcess':
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise LLMClientError(f'the LLM server exited with code {code} before it was ready: read its '
                                     'log above (a bad [llm.server] setting or a busy port)')
            if probe_health(self.health_url, timeout=1.0):
                logger.info(f'LLM server ready at {self.url}')
                return self
            time.sleep(0.2)
        raise LLMClientError(f'the LLM server did not answer {self.health_url} within {self.timeout:g}s: '
                             'loading the model may need longer; pass a larger timeout')

    def stop(self, grace: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning(f'LLM server (pid {process.pid}) ignored SIGTERM for {grace:g}s; killing it')
            process.kill()
            process.wait()

    def __enter__(self) -> 'LLMServerProcess':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self) -> 'LLMServerProcess':
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.stop)


def start_server(config_path: Path, config: Config, timeout: float = 600.0) -> LLMServerProcess:
    """An unstarted LLMServerProcess; enter it (`with` or `async with`) to start and wait for /health."""
    return LLMServerProcess(config_path, config, timeout)
