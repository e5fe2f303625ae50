"""Every callback server cuts off slow clients: headers sent byte by byte (slowloris) lose the connection,
and a body that never completes gets 408. Raw sockets, so the client can be as slow as an attacker."""
from __future__ import annotations

import asyncio

import pytest

from huixiangdou.config import LarkGroupConfig
from huixiangdou.frontend.callback_server import BODY_TIMEOUT, HEADER_TIMEOUT
from huixiangdou.frontend.lark_group import LarkGroupServer
from huixiangdou.frontend.lark_open_api import LarkOpenApi
from huixiangdou.frontend.wechat_personal import WechatPersonalServer
from huixiangdou.frontend.wechat_wkteam import WechatWkteamServer
from huixiangdou.frontend.wkteam_api import WkteamApi
from tests.frontend.conftest import frontend_config

LIMIT = 0.5           # what the servers under test are given
GIVE_UP_AFTER = 60.0  # far above LIMIT, far below the shipped 75 s: only a working limit closes in time


def lark_server(responder, fake_lark, fake_wkteam):
    group = LarkGroupConfig(app_id=fake_lark.app_id, app_secret=fake_lark.app_secret, verification_token='vt',
                            base_url=fake_lark.base_url, host='127.0.0.1')
    server = LarkGroupServer(frontend_config(type='lark_group', lark_group=group), responder, port=0,
                             api=LarkOpenApi(group.app_id, group.app_secret, group.base_url))
    return server, group.path


def wkteam_server(responder, fake_lark, fake_wkteam):
    frontend = frontend_config(type='wechat_wkteam')
    frontend.wechat_wkteam.callback_host = '127.0.0.1'
    server = WechatWkteamServer(frontend, responder, history_path=':memory:', port=0,
                                api=WkteamApi(fake_wkteam.base_url, api_token=fake_wkteam.token))
    return server, frontend.wechat_wkteam.callback_path


def personal_server(responder, fake_lark, fake_wkteam):
    frontend = frontend_config(type='wechat_personal')
    frontend.wechat_personal.host = '127.0.0.1'
    return WechatPersonalServer(frontend, responder, port=0), frontend.wechat_personal.path


@pytest.fixture(params=[lark_server, wkteam_server, personal_server], ids=['lark_group', 'wkteam', 'personal'])
async def server(request, responder, fake_lark, fake_wkteam):
    server, path = request.param(responder, fake_lark, fake_wkteam)
    server.header_timeout = server.body_timeout = LIMIT
    await server.start()
    yield server, path
    await server.stop()


def test_shipped_limits_match_the_console_and_llm_server():
    assert HEADER_TIMEOUT == BODY_TIMEOUT == 75.0


async def test_headers_sent_byte_by_byte_lose_the_connection(server):
    server, path = server
    reader, writer = await asyncio.open_connection('127.0.0.1', server.port)
    head = f'POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' + 'X-Pad: a\r\n' * 10_000

    async def dribble():
        for byte in head.encode():   # never finishes the head: it would take far longer than GIVE_UP_AFTER
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(dribble())
    try:
        # The server closing the connection ends the read (b'') or makes the writes fail.
        done, _ = await asyncio.wait([sender, asyncio.create_task(reader.read())], timeout=GIVE_UP_AFTER,
                                     return_when=asyncio.FIRST_COMPLETED)
        assert done, f'a client still sending headers after {GIVE_UP_AFTER} s kept its connection'
    finally:
        sender.cancel()
        writer.close()


async def test_a_body_that_never_completes_gets_408(server):
    server, path = server
    reader, writer = await asyncio.open_connection('127.0.0.1', server.port)
    writer.write(f'POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                 f'Content-Length: 200\r\n\r\n{{"content": '.encode())
    await writer.drain()
    try:
        status_line = await asyncio.wait_for(reader.readline(), GIVE_UP_AFTER)
    finally:
        writer.close()
    assert status_line.split()[1:2] == [b'408'], status_line
