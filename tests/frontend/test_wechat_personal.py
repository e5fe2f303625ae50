"""WechatPersonalServer: the helper app's JSON endpoint, token check, answers in the response body."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from huixiangdou.frontend.wechat_personal import WechatPersonalServer
from tests.frontend.conftest import REFERENCE, ScriptedResponder, frontend_config

TOKEN = 'helper-app-token'


@pytest.fixture
async def wechat(responder):
    servers = []

    async def start(responder=responder, token=TOKEN, reply_timeout=120.0, **frontend_settings):
        frontend = frontend_config(type='wechat_personal', max_body_size=2048, **frontend_settings)
        frontend.wechat_personal.host = '127.0.0.1'
        frontend.wechat_personal.token = token
        frontend.wechat_personal.reply_timeout = reply_timeout
        server = WechatPersonalServer(frontend, responder, port=0)
        await server.start()
        servers.append(server)
        return f'http://127.0.0.1:{server.port}{frontend.wechat_personal.path}'

    start.servers = servers
    yield start
    for server in servers:
        await server.stop()


async def post(url, body, token=TOKEN, raw: bytes | None = None):
    headers = {'Authorization': f'Bearer {token}'} if token else {}
    async with aiohttp.ClientSession() as http:
        kwargs = {'data': raw, 'headers': {**headers, 'Content-Type': 'application/json'}} if raw is not None \
            else {'json': body, 'headers': headers}
        async with http.post(url, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)


async def test_on_topic_message_is_answered_in_the_response(wechat, responder):
    url = await wechat()
    status, body = await post(url, {'group_id': 'g1', 'group_name': '茴香豆群', 'sender': '张三',
                                    'content': '茴香豆怎么安装？', 'message_id': 'client-1'})
    assert status == 200
    assert body == {'status': 'answered', 'reply': 'Answer to: 茴香豆怎么安装？', 'references': [REFERENCE],
                    'message_id': 'client-1'}
    assert responder.seen[0].group_name == '茴香豆群'


async def test_chatter_gets_an_empty_reply(wechat):
    url = await wechat()
    status, body = await post(url, {'group_name': '茴香豆群', 'sender': '张三', 'content': '哈哈哈'})
    assert status == 200
    assert body['status'] == 'silent' and body['reply'] == ''


async def test_wrong_or_missing_token_is_refused(wechat, responder):
    url = await wechat()
    assert (await post(url, {'group_id': 'g', 'content': 'install'}, token='guess'))[0] == 401
    assert (await post(url, {'group_id': 'g', 'content': 'install'}, token=''))[0] == 401
    assert responder.seen == []


@pytest.mark.parametrize('body', [{'group_id': 'g'}, {'content': 'install'}, {'group_id': 'g', 'content': 3},
                                  {'group_id': 'g', 'content': 'x', 'sender': 5}])
async def test_missing_or_mistyped_fields_are_400(wechat, body):
    url = await wechat()
    status, answer = await post(url, body)
    assert status == 400 and answer['error']


async def test_bad_json_and_large_bodies(wechat):
    url = await wechat()
    assert (await post(url, None, raw=b'{"content": '))[0] == 400
    assert (await post(url, None, raw=b'{"content": "' + b'a' * 4096 + b'"}'))[0] == 413


async def test_merge_policy_answers_the_last_request_with_the_whole_burst(wechat, responder):
    url = await wechat(message_process_policy='merge', merge_seconds=0.5)
    first = asyncio.create_task(post(url, {'group_id': 'g', 'sender': 'alice', 'content': '请问'}))
    server = wechat.servers[-1]
    await _until(lambda: server._waiting)
    second = asyncio.create_task(post(url, {'group_id': 'g', 'sender': 'alice', 'content': '如何安装'}))
    (_, a), (_, b) = await asyncio.gather(first, second)
    assert a['status'] == 'merged' and a['reply'] == ''
    assert b['status'] == 'answered' and b['reply'] == 'Answer to: 请问\n如何安装'
    assert responder.queries == ['请问\n如何安装']


async def test_slow_answer_times_out_with_an_empty_reply(wechat):
    gate = asyncio.Event()
    url = await wechat(responder=ScriptedResponder(gate=gate), reply_timeout=0.05)
    status, body = await post(url, {'group_id': 'g', 'content': 'install'})
    gate.set()
    assert status == 200 and body['status'] == 'timeout'


async def test_full_group_queue_is_reported(wechat):
    gate = asyncio.Event()
    busy = ScriptedResponder(gate=gate)
    url = await wechat(responder=busy, group_queue_size=1)
    first = asyncio.create_task(post(url, {'group_id': 'g', 'content': 'install 0'}))
    await _until(lambda: busy.seen)  # the worker holds message 0; the queue is empty
    second = asyncio.create_task(post(url, {'group_id': 'g', 'content': 'install 1'}))  # fills the queue
    server = wechat.servers[-1]
    await _until(lambda: len(server._waiting) == 2)
    assert (await post(url, {'group_id': 'g', 'content': 'install 2'}))[1]['status'] == 'queue_full'
    gate.set()
    assert [(await t)[1]['status'] for t in (first, second)] == ['answered', 'answered']


async def test_stopping_releases_waiting_requests(wechat):
    gate = asyncio.Event()  # never opened
    url = await wechat(responder=ScriptedResponder(gate=gate))
    waiting = asyncio.create_task(post(url, {'group_id': 'g', 'content': 'install'}))
    server = wechat.servers[-1]
    await _until(lambda: server._waiting)
    await server.stop()
    status, body = await waiting
    assert status == 503


async def _until(predicate):
    async def poll():
        while not predicate():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), 10)
