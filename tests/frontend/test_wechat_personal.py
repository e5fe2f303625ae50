"""WechatPersonalServer: our synchronous JSON format, token check, secure-by-default start, timeouts that stop work.

The Android app's post-and-poll format is tested in test_wechat_personal_app.py.
"""
from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from huixiangdou.frontend.callback_server import is_loopback, is_secret_path, require_protected
from huixiangdou.frontend.errors import FrontendError
from huixiangdou.frontend.wechat_personal import WechatPersonalServer
from huixiangdou.service.worker.session import ErrorCode
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


async def test_a_quoted_message_travels_as_its_own_field(wechat, responder):
    url = await wechat()
    status, body = await post(url, {'group_id': 'g1', 'content': '这个怎么 install？',
                                    'quote': '报错：ERROR: No matching distribution (https://pypi.org/simple)'})
    assert status == 200 and body['status'] == 'answered'
    assert responder.seen[0].query == '这个怎么 install？'
    assert responder.seen[0].quote == '报错：ERROR: No matching distribution (https://pypi.org/simple)'
    assert (await post(url, {'group_id': 'g1', 'content': 'install', 'quote': 7}))[0] == 400


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


class RecordingResponder(ScriptedResponder):
    """Takes `slow_seconds` on queries holding "slow", answers the rest at once; records finished and cancelled runs."""

    def __init__(self, slow_seconds: float):
        super().__init__()
        self.slow_seconds = slow_seconds
        self.finished: list[str] = []
        self.cancelled: list[str] = []

    async def run(self, session):
        self.seen.append(session)
        try:
            await asyncio.sleep(self.slow_seconds if 'slow' in session.query else 0)
        except asyncio.CancelledError:
            self.cancelled.append(session.query)
            raise
        self.finished.append(session.query)
        return session.finish(ErrorCode.SUCCESS, f'Answer to: {session.query}')


async def test_timed_out_request_stops_its_worker_so_the_group_moves_on(wechat):
    worker = RecordingResponder(slow_seconds=1.0)
    url = await wechat(responder=worker, reply_timeout=0.2)
    assert (await post(url, {'group_id': 'g', 'content': 'slow question'}))[1]['status'] == 'timeout'
    # Had the slow answer kept running, this one would wait behind it past its own timeout.
    assert (await post(url, {'group_id': 'g', 'content': 'quick question'}))[1]['status'] == 'answered'
    await asyncio.sleep(1.0)
    assert worker.cancelled == ['slow question']
    assert worker.finished == ['quick question']   # no answer computed for a request that gave up


@pytest.mark.parametrize('host, token, path', [
    ('0.0.0.0', '', '/huixiangdou/message'),
    ('::', '', '/huixiangdou/message'),
    ('192.168.1.20', '', '/huixiangdou/hook-for-wechat'),      # long but a guessable phrase
    ('wechat-box.lan', '', '/huixiangdou/aaaaaaaaaaaaaaaaaaaa'),
    ('0.0.0.0', '', '/huixiangdou/Ab3'),
])
async def test_exposed_endpoint_without_a_secret_refuses_to_start_and_offers_a_path(host, token, path, responder):
    frontend = frontend_config(type='wechat_personal')
    frontend.wechat_personal.host, frontend.wechat_personal.token, frontend.wechat_personal.path = host, token, path
    server = WechatPersonalServer(frontend, responder, port=0)
    with pytest.raises(FrontendError) as refused:
        await server.start()
    suggested = re.search(r'path = "(/huixiangdou/[A-Za-z0-9_-]+)"', str(refused.value)).group(1)
    assert is_secret_path(suggested) and '[frontend.wechat_personal]' in str(refused.value)
    assert server._runner is None   # nothing was bound


@pytest.mark.parametrize('host, token, path', [
    ('0.0.0.0', 'a-token', '/huixiangdou/message'),              # allowed with a token
    ('0.0.0.0', '', '/huixiangdou/Zq3vX9kLm2Tr8WbYc4Hd'),       # allowed with a long random path
    ('127.0.0.1', '', '/huixiangdou/message'),                   # loopback allowed
    ('localhost', '', '/huixiangdou/message'),
    ('::1', '', '/huixiangdou/message'),
])
def test_token_secret_path_or_loopback_allow_the_start(host, token, path):
    require_protected('wechat_personal', 'frontend.wechat_personal', host, token, path)


def test_loopback_and_secret_path_checks():
    assert all(is_loopback(h) for h in ('127.0.0.1', '127.8.0.3', '::1', 'localhost', '[::1]'))
    assert not any(is_loopback(h) for h in ('0.0.0.0', '::', '', '10.0.0.2', 'example.com'))
    assert is_secret_path('/x/' + 'Zq3vX9kLm2Tr8WbYc4Hd') and is_secret_path('/Zq3vX9kLm2Tr8WbYc4Hd/')
    assert not is_secret_path('/huixiangdou/message') and not is_secret_path('/hook/huixiangdoumessages')
    assert not is_secret_path('/x/Zq3vX9kLm2Tr8Wb')          # 15 characters
    assert not is_secret_path('/x/Zq3vX9kLm2Tr8WbYc4Hd!!')   # not URL-safe


async def test_started_loopback_server_answers(wechat):
    url = await wechat(token='')
    assert (await post(url, {'group_id': 'g', 'content': 'install'}, token=''))[1]['status'] == 'answered'


async def _until(predicate):
    async def poll():
        while not predicate():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), 10)


async def test_our_format_carries_base64_images_and_refuses_bad_ones(wechat, responder):
    import base64
    url = await wechat()
    png = base64.b64encode(b'\x89PNG\r\n\x1a\n' + b'\0' * 64).decode()
    status, body = await post(url, {'group_id': 'g1', 'content': '', 'images': [png]})
    assert status == 200 and responder.seen[-1].images == [base64.b64decode(png)]
    assert responder.seen[-1].query == ''
    for bad, code, reason in (([png] * 4, 400, 'at most 3'), (['not base64!'], 400, 'not valid base64'),
                              (png, 400, 'list of base64')):
        status, body = await post(url, {'group_id': 'g1', 'content': '怎么安装', 'images': bad})
        assert (status, reason in body['error']) == (code, True)
