"""The Android helper app's protocol on the wechat_personal endpoint, driven by a client that behaves like the app.

HelperApp follows upstream's SendEmojiService.kt: a text post with only a JSON content type, then (if
the post got a 2xx) poll, wait, poll, wait; it types the text built from the first poll that has data.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
import pytest

from huixiangdou.config import WorkerConfig
from huixiangdou.frontend.wechat_personal import WechatPersonalServer
from huixiangdou.service.worker.pipeline import Worker
from tests.frontend.conftest import REFERENCE, ScriptedResponder, frontend_config

SECRET_PATH = '/huixiangdou/Zq3vX9kLm2Tr8WbYc4Hd'
APP_HEADERS = {'Content-Type': 'application/json; charset=utf-8'}   # all the app sends (okhttp adds the rest)


def check_chat_response(body: dict) -> dict:
    """What the app's data classes require (ChatResponse / QueryResponsePair / UserInfo / RSP), field by field."""
    assert set(body) == {'msg', 'msgCode', 'data'}
    assert isinstance(body['msg'], str) and isinstance(body['msgCode'], int)
    assert isinstance(body['data'], list)
    for item in body['data']:
        assert set(item) == {'req', 'rsp'}
        req, rsp = item['req'], item['rsp']
        assert set(req) == {'query_id', 'groupname', 'username', 'query'}
        assert all(isinstance(req[k], str) for k in ('query_id', 'groupname', 'username'))
        assert set(req['query']) == {'type', 'content'} and req['query']['type'] == 'text'
        assert set(rsp) == {'code', 'state', 'text', 'references'}
        assert isinstance(rsp['code'], int) and isinstance(rsp['state'], str) and isinstance(rsp['text'], str)
        assert isinstance(rsp['references'], list) and all(isinstance(r, str) for r in rsp['references'])
    return body


@dataclass
class HelperApp:
    """The app's network behaviour: post, then `polls` polls `interval` seconds apart (5 s and 2 in the APK).

    Like the app, a reply fetched by the last poll waits in `send_text` and is typed at the start of the
    next message's poll loop. `typed` collects what the app would type into the chat.
    """
    url: str
    interval: float = 5.0
    polls: int = 2
    debug: bool = True       # the app's DEBUG preference, on by default
    send_text: str = ''
    typed: list[str] = field(default_factory=list)
    responses: list[dict] = field(default_factory=list)

    def _user_info(self, group: str, sender: str, query_type: str, content: str) -> dict:
        return {'query_id': group, 'groupname': group, 'username': sender,
                'query': {'type': query_type, 'content': content}}

    async def _post(self, http, body: dict) -> tuple[int, dict]:
        async with http.post(self.url, json=body, headers=APP_HEADERS) as resp:
            return resp.status, await resp.json(content_type=None)

    async def on_message(self, group: str, sender: str, content: str) -> int:
        """A new message appeared in the chat; returns the status of the text post."""
        async with aiohttp.ClientSession(skip_auto_headers=('User-Agent',)) as http:
            status, _ = await self._post(http, self._user_info(group, sender, 'text', content))
            if not 200 <= status < 300:
                return status
            for _ in range(self.polls):
                if self.send_text:
                    self.typed.append(self.send_text)
                    self.send_text = ''
                    break
                await self._poll(http, group, sender)
                await asyncio.sleep(self.interval)
        return status

    async def _poll(self, http, group: str, sender: str) -> None:
        if self.send_text:
            return
        status, body = await self._post(http, self._user_info(group, sender, 'poll', ''))
        if not 200 <= status < 300:
            return
        self.responses.append(check_chat_response(body))
        if body['data']:
            self.send_text = self._reply_text(body['data'])

    def _reply_text(self, data: list[dict]) -> str:
        parts = []
        for item in data:
            content, rsp = item['req']['query']['content'], item['rsp']
            if self.debug:
                parts.append(f"{content}\n---\n{rsp['code']}\n{rsp['state']}\n{rsp['text']}")
            elif rsp['code'] == 0:
                parts.append(f"{content}\n------\n{rsp['text']}")
        return ''.join(parts)


@pytest.fixture
async def wechat(responder):
    servers = []

    async def start(responder=responder, token='', path='/huixiangdou/message', **frontend_settings):
        poll_keep = frontend_settings.pop('poll_keep_seconds', 600.0)
        frontend = frontend_config(type='wechat_personal', **frontend_settings)
        settings = frontend.wechat_personal
        settings.host, settings.token, settings.path, settings.poll_keep_seconds = '127.0.0.1', token, path, poll_keep
        server = WechatPersonalServer(frontend, responder, port=0)
        await server.start()
        servers.append(server)
        return server, f'http://127.0.0.1:{server.port}{path}'

    yield start
    for server in servers:
        await server.stop()


async def raw_post(url, body, headers=None):
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers=headers or APP_HEADERS) as resp:
            return resp.status, await resp.json(content_type=None)


def app_body(kind='text', content='茴香豆怎么安装？', group='茴香豆用户群', sender='张三'):
    return {'query_id': group, 'groupname': group, 'username': sender, 'query': {'type': kind, 'content': content}}


async def test_app_posts_then_types_the_answer_its_poll_collects(wechat, responder):
    server, url = await wechat()
    app = HelperApp(url, interval=0.2, debug=False)
    assert await app.on_message('茴香豆用户群', '张三', '茴香豆怎么安装？') == 200
    assert app.typed == ['茴香豆怎么安装？\n------\nAnswer to: 茴香豆怎么安装？']
    answered = [item for r in app.responses for item in r['data']]
    assert answered == [{'req': app_body(), 'rsp': {'code': 0, 'state': 'success', 'text': 'Answer to: 茴香豆怎么安装？',
                                                     'references': [REFERENCE]}}]
    assert responder.seen[0].group_name == '茴香豆用户群'


async def test_text_post_is_acknowledged_at_once_in_the_app_format(wechat):
    gate = asyncio.Event()   # the worker never answers during this test
    server, url = await wechat(responder=ScriptedResponder(gate=gate))
    status, body = await asyncio.wait_for(raw_post(url, app_body()), 5)
    assert (status, body) == (200, {'msg': 'ok', 'msgCode': 10000, 'data': []})
    gate.set()


async def test_debug_mode_shows_why_chatter_got_no_answer(wechat):
    server, url = await wechat()
    quiet, debug = HelperApp(url, interval=0.2, debug=False), HelperApp(url, interval=0.2, debug=True)
    await quiet.on_message('g1', 'alice', '周末去爬山吗')
    await debug.on_message('g2', 'bob', '周末去爬山吗')
    assert quiet.typed == []   # code 3: the app types nothing outside debug mode
    assert debug.typed == ['周末去爬山吗\n---\n3\nunrelated\n']


async def test_slow_answer_waits_for_the_next_messages_polls(wechat):
    gate = asyncio.Event()
    server, url = await wechat(responder=ScriptedResponder(gate=gate))
    app = HelperApp(url, interval=0.1, debug=False)
    await app.on_message('g', 'alice', 'how to install huixiangdou?')
    assert app.typed == []   # both polls came before the answer
    gate.set()
    await server.dispatcher.wait_idle()
    await app.on_message('g', 'bob', 'install on windows?')
    # One poll may collect both answers; the app joins them into one text, oldest first.
    assert app.typed[0].startswith('how to install huixiangdou?\n------\nAnswer to: how to install huixiangdou?')


async def test_each_answer_is_handed_out_once_and_only_to_its_group(wechat):
    server, url = await wechat()
    assert (await raw_post(url, app_body(content='install please', group='a')))[0] == 200
    await server.dispatcher.wait_idle()
    assert (await raw_post(url, app_body('poll', '', group='b')))[1]['data'] == []
    first = (await raw_post(url, app_body('poll', '', group='a')))[1]['data']
    again = (await raw_post(url, app_body('poll', '', group='a')))[1]['data']
    assert [item['rsp']['text'] for item in first] == ['Answer to: install please'] and again == []


async def test_unpolled_answers_expire_after_poll_keep_seconds(wechat):
    server, url = await wechat(poll_keep_seconds=0.2)
    await raw_post(url, app_body(content='install please'))
    await server.dispatcher.wait_idle()
    await asyncio.sleep(0.3)
    assert (await raw_post(url, app_body('poll', '')))[1]['data'] == []


async def test_rate_limited_message_shows_its_code_in_debug_mode(wechat):
    server, url = await wechat(reply_rate_per_minute=1)
    for text in ('install 1', 'install 2'):
        await raw_post(url, app_body(content=text))
    await server.dispatcher.wait_idle()
    data = (await raw_post(url, app_body('poll', '')))[1]['data']
    assert [(d['req']['query']['content'], d['rsp']['code'], d['rsp']['state']) for d in data] == [
        ('install 1', 0, 'success'), ('install 2', 101, 'rate_limited')]


async def test_unsupported_query_type_is_a_clean_app_format_refusal(wechat, responder):
    server, url = await wechat()
    status, body = await raw_post(url, app_body('image', 'https://example.com/a.jpg'))
    assert status == 400 and body['data'] == [] and body['msgCode'] == 400
    assert "'image' is not supported" in body['msg']
    assert responder.seen == []


@pytest.mark.parametrize('body', [
    {'query': 'install'},
    {'groupname': 'g', 'query': {'type': 'text'}},
    {'groupname': 5, 'query': {'type': 'text', 'content': 'x'}},
    {'query': {'type': 'text', 'content': 'install'}},
    {'groupname': 'g', 'query': {'type': 1, 'content': 'x'}},
    {'groupname': 'g', 'username': ['x'], 'query': {'type': 'text', 'content': 'x'}},
])
async def test_malformed_app_posts_are_400_in_the_app_format(wechat, body, responder):
    server, url = await wechat()
    status, answer = await raw_post(url, body)
    assert status == 400 and answer['msg'] and answer['data'] == []
    assert responder.seen == []


async def test_token_without_secret_path_refuses_the_app_but_not_a_bearer_client(wechat, responder):
    server, url = await wechat(token='tok')
    status, body = await raw_post(url, app_body())
    assert status == 401 and body['msgCode'] == 401
    headers = {**APP_HEADERS, 'Authorization': 'Bearer tok'}
    assert (await raw_post(url, app_body(), headers))[0] == 200


async def test_secret_path_lets_the_app_in_while_our_format_still_needs_the_token(wechat):
    server, url = await wechat(token='tok', path=SECRET_PATH)
    app = HelperApp(url, interval=0.2, debug=False)
    assert await app.on_message('g', 'alice', 'install?') == 200
    assert app.typed == ['install?\n------\nAnswer to: install?']
    assert (await raw_post(url, {'group_id': 'g', 'content': 'install'}))[0] == 401


async def test_the_app_gets_answers_from_the_real_worker(fake_openai, llm, sample_feature_store):
    fake_openai.responder = lambda m: '在 [frontend.lark_group] 段填写 encrypt_key 和 verification_token [1]'
    worker = Worker(WorkerConfig(), sample_feature_store, llm)
    frontend = frontend_config(type='wechat_personal')
    frontend.wechat_personal.host, frontend.wechat_personal.path = '127.0.0.1', SECRET_PATH
    server = WechatPersonalServer(frontend, worker, port=0)
    await server.start()
    try:
        app = HelperApp(f'http://127.0.0.1:{server.port}{SECRET_PATH}', interval=0.2, debug=False)
        await app.on_message('茴香豆用户群', '张三', '飞书群应用的 encrypt_key 加密密钥应该在 config.ini 哪里配置？')
        await server.dispatcher.wait_idle()
        # The next message's polls collect whatever the first two missed, as in the app.
        await app.on_message('茴香豆用户群', '李四', '周末有人一起去爬山吗？天气预报说不下雨')
        await server.dispatcher.wait_idle()
        await app.on_message('茴香豆用户群', '王五', '哈哈')
    finally:
        await server.stop()
    assert len(app.typed) == 1   # the answer; chatter types nothing outside debug mode
    assert app.typed[0].startswith('飞书群应用的 encrypt_key') and 'encrypt_key' in app.typed[0].split('------')[1]


async def test_polled_answers_keep_the_newest_per_group_and_forget_old_ones(tmp_path):
    from huixiangdou.frontend.inbox import Inbox
    from huixiangdou.frontend.polled_answers import PolledAnswers
    from huixiangdou.frontend.wechat_app_protocol import AppAnswer, AppRequest, PolledItem

    now = [1000.0]
    inbox = Inbox(tmp_path / 'inbox.sqlite')
    await inbox.open()
    answers = PolledAnswers(inbox, keep_seconds=10, per_group=2, clock=lambda: now[0])
    await answers.open()

    def item(text):
        return PolledItem(AppRequest('g', 'g', 'u', 'text', text), AppAnswer(0, 'success', text, ['ref']))

    for text in ('a', 'b', 'c'):
        await answers.put('g', item(text))
    await answers.put('other', item('x'))
    taken = await answers.take('g')
    assert [i.answer.text for i in taken] == ['b', 'c']   # bounded: the oldest went
    assert taken[0] == item('b')                           # read back field for field
    assert await answers.take('g') == []                   # handed out once
    now[0] += 11.0
    assert await answers.take('other') == [] and await answers.count() == 0   # expired
    await inbox.close()
