"""WechatWkteamServer against hostile input: missing wId, wrongly typed fields, deep nesting, surrogates, restarts."""
from __future__ import annotations

import json

import pytest

from tests.frontend.test_wechat_wkteam import push, quote, wkteam  # noqa: F401 (fixture)


async def test_push_without_wid_is_refused(wkteam, responder):  # noqa: F811
    driver = await wkteam()
    body = push('install?')
    del body['data']['wId']
    assert await driver.push(body) == 400
    body = push('install?')
    body['data']['wId'] = ''
    assert await driver.push(body) == 400
    await driver.settle()
    assert responder.seen == []


async def test_push_without_wid_is_refused_even_when_no_wid_is_configured(wkteam, responder):  # noqa: F811
    driver = await wkteam(wid='')
    body = push('install?')
    del body['data']['wId']
    assert await driver.push(body) == 400
    assert await driver.push(push('install with wId?')) == 200
    await driver.settle()
    assert responder.queries == ['install with wId?']


async def test_numeric_wid_is_compared_as_text(wkteam):  # noqa: F811
    driver = await wkteam()
    body = push('install?')
    body['data']['wId'] = 12345
    assert await driver.push(body) == 401


@pytest.mark.parametrize('field, value', [
    ('atlist', 5),
    ('atlist', [5]),
    ('atlist', 'wxid_bot'),
    ('content', {'text': 'install'}),
    ('fromGroup', ['a@chatroom']),
    ('fromUser', 1.5),
    ('msgId', {'id': 1}),
    ('newMsgId', True),
    ('title', ['install']),
])
async def test_wrongly_typed_fields_give_400_naming_the_field(wkteam, responder, field, value):  # noqa: F811
    driver = await wkteam()
    body = push('install?')
    body['data'][field] = value
    async with _session() as http:
        async with http.post(driver.url, json=body) as resp:
            assert resp.status == 400
            assert (await resp.json())['error'].startswith(f'data.{field} must be')
    await driver.settle()
    assert responder.seen == []


@pytest.mark.parametrize('body', [
    {'messageType': '80001', 'data': 'x'},
    {'messageType': 80001, 'data': [1]},
    {'messageType': '80001', 'wcId': ['x'], 'data': push('install?')['data']},
])
async def test_wrongly_shaped_group_pushes_give_400(wkteam, responder, body):  # noqa: F811
    driver = await wkteam()
    assert await driver.push(body) == 400


async def test_unknown_or_odd_message_types_are_acknowledged(wkteam, responder):  # noqa: F811
    driver = await wkteam()
    for message_type in (['80001'], {'a': 1}, None, True, '30000'):
        assert await driver.push({'messageType': message_type, 'data': 5}) == 200
    assert responder.seen == []


async def test_deep_nesting_gives_400(wkteam):  # noqa: F811
    driver = await wkteam(max_body_size=8192)
    assert await driver.push(raw=b'[' * 1000 + b']' * 1000) == 400
    assert await driver.push(raw=b'{"data":' * 900 + b'1' + b'}' * 900) == 400


async def test_surrogates_reach_the_worker_and_the_history_as_replacement_characters(wkteam, responder):  # noqa: F811
    driver = await wkteam()
    assert await driver.push(raw=json.dumps(push('install \ud800?')).encode()) == 200
    await driver.settle()
    xml = quote('install &#xd800; again', 1, 'x').get('data')['content']
    body = push(xml, message_type='80014')
    assert await driver.push(body) == 200
    assert await driver.push(push('install \udfff more?')) == 200
    await driver.settle()
    # The quote's XML holds an invalid character reference: no question, no crash.
    assert responder.queries == ['install \ufffd?', 'install \ufffd more?']
    assert responder.seen[-1].history == [('install \ufffd?', 'Answer to: install \ufffd?')]


async def test_redelivery_after_a_restart_is_answered_once(wkteam, fake_wkteam, responder):  # noqa: F811
    body = push('install after restart?')
    first = await wkteam()
    assert await first.push(body) == 200
    await fake_wkteam.wait_until(lambda: fake_wkteam.sent)
    await first.server.stop()
    second = await wkteam()
    assert await second.push(body) == 200
    await second.settle()
    assert len(responder.seen) == 1
    assert len(fake_wkteam.sent) == 1


def _session():
    import aiohttp
    return aiohttp.ClientSession()
