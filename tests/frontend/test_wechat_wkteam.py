"""WechatWkteamServer against the fake wkteam API: group answers, quotes, revoke, persistent history."""
from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from huixiangdou.config import GroupConfig
from huixiangdou.frontend.wechat_wkteam import WechatWkteamServer
from huixiangdou.frontend.errors import WkteamApiError
from huixiangdou.frontend.wkteam_api import WkteamApi
from tests.frontend.conftest import REFERENCE, frontend_config

WID = 'w-fake-instance'
BOT = 'wxid_bot'
GROUP = '43925126702@chatroom'
_ids = itertools.count(1)


def push(content: str, *, sender='wxid_alice', group=GROUP, message_type='80001', atlist=None, self_sent=False,
         new_msg_id=None, title=None):
    n = next(_ids)
    data = {'fromGroup': group, 'fromUser': sender, 'content': content, 'msgId': n,
            'newMsgId': new_msg_id or 5_000_000 + n, 'timestamp': 1_700_000_000 + n, 'toUser': BOT, 'wId': WID,
            'self': self_sent, 'atlist': atlist or []}
    if title is not None:
        data['title'] = title
    return {'account': '13800000000', 'messageType': message_type, 'wcId': BOT, 'data': data}


def quote(text: str, quoted_new_msg_id: int, quoted_text: str, quoted_sender=BOT, sender='wxid_alice'):
    xml = (f'<msg><appmsg appid="" sdkver="0"><title>{text}</title><type>57</type><refermsg><type>1</type>'
           f'<svrid>{quoted_new_msg_id}</svrid><fromusr>{GROUP}</fromusr><chatusr>{quoted_sender}</chatusr>'
           f'<content>{quoted_text}</content></refermsg></appmsg></msg>')
    return push(xml, message_type='80014', sender=sender)


@pytest.fixture
async def wkteam(fake_wkteam, responder, tmp_path):
    servers = []

    async def start(responder=responder, login=False, **settings):
        frontend = frontend_config(type='wechat_wkteam', max_body_size=4096)
        config = frontend.wechat_wkteam
        config.base_url, config.wid, config.callback_host = fake_wkteam.base_url, WID, '127.0.0.1'
        config.groups = {'43925126702': GroupConfig(name='茴香豆微信群', introduction='安装问题')}
        for key, value in settings.items():
            setattr(config if hasattr(config, key) else frontend, key, value)
        if login:
            api = WkteamApi(config.base_url, account=fake_wkteam.account, password=fake_wkteam.password)
        else:
            api = WkteamApi(config.base_url, api_token=fake_wkteam.token)
        server = WechatWkteamServer(frontend, responder, history_path=tmp_path / 'workdir' / 'wkteam.sqlite',
                                    api=api, port=0)
        await server.warm_up()
        await server.start()
        servers.append(server)
        return Driver(server)

    yield start
    for server in servers:
        await server.stop()


class Driver:
    def __init__(self, server):
        self.server = server
        self.url = f'http://127.0.0.1:{server.port}{server.config.callback_path}'

    async def push(self, body=None, raw: bytes | None = None):
        async with aiohttp.ClientSession() as http:
            kwargs = {'json': body} if raw is None else {'data': raw}
            async with http.post(self.url, **kwargs) as resp:
                return resp.status

    async def settle(self):
        await self.server.dispatcher.wait_idle()
        if self.server._tasks:
            await asyncio.gather(*list(self.server._tasks))


async def test_group_question_is_answered_with_references(wkteam, fake_wkteam, responder):
    driver = await wkteam()
    assert await driver.push(push('@茴香豆\u2005怎么安装？', atlist=[BOT])) == 200
    await fake_wkteam.wait_until(lambda: fake_wkteam.sent)
    sent = fake_wkteam.sent[0]
    assert sent['wId'] == WID and sent['wcId'] == GROUP
    assert sent['content'].startswith('「怎么安装？」')
    assert 'Answer to: 怎么安装？' in sent['content'] and REFERENCE in sent['content']
    assert responder.seen[0].group_name == '茴香豆微信群'
    assert responder.seen[0].group_introduction == '安装问题'


async def test_chatter_and_own_messages_get_no_reply(wkteam, fake_wkteam, responder):
    driver = await wkteam()
    await driver.push(push('晚上吃火锅'))
    await driver.push(push('install from myself', self_sent=True))
    await driver.push(push('install from the bot account', sender=BOT))
    await driver.push({**push('install privately'), 'messageType': '60001'})
    await driver.settle()
    assert responder.queries == ['晚上吃火锅']
    assert fake_wkteam.sent == []


async def test_duplicate_push_is_answered_once(wkteam, fake_wkteam, responder):
    driver = await wkteam()
    body = push('install twice?')
    await driver.push(body)
    await driver.push(body)
    await driver.settle()
    assert len(responder.seen) == 1 and len(fake_wkteam.sent) == 1


async def test_quote_reaches_the_worker_as_its_own_field(wkteam, responder):
    driver = await wkteam()
    quoted = '报错：pip install 失败，见 https://example.com/a:b?x=1 「原文」'
    await driver.push(quote('这个怎么解决', 123, quoted, quoted_sender='wxid_bob'))
    await driver.settle()
    # The question is what the user typed; the quote arrives whole, colons, URL and brackets included.
    assert responder.queries == ['这个怎么解决']
    assert responder.seen[0].quote == quoted


async def test_asker_revokes_the_answer_by_quoting_it(wkteam, fake_wkteam):
    driver = await wkteam()
    await driver.push(push('install?', sender='wxid_alice'))
    await fake_wkteam.wait_until(lambda: fake_wkteam.sent)
    answer = fake_wkteam.sent[0]
    await driver.push(quote('撤回', answer['newMsgId'], '...', sender='wxid_mallory'))
    await driver.settle()
    assert fake_wkteam.revoked == []
    await driver.push(quote('撤回', answer['newMsgId'], '...', sender='wxid_alice'))
    await driver.settle()
    assert fake_wkteam.revoked == [{'wId': WID, 'wcId': GROUP, 'msgId': answer['msgId'],
                                    'newMsgId': answer['newMsgId'], 'createTime': answer['createTime']}]


async def test_history_survives_a_restart(wkteam, responder):
    first = await wkteam()
    await first.push(push('how to install?'))
    await first.settle()
    await first.server.stop()
    second = await wkteam()
    await second.push(push('install on windows too?'))
    await second.settle()
    assert responder.seen[-1].history == [('how to install?', 'Answer to: how to install?')]


async def test_logs_in_with_account_and_password(wkteam, fake_wkteam):
    driver = await wkteam(login=True)
    await driver.push(push('install?'))
    await fake_wkteam.wait_until(lambda: fake_wkteam.sent)
    assert fake_wkteam.logins == 1


async def test_failed_send_is_logged_and_the_next_answer_still_goes_out(wkteam, fake_wkteam):
    fake_wkteam.fail('sendText')
    driver = await wkteam()
    await driver.push(push('install 1'))
    await driver.push(push('install 2'))
    await driver.settle()
    assert [s['content'].splitlines()[0] for s in fake_wkteam.sent] == ['「install 2」']


async def test_bad_bodies_and_foreign_instances(wkteam, responder):
    driver = await wkteam()
    assert await driver.push(raw=b'not json') == 400
    assert await driver.push(raw=b'{"data": "' + b'x' * 5000 + b'"}') == 413
    foreign = push('install?')
    foreign['data']['wId'] = 'someone-else'
    assert await driver.push(foreign) == 401
    assert await driver.push({'messageType': '30000', 'data': {}}) == 200  # unknown type: acknowledged
    await driver.settle()
    assert responder.seen == []


async def test_rate_limit_per_group(wkteam, fake_wkteam):
    driver = await wkteam(reply_rate_per_minute=1)
    await driver.push(push('install 1'))
    await driver.push(push('install 2'))
    await driver.push(push('install other', group='999@chatroom'))
    await driver.settle()
    assert sorted(s['wcId'] for s in fake_wkteam.sent) == sorted([GROUP, '999@chatroom'])


@pytest.fixture
async def wkteam_api(fake_wkteam):
    api = WkteamApi(fake_wkteam.base_url, account=fake_wkteam.account, password=fake_wkteam.password,
                    max_retries=2, retry_delay=0.01)
    yield api
    await api.close()


@pytest.mark.parametrize('status, retry_after', [(429, '0.2'), (503, None)], ids=['429-retry-after', '503'])
async def test_api_retries_a_send_that_was_not_served(wkteam_api, fake_wkteam, status, retry_after):
    await wkteam_api.warm_up()
    fake_wkteam.fail_http('sendText', status, times=2, retry_after=retry_after)
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = await wkteam_api.send_text(WID, GROUP, 'pip install huixiangdou')
    assert fake_wkteam.calls['sendText'] == 3 and len(fake_wkteam.sent) == 1
    assert sent.new_msg_id == fake_wkteam.sent[0]['newMsgId']
    if retry_after:
        assert loop.time() - started >= 0.4


async def test_api_login_retries_a_dropped_connection_and_a_502(wkteam_api, fake_wkteam):
    fake_wkteam.fail_http('login', 0)
    fake_wkteam.fail_http('login', 502)
    await wkteam_api.warm_up()
    assert fake_wkteam.logins == 1 and fake_wkteam.calls['login'] == 3


async def test_api_does_not_resend_a_text_whose_answer_was_lost(wkteam_api, fake_wkteam):
    """A dropped connection or a 502 may come after wkteam posted the text: sending again could post it twice."""
    await wkteam_api.warm_up()
    for status in (0, 502):
        fake_wkteam.fail_http('sendText', status)
        with pytest.raises(WkteamApiError):
            await wkteam_api.send_text(WID, GROUP, 'once')
    assert fake_wkteam.calls['sendText'] == 2


async def test_api_does_not_retry_a_refusal(wkteam_api, fake_wkteam):
    await wkteam_api.warm_up()
    fake_wkteam.fail('sendText', code='1001', times=2)
    with pytest.raises(WkteamApiError, match='1001'):
        await wkteam_api.send_text(WID, GROUP, 'x')
    fake_wkteam.fail_http('sendText', 400)
    with pytest.raises(WkteamApiError, match='http 400'):
        await wkteam_api.send_text(WID, GROUP, 'x')
    assert fake_wkteam.calls['sendText'] == 2
