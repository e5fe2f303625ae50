"""LarkGroupServer against hostile or stale input: replays, restarts, deep nesting, wrongly typed fields."""
from __future__ import annotations

import json
import time

import pytest

from huixiangdou.frontend.lark_crypto import encrypt_text, event_signature
from huixiangdou.frontend.lark_group import LarkGroupServer
from huixiangdou.frontend.lark_open_api import LarkOpenApi
from tests.frontend.lark_events import ENCRYPT_KEY, TOKEN, Driver, message_event, signed_request, start_lark_server

DEEP = b'{"a":' * 1000 + b'1' + b'}' * 1000   # about 6 KB
DEEP_LIST = b'[' * 1000 + b']' * 1000        # 2 KB, depth 1,000


@pytest.fixture
async def lark(fake_lark, responder):
    servers = []

    async def start(responder=responder, **settings) -> Driver:
        driver = await start_lark_server(fake_lark, responder, max_body_size=8192, **settings)
        servers.append(driver.server)
        return driver

    yield start
    for server in servers:
        await server.stop()


# ---- replays --------------------------------------------------------------------------------------

@pytest.mark.parametrize('sent_ago', [2 * 3600, 30 * 24 * 3600, -3600])
async def test_signed_event_outside_the_window_is_refused(lark, responder, sent_ago):
    driver = await lark()
    status, body = await driver.send(message_event('install?'), sent_at=time.time() - sent_ago)
    assert status == 400
    assert 'X-Lark-Request-Timestamp' in body['error']
    await driver.settle()
    assert responder.seen == []


async def test_signed_event_inside_the_window_is_accepted(lark, responder):
    driver = await lark(max_event_age=600)
    assert (await driver.send(message_event('install?'), sent_at=time.time() - 500))[0] == 200
    await driver.settle()
    assert responder.queries == ['install?']


async def test_timestamp_that_is_not_a_number_is_refused(lark, responder):
    driver = await lark()
    body, headers = signed_request(message_event('install?'), ENCRYPT_KEY)
    headers['X-Lark-Request-Timestamp'] = 'yesterday'
    headers['X-Lark-Signature'] = event_signature('yesterday', headers['X-Lark-Request-Nonce'], ENCRYPT_KEY, body)
    assert (await driver.post_raw(body, headers))[0] == 400
    assert responder.seen == []


async def test_token_mode_refuses_an_event_created_long_ago(lark, responder):
    driver = await lark(encrypt_key='')
    old = message_event('install?', created_at=time.time() - 2 * 3600)
    status, body = await driver.post_raw(json.dumps(old).encode())
    assert status == 400
    assert 'header.create_time' in body['error']
    fresh = message_event('install now?')
    assert (await driver.post_raw(json.dumps(fresh).encode()))[0] == 200
    await driver.settle()
    assert responder.queries == ['install now?']


async def test_redelivery_after_a_restart_is_not_answered_twice(lark, fake_lark, responder, tmp_path):
    event = message_event('install after restart?', event_id='ev_restart', message_id='om_restart')
    first = await lark(state_dir=tmp_path / 'workdir')
    assert (await first.send(event))[0] == 200
    await fake_lark.wait_until(lambda: fake_lark.replies)
    await first.server.stop()

    second = await lark(state_dir=tmp_path / 'workdir')
    assert await second.send(event) == (200, {})
    # Lark may also redeliver the same message under a new event id.
    same_message = message_event('install after restart?', event_id='ev_restart_2', message_id='om_restart')
    assert await second.send(same_message) == (200, {})
    await second.settle()
    assert len(responder.seen) == 1
    assert len(fake_lark.replies) == 1
    assert (tmp_path / 'workdir' / 'lark_group_inbox.sqlite').exists()


async def test_server_started_without_warm_up_still_deduplicates(fake_lark, responder, tmp_path):
    driver = await start_lark_server(fake_lark, responder)
    config = driver.server.frontend
    await driver.server.stop()
    group = config.lark_group
    server = LarkGroupServer(config, responder, api=LarkOpenApi(group.app_id, group.app_secret, group.base_url),
                             state_dir=tmp_path)
    await server.start()   # as bench/bench_lark_callback.py does: no warm_up
    try:
        unwarmed = Driver(server)
        event = message_event('install?')
        assert await unwarmed.send(event) == (200, {})
        assert await unwarmed.send(event) == (200, {})
        await unwarmed.settle()
        assert responder.queries == ['install?']
    finally:
        await server.stop()


# ---- bodies that must not reach the parser, or must not crash it ------------------------------------

async def test_signature_is_checked_before_the_body_is_parsed(lark):
    driver = await lark()
    _, headers = signed_request(message_event('x'), ENCRYPT_KEY, forge=True)
    for body in (b'{not json', DEEP_LIST):
        status, answer = await driver.post_raw(body, headers)
        assert status == 401, body[:20]
        assert 'Signature' in answer['error']


async def test_deep_nesting_gives_400_not_500(lark):
    encrypted = await lark()
    assert (await encrypted.post_raw(DEEP_LIST))[0] == 400         # unsigned: parsed, refused
    body, headers = signed_request({}, ENCRYPT_KEY, body=DEEP)     # correctly signed, still hostile
    assert (await encrypted.post_raw(body, headers))[0] == 400
    inner = b'{"schema": "2.0", "x": ' + DEEP_LIST + b'}'
    token_only = await lark(encrypt_key='')
    assert (await token_only.post_raw(DEEP))[0] == 400
    assert (await token_only.post_raw(inner))[0] == 400


async def test_decrypted_event_with_deep_nesting_or_surrogates(lark, responder):
    driver = await lark()
    deep = '{"schema": "2.0", "x": ' + '[' * 1000 + ']' * 1000 + '}'
    body = json.dumps({'encrypt': encrypt_text(ENCRYPT_KEY, deep)}).encode()
    body, headers = signed_request({}, ENCRYPT_KEY, body=body)
    assert (await driver.post_raw(body, headers))[0] == 401
    event = message_event('install \ud800 now')
    assert (await driver.send(event))[0] == 200
    message_content = message_event('', content={'text': 'install \udfff?'})
    assert (await driver.send(message_content))[0] == 200
    await driver.settle()
    assert responder.queries == ['install \ufffd now', 'install \ufffd?']


async def test_message_content_nested_too_deep_is_ignored(lark, responder):
    driver = await lark()
    event = message_event('x')
    event['event']['message']['content'] = '[' * 1000 + ']' * 1000
    assert (await driver.send(event))[0] == 200
    await driver.settle()
    assert responder.seen == []


# ---- wrongly typed fields ---------------------------------------------------------------------------

def _set(event: dict, path: str, value) -> dict:
    *parents, last = path.split('.')
    target = event
    for key in parents:
        target = target[key]
    target[last] = value
    return event


@pytest.mark.parametrize('path, value, field', [
    ('header', 'x', 'body.header'),
    ('event', 5, 'body.event'),
    ('event', [], 'body.event'),
    ('event.message', 'hello', 'event.message'),
    ('event.sender', 1, 'event.sender'),
    ('event.sender.sender_id', [], 'event.sender.sender_id'),
    ('event.message.mentions', 5, 'event.message.mentions'),
    ('event.message.mentions', {'key': '@_user_1'}, 'event.message.mentions'),
    ('event.message.mentions', [5], 'event.message.mentions[0]'),
    ('event.message.mentions', [{'key': '@_user_1', 'id': 'ou_x'}], 'event.message.mentions[0].id'),
    ('event.message.content', {'text': 'install'}, 'event.message.content'),
    ('event.message.message_id', ['om'], 'event.message.message_id'),
    ('header.event_id', {'id': 1}, 'header.event_id'),
    ('header.event_type', 7.5, 'header.event_type'),  # ids may be integers, never fractions
])
async def test_wrongly_typed_fields_give_400_naming_the_field(lark, responder, path, value, field):
    token_only = await lark(encrypt_key='')
    event = _set(message_event('install?'), path, value)
    status, body = await token_only.post_raw(json.dumps(event).encode())
    encrypted = await lark()
    assert await encrypted.send(_set(message_event('install?'), path, value)) == (status, body)
    await token_only.settle()
    await encrypted.settle()
    assert responder.seen == []
    if field:
        assert status == 400
        assert body['error'].startswith(field + ' must be')
    else:
        assert status == 200


@pytest.mark.parametrize('body', [
    {'header': 'x'},
    {'header': ['token', TOKEN]},
    {'token': 5},
    {'encrypt': 5},
    {'encrypt': None},
    {'type': 'url_verification', 'token': TOKEN, 'challenge': {'a': 1}},
])
async def test_token_mode_odd_bodies_are_refused_not_crashed(lark, body):
    driver = await lark(encrypt_key='')
    status, _ = await driver.post_raw(json.dumps(body).encode())
    assert 400 <= status < 500
