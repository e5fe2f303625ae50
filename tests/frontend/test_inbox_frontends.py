"""The inbox as the frontends use it, in process across a stop and a start on the same workdir: what is
retried (a failed send), what is not (a silent message), and a failed inbox write refused with 503."""
from __future__ import annotations

import asyncio
import sqlite3

import aiohttp

from huixiangdou.frontend.wechat_wkteam import WechatWkteamServer
from huixiangdou.frontend.wkteam_api import WkteamApi
from tests.frontend.conftest import ScriptedResponder, frontend_config
from tests.frontend.lark_events import Driver, message_event, start_lark_server
from tests.frontend.test_wechat_wkteam import WID, push


async def test_a_reply_lark_refused_is_sent_at_the_next_start(fake_lark, responder, tmp_path):
    first = await start_lark_server(fake_lark, responder, state_dir=tmp_path)
    fake_lark.fail('reply', status=400, body={'code': 230002, 'msg': 'bot not in chat'})  # not retried
    assert (await first.send(message_event('how to install?', message_id='om_1')))[0] == 200
    await first.settle()
    assert fake_lark.replies == [] and await first.server.inbox.state('om_1') == 'pending'
    await first.server.stop()

    second = await start_lark_server(fake_lark, responder, state_dir=tmp_path)
    await fake_lark.wait_until(lambda: fake_lark.replies)
    await second.settle()
    assert [r.message_id for r in fake_lark.replies] == ['om_1']
    assert await second.server.inbox.state('om_1') == 'answered'
    await second.server.stop()


async def test_a_message_the_worker_chose_not_to_answer_is_not_asked_again(fake_lark, responder, tmp_path):
    first = await start_lark_server(fake_lark, responder, state_dir=tmp_path)
    assert (await first.send(message_event('今天中午吃什么', message_id='om_chat')))[0] == 200
    await first.settle()
    assert await first.server.inbox.state('om_chat') == 'skipped'
    await first.server.stop()

    second = await start_lark_server(fake_lark, responder, state_dir=tmp_path)
    assert (await second.send(message_event('今天中午吃什么', message_id='om_chat')))[0] == 200
    await second.settle()
    assert responder.queries == ['今天中午吃什么']
    await second.server.stop()


async def test_messages_not_worth_answering_are_not_stored(fake_lark, responder, tmp_path):
    driver = await start_lark_server(fake_lark, responder, state_dir=tmp_path)
    assert (await driver.send(message_event('install?', message_id='om_p2p', chat_type='p2p')))[0] == 200
    await driver.settle()
    assert await driver.server.inbox.state('om_p2p') is None
    await driver.server.stop()


async def test_an_inbox_that_cannot_be_written_gets_503_so_lark_delivers_again(fake_lark, responder, tmp_path):
    driver: Driver = await start_lark_server(fake_lark, responder, state_dir=tmp_path)
    event = message_event('how to install?', message_id='om_locked')
    # Another process holding the database's write lock: the insert fails after SQLite's busy timeout.
    blocker = sqlite3.connect(tmp_path / 'lark_group_inbox.sqlite', isolation_level=None)
    blocker.execute('BEGIN EXCLUSIVE')
    try:
        status, body = await driver.send(event)
    finally:
        blocker.execute('ROLLBACK')
        blocker.close()
    assert status == 503 and 'store' in body['error']
    assert responder.queries == []
    assert (await driver.send(event))[0] == 200     # Lark's redelivery, once the disk is back
    await fake_lark.wait_until(lambda: fake_lark.replies)
    await driver.server.stop()


async def test_wkteam_stop_while_answering_leaves_the_push_for_the_next_start(fake_wkteam, tmp_path):
    """A clean stop does not wait for the LLM: the push stays pending and the next start answers it."""
    def server(responder):
        frontend = frontend_config(type='wechat_wkteam')
        frontend.wechat_wkteam.base_url, frontend.wechat_wkteam.wid = fake_wkteam.base_url, WID
        frontend.wechat_wkteam.callback_host = '127.0.0.1'
        return WechatWkteamServer(frontend, responder, history_path=tmp_path / 'wkteam.sqlite', port=0,
                                  api=WkteamApi(fake_wkteam.base_url, api_token=fake_wkteam.token))

    busy = ScriptedResponder(gate=asyncio.Event())
    first = server(busy)
    await first.warm_up()
    await first.start()
    async with aiohttp.ClientSession() as http:
        async with http.post(f'http://127.0.0.1:{first.port}/callback', json=push('install?', new_msg_id=42)) as r:
            assert r.status == 200
    while not busy.seen:
        await asyncio.sleep(0.01)
    await first.stop()
    assert fake_wkteam.sent == []

    second = server(ScriptedResponder())
    await second.warm_up()
    await second.start()
    await fake_wkteam.wait_until(lambda: fake_wkteam.sent)
    assert 'Answer to: install?' in fake_wkteam.sent[0]['content']
    await second.stop()
