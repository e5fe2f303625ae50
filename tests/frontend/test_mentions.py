"""Mentions are stripped once, by each frontend, from its platform's own mention data (Lark's `mentions`
keys, WeChat's "@name" + U+2005 mark); every other "@" is the user's and reaches the worker intact."""
from __future__ import annotations

import aiohttp
import pytest

from huixiangdou.frontend.lark_event import parse_message_event
from huixiangdou.frontend.wechat_personal import WechatPersonalServer
from huixiangdou.frontend.wkteam_event import parse_callback
from tests.frontend.conftest import frontend_config
from tests.frontend.lark_events import message_event

# The user's own "@": an SSH remote, a decorator, an e-mail address.
ASKED = 'git clone git@github.com:org/repo 报错，加了 @torch.compile 也不行，要发邮件给 admin@example.com 吗？'


def test_lark_strips_only_the_mention_keys_it_was_given():
    mention = [{'key': '@_user_1', 'id': {'open_id': 'ou_bot'}, 'name': 'HuixiangDou'}]
    event = message_event(f'@_user_1 {ASKED}', mentions=mention)['event']
    message = parse_message_event(event)
    assert message.text == ASKED and message.mentioned_open_ids == ['ou_bot']


@pytest.mark.parametrize('content', [f'@茴香豆\u2005{ASKED}', f'{ASKED} @茴香豆\u2005', f'@John Smith\u2005{ASKED}'])
def test_wkteam_strips_only_what_wechat_marked_as_a_mention(content):
    body = {'messageType': '80001', 'wcId': 'wxid_bot',
            'data': {'wId': 'w1', 'fromGroup': '1@chatroom', 'fromUser': 'wxid_alice', 'content': content,
                     'msgId': 1, 'newMsgId': 2, 'atlist': ['wxid_bot']}}
    assert parse_callback(body).text == ASKED


@pytest.fixture
async def wechat(responder):
    frontend = frontend_config(type='wechat_personal', max_body_size=4096)
    frontend.wechat_personal.host, frontend.wechat_personal.token = '127.0.0.1', 'mention-token'
    server = WechatPersonalServer(frontend, responder, port=0)
    await server.start()
    yield f'http://127.0.0.1:{server.port}{frontend.wechat_personal.path}'
    await server.stop()


async def test_personal_wechat_strips_the_mention_the_worker_used_to(wechat, responder):
    # This frontend relied on the worker's strip; it now removes WeChat's marked mention itself.
    async with aiohttp.ClientSession(headers={'Authorization': 'Bearer mention-token'}) as http:
        async with http.post(wechat, json={'group_id': 'g1', 'content': f'@茴香豆\u2005{ASKED} install'}) as r:
            assert r.status == 200
    assert responder.seen[0].query == f'{ASKED} install'
