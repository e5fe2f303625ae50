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

    async def start(responder=responder, token=TOKEN, **frontend_settings):
        frontend = frontend_config(type='wechat_personal', max_body_size=2048, **frontend_settings)
        frontend.wechat_personal.host = '127.0.0.1'
        frontend.wechat_personal.token = token
        server = WechatPersonalServer(frontend, responder, port=0)
        await server.start()
        servers.append(server)
        return f'http://127.0.0.1:{server.port}{frontend.wechat_personal.path}'

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
    url = await wechat(message_process_policy='merge', merge_seconds=0.05)
    first = asyncio.create_task(post(url, {'group_id': 'g', 'sender': 'alice', 'content': '请问'}))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(post(url, {'group_id': 'g', 'sender': 'alice', 'content': '如何安装'}))
    (_, a), (_, b) = await asyncio.gather(first, second)
    assert a['status'] == 'merged' and a['reply'] == ''
    assert b['status'] == 'answered' and b['reply'] == 'Answer to: 请问\n如何安装'
    assert responder.queries == ['请问\n如何安装']


async def test_slow_answer_times_out_with_an_empty_reply(wechat):
    gate = asyncio.Event()
    url = await wechat(responder=ScriptedResponder(gate=gate))
    # The server was built with the default reply_timeout; shorten it on the running config.
    status, body = await _post_with_timeout(url, wechat)
    gate.set()
    assert status == 200 and body['status'] == 'timeout'


async def _post_with_timeout(url, wechat):
    server = None
    for cell in wechat.__closure__ or ():
        if isinstance(cell.cell_contents, list) and cell.cell_contents:
            server = cell.cell_contents[-1]
    server.config.reply_timeout = 0.05
    return await post(url, {'group_id': 'g', 'content': 'install'})


async def test_full_group_queue_is_reported(wechat):
    gate = asyncio.Event()
    url = await wechat(responder=ScriptedResponder(gate=gate), group_queue_size=1)
    tasks = [asyncio.create_task(post(url, {'group_id': 'g', 'content': f'install {i}'})) for i in range(3)]
    done, _ = await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert [t.result()[1]['status'] for t in done] == ['queue_full']
    gate.set()
    statuses = sorted(r[1]['status'] for r in await asyncio.gather(*tasks))
    assert statuses == ['answered', 'answered', 'queue_full']
