"""Hostile requests found by an outside test of the console: each got past the first hardening. An upload
whose file name is not UTF-8 is refused (it was stored under a name no later request or build could handle);
a request aiohttp refuses before any handler (no Host, a bad header, bad deflate) is logged without a traceback;
a body that never completes gets 408 instead of holding the connection for ever."""
from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import free_port
from tests.web.conftest import ADMIN_TOKEN

AUTH = {'Authorization': f'Bearer {ADMIN_TOKEN}'}


async def test_an_upload_whose_file_name_is_not_utf8_is_a_400_and_stores_nothing(bare_console):
    url = await bare_console()
    # Bytes as a client may send them: \xff\xfe is no UTF-8 (aiohttp keeps it as lone surrogates).
    body = (b'--abc\r\nContent-Disposition: form-data; name="file"; filename="\xff\xfe.md"\r\n\r\n# hello\r\n'
            b'--abc--\r\n')
    async with aiohttp.ClientSession() as http:
        async with http.post(f'{url}/api/files', data=body,
                             headers={**AUTH, 'Content-Type': 'multipart/form-data; boundary=abc'}) as r:
            answer = await r.json()
            assert r.status == 400, answer
            assert 'UTF-8' in answer['error']['message']
        async with http.get(f'{url}/api/kb') as r:
            assert (await r.json())['files'] == []  # nothing stored that the console could not delete
        # The same upload with a UTF-8 name is stored.
        async with http.post(f'{url}/api/files', data=body.replace(b'\xff\xfe', 'é'.encode()),
                             headers={**AUTH, 'Content-Type': 'multipart/form-data; boundary=abc'}) as r:
            assert r.status == 201, await r.text()


# Requests aiohttp itself answers 400, before any middleware of ours: each used to log a full traceback.
MALFORMED = [b'GET /api/session HTTP/1.1\r\nConnection: close\r\n\r\n',                      # no Host
             b'GET /api/session HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n',  # two Hosts
             b'GET /api/session HTTP/1.1\r\nHost: a\x00b\r\nConnection: close\r\n\r\n',         # NUL in a header
             b'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: br\r\n'
             b'Content-Length: 2\r\nConnection: close\r\n\r\n{}',
             b'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n'
             b'Connection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n']


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _refused_without_traceback(port: int) -> None:
    handler = _Records()
    server_logger = logging.getLogger('aiohttp.server')
    server_logger.addHandler(handler)
    try:
        for request in MALFORMED:
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), 60)
            writer.close()
            assert answer.split(b' ', 2)[1] == b'400', (request, answer[:200])
    finally:
        server_logger.removeHandler(handler)
    assert len(handler.records) == len(MALFORMED)  # each is still logged, as one line
    for record in handler.records:
        assert record.exc_info is None and record.levelno == logging.WARNING, record.getMessage()
        assert 'Traceback' not in handler.format(record)


async def test_a_request_aiohttp_refuses_is_logged_on_one_line_by_the_console(bare_console):
    url = await bare_console()
    await _refused_without_traceback(int(url.rsplit(':', 1)[1]))


async def _start_llm_server(fake_openai) -> tuple[int, web.AppRunner]:
    from huixiangdou.config import LLMConfig, LLMServerConfig
    from huixiangdou.service.llm_server_hybrid import create_app

    port = free_port()
    config = LLMConfig(enable_local=0, enable_remote=1, client_url=f'http://127.0.0.1:{port}/inference',
                       server=LLMServerConfig(remote_type='vllm', remote_base_url=fake_openai.base_url,
                                              remote_api_key=fake_openai.api_key, local_llm_bind_port=port))
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    await web.TCPSite(runner, '127.0.0.1', port).start()
    return port, runner


async def test_a_request_aiohttp_refuses_is_logged_on_one_line_by_the_llm_server(fake_openai):
    port, runner = await _start_llm_server(fake_openai)
    try:
        await _refused_without_traceback(port)
    finally:
        await runner.cleanup()


# A body announced and never completed: the server must answer 408 and close, not wait for ever. The
# deadline is shortened for the test (75 s in production); the client never sends the rest.
UNFINISHED = {
    'json': (b'POST /api/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n'
             b'Content-Length: 100\r\n\r\n{"question": '),
    'chunked': (b'POST /api/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n'
                b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"que\r\n'),
    'upload': (b'POST /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\n' + f'Authorization: Bearer {ADMIN_TOKEN}'.encode()
               + b'\r\nContent-Type: multipart/form-data; boundary=abc\r\nContent-Length: 100000\r\n\r\n'
               b'--abc\r\nContent-Disposition: form-data; name="file"; filename="a.md"\r\n\r\n# hello'),
}


async def _times_out_with_408(port: int, request: bytes) -> None:
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 120)  # the server closes after answering
    finally:
        writer.close()
    assert answer.split(b' ', 2)[1] == b'408', answer[:300]
    assert b'did not arrive within' in answer, answer[:300]


@pytest.mark.parametrize('kind', list(UNFINISHED))
async def test_a_body_that_never_completes_gets_408_from_the_console(bare_console, monkeypatch, kind):
    from huixiangdou.primitive import request_body

    monkeypatch.setattr(request_body, 'BODY_TIMEOUT', 1.0)
    monkeypatch.setattr(request_body, 'MIN_UPLOAD_RATE', 1 << 40)  # the upload's allowance: BODY_TIMEOUT too
    url = await bare_console()
    await _times_out_with_408(int(url.rsplit(':', 1)[1]), UNFINISHED[kind])


async def test_a_body_that_never_completes_gets_408_from_the_llm_server(fake_openai, monkeypatch):
    from huixiangdou.primitive import request_body

    monkeypatch.setattr(request_body, 'BODY_TIMEOUT', 1.0)
    port, runner = await _start_llm_server(fake_openai)
    try:
        await _times_out_with_408(port, b'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                                        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mo')
    finally:
        await runner.cleanup()
