"""LarkGroupServer against the fake Lark Open Platform: verification, decryption, replies, recall."""
from __future__ import annotations

import asyncio
import json

import pytest
from loguru import logger

from huixiangdou.frontend.lark_crypto import encrypt_payload
from tests.frontend.conftest import REFERENCE, ScriptedResponder
from tests.frontend.lark_events import ENCRYPT_KEY, TOKEN, Driver, message_event, start_lark_server


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
async def lark(fake_lark, responder):
    """Starts LarkGroupServers wired to the fake (settings override config keys); stops them after the test."""
    servers = []

    async def start(responder=responder, **settings) -> Driver:
        driver = await start_lark_server(fake_lark, responder, **settings)
        servers.append(driver.server)
        return driver

    yield start
    for server in servers:
        await server.stop()


async def test_url_verification_challenge_encrypted_and_unsigned(lark):
    driver = await lark()
    payload = {'challenge': 'ajls384kdjx98XX', 'token': TOKEN, 'type': 'url_verification'}
    body = json.dumps({'encrypt': encrypt_payload(ENCRYPT_KEY, payload)}).encode()
    assert await driver.post_raw(body) == (200, {'challenge': 'ajls384kdjx98XX'})


async def test_url_verification_plain_when_no_encrypt_key(lark):
    driver = await lark(encrypt_key='')
    body = json.dumps({'challenge': 'c-1', 'token': TOKEN, 'type': 'url_verification'}).encode()
    assert await driver.post_raw(body) == (200, {'challenge': 'c-1'})
    wrong = json.dumps({'challenge': 'c-1', 'token': 'guess', 'type': 'url_verification'}).encode()
    assert (await driver.post_raw(wrong))[0] == 401


async def test_on_topic_question_is_answered_in_thread_with_references(lark, fake_lark, responder):
    driver = await lark()
    status, _ = await driver.send(message_event('茴香豆怎么安装？', message_id='om_q1'))
    assert status == 200
    await fake_lark.wait_until(lambda: fake_lark.replies)
    reply = fake_lark.replies[0]
    assert reply.message_id == 'om_q1'
    assert reply.body['reply_in_thread'] is True
    assert 'Answer to: 茴香豆怎么安装？' in reply.text
    assert REFERENCE in reply.text
    assert responder.seen[0].group_id == 'oc_group1'
    assert responder.seen[0].group_name == '茴香豆用户群'
    assert responder.seen[0].group_introduction == '安装与使用'


async def test_off_topic_message_gets_no_reply(lark, fake_lark, responder):
    driver = await lark()
    assert (await driver.send(message_event('今天中午吃什么')))[0] == 200
    await driver.settle()
    assert responder.queries == ['今天中午吃什么']
    assert fake_lark.replies == []


async def test_forged_signature_is_rejected_and_never_reaches_the_worker(lark, fake_lark, responder):
    driver = await lark()
    status, body = await driver.send(message_event('how to install?'), forge=True)
    assert status == 401
    assert 'Signature' in body['error']
    await driver.settle()
    assert responder.seen == []


async def test_plain_event_is_rejected_when_an_encrypt_key_is_set(lark, responder):
    driver = await lark()
    status, _ = await driver.post_raw(json.dumps(message_event('how to install?')).encode())
    assert status == 401
    assert responder.seen == []


async def test_wrong_verification_token_is_rejected(lark, responder):
    driver = await lark()
    status, _ = await driver.send(message_event('how to install?', token='stolen'))
    assert status == 401
    await driver.settle()
    assert responder.seen == []


async def test_duplicate_delivery_is_answered_once(lark, fake_lark, responder):
    driver = await lark()
    event = message_event('install question', event_id='ev_dup', message_id='om_dup')
    again_other_event_id = message_event('install question', event_id='ev_dup_2', message_id='om_dup')
    for payload in (event, event, again_other_event_id):
        assert (await driver.send(payload))[0] == 200
    await driver.settle()
    assert len(responder.seen) == 1
    assert len(fake_lark.replies) == 1


async def test_malformed_and_oversized_bodies(lark):
    driver = await lark()
    assert (await driver.post_raw(b'{not json'))[0] == 400
    assert (await driver.post_raw(b'[1, 2]'))[0] == 400
    assert (await driver.post_raw(b'{"pad": "' + b'x' * 5000 + b'"}'))[0] == 413


async def test_unknown_event_type_is_acknowledged_and_ignored(lark, responder):
    driver = await lark()
    payload = {'schema': '2.0', 'header': {'event_id': 'ev_x', 'event_type': 'im.chat.member.bot.added_v1',
                                           'token': TOKEN}, 'event': {'chat_id': 'oc_group1'}}
    assert await driver.send(payload) == (200, {})
    await driver.settle()
    assert responder.seen == []


async def test_private_chats_and_images_are_ignored(lark, responder):
    driver = await lark()
    await driver.send(message_event('install?', chat_type='p2p'))
    await driver.send(message_event('', message_type='image', content={'image_key': 'img_x'}))
    await driver.settle()
    assert responder.seen == []


async def test_rich_text_post_and_mentions_become_plain_text(lark, responder):
    driver = await lark()
    content = {'title': '', 'content': [[{'tag': 'at', 'user_id': '@_user_1'},
                                         {'tag': 'text', 'text': ' 如何 install？'}]]}
    await driver.send(message_event('', message_type='post', content=content))
    mention = [{'key': '@_user_1', 'id': {'open_id': 'ou_bot'}, 'name': 'HuixiangDou'}]
    await driver.send(message_event('@_user_1 install 问题', mentions=mention))
    await driver.settle()
    assert responder.queries == ['如何 install？', 'install 问题']


async def test_only_at_bot_ignores_messages_without_a_mention(lark, fake_lark, responder):
    driver = await lark(only_at_bot=1)
    await driver.send(message_event('install without mention'))
    other = [{'key': '@_user_1', 'id': {'open_id': 'ou_someone'}, 'name': 'Someone'}]
    await driver.send(message_event('@_user_1 install for someone else', mentions=other))
    bot = [{'key': '@_user_1', 'id': {'open_id': fake_lark.bot_open_id}, 'name': 'HuixiangDou'}]
    await driver.send(message_event('@_user_1 install for the bot', mentions=bot))
    await driver.settle()
    assert responder.queries == ['install for the bot']


async def test_asker_can_recall_the_answer_with_a_revoke_word(lark, fake_lark):
    driver = await lark()
    await driver.send(message_event('install?', message_id='om_q', sender='ou_alice'))
    await fake_lark.wait_until(lambda: fake_lark.replies)
    answer_id = fake_lark.replies[0].new_message_id
    # Someone else cannot recall it.
    await driver.send(message_event('撤回', sender='ou_mallory', parent_id=answer_id, root_id='om_q'))
    await driver.settle()
    assert fake_lark.recalls == []
    await driver.send(message_event('撤回', sender='ou_alice', parent_id=answer_id, root_id='om_q'))
    await driver.settle()
    assert fake_lark.recalls == [answer_id]


async def test_a_reply_carries_the_message_it_answers_as_its_quote(lark, fake_lark, responder):
    driver = await lark()
    quoted = '报错：ConnectionError: http://127.0.0.1:8888/inference 拒绝连接'
    fake_lark.messages['om_error'] = ('text', json.dumps({'text': quoted}, ensure_ascii=False))
    await driver.send(message_event('这个怎么解决？install', parent_id='om_error', root_id='om_error'))
    await driver.settle()
    assert responder.queries == ['这个怎么解决？install'] and responder.seen[0].quote == quoted
    # The quoted message cannot be read (deleted, or the app lacks the scope): answered without it.
    await driver.send(message_event('还有 install 问题', parent_id='om_gone', root_id='om_gone'))
    await driver.settle()
    assert responder.queries[-1] == '还有 install 问题' and responder.seen[-1].quote == ''


async def test_token_is_cached_then_refreshed_when_it_expires(lark, fake_lark):
    clock = Clock()
    fake_lark.token_expire = 7200
    driver = await lark(clock=clock)
    await driver.send(message_event('install 1'))
    await driver.send(message_event('install 2'))
    await fake_lark.wait_until(lambda: len(fake_lark.replies) == 2)
    assert fake_lark.tokens_issued == ['t-fake-tenant-token-1']
    clock.now += 7200
    await driver.send(message_event('install 3'))
    await fake_lark.wait_until(lambda: len(fake_lark.replies) == 3)
    assert fake_lark.tokens_issued == ['t-fake-tenant-token-1', 't-fake-tenant-token-2']
    assert fake_lark.replies[2].token == 't-fake-tenant-token-2'


async def test_token_rejected_early_by_the_server_is_refreshed_and_the_reply_retried(lark, fake_lark):
    driver = await lark()
    await driver.send(message_event('install 1'))
    await fake_lark.wait_until(lambda: len(fake_lark.replies) == 1)
    fake_lark.invalidate_tokens()
    await driver.send(message_event('install 2'))
    await fake_lark.wait_until(lambda: len(fake_lark.replies) == 2)
    assert fake_lark.replies[1].token == 't-fake-tenant-token-2'


async def test_server_errors_are_retried_and_rate_limits_respected(lark, fake_lark):
    driver = await lark()
    fake_lark.fail('reply', status=500, times=1)
    fake_lark.fail('reply', status=429, times=1)
    await driver.send(message_event('install please', message_id='om_retry'))
    await fake_lark.wait_until(lambda: fake_lark.replies)
    assert fake_lark.replies[0].message_id == 'om_retry'


async def test_per_group_reply_rate_limit(lark, fake_lark, responder):
    driver = await lark(reply_rate_per_minute=2)
    for i in range(4):
        await driver.send(message_event(f'install {i}'))
    await driver.send(message_event('install elsewhere', chat_id='oc_group2'))
    await driver.settle()
    replied_to_group1 = [r for r in fake_lark.replies if 'elsewhere' not in r.text]
    assert len(replied_to_group1) == 2
    assert any('elsewhere' in r.text for r in fake_lark.replies)


async def test_callback_is_acknowledged_while_the_worker_is_busy(lark, fake_lark):
    gate = asyncio.Event()
    busy = ScriptedResponder(gate=gate)
    driver = await lark(responder=busy)
    for i in range(3):
        status, _ = await driver.send(message_event(f'install {i}'))
        assert status == 200
    assert fake_lark.replies == []  # acknowledged before any answer existed
    gate.set()
    await fake_lark.wait_until(lambda: len(fake_lark.replies) == 3)


async def test_secrets_never_reach_the_log(lark, fake_lark):
    lines = []
    sink = logger.add(lines.append, level='DEBUG')
    try:
        driver = await lark()
        await driver.send(message_event('install?'))
        await driver.send(message_event('install?'), forge=True)
        fake_lark.invalidate_tokens()
        await driver.send(message_event('install again?'))
        await fake_lark.wait_until(lambda: len(fake_lark.replies) == 2)
    finally:
        logger.remove(sink)
    text = ''.join(lines)
    assert 'lark_group' in text
    for secret in (ENCRYPT_KEY, fake_lark.app_secret, TOKEN, *fake_lark.tokens_issued):
        assert secret not in text
