"""Property-based: no body, however hostile, gets a 5xx or a traceback from the Lark callback, and a valid
event is still answered afterwards. Bounded (a few hundred examples) and loopback only."""
from __future__ import annotations

import json
from collections import Counter
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huixiangdou.frontend.lark_crypto import encrypt_payload, event_signature
from tests.conftest import free_port
from tests.fakes.fake_lark import FakeLark
from tests.frontend.callback_fuzz import LogWatch, ServerThread, hostile_bodies, mutated
from tests.frontend.conftest import ScriptedResponder
from tests.frontend.lark_events import ENCRYPT_KEY, message_event, signed_request, start_lark_server

# derandomize: the counts asserted below must not depend on the run (CI stays reproducible).
FUZZ = settings(max_examples=400, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
EVENT_PATHS = ['header', 'header.event_id', 'header.event_type', 'header.create_time', 'header.token', 'event',
               'event.message', 'event.sender', 'event.sender.sender_id', 'event.sender.sender_type',
               'event.message.mentions', 'event.message.content', 'event.message.message_type',
               'event.message.message_id', 'event.message.chat_id', 'event.message.chat_type',
               'event.message.parent_id', 'type', 'challenge', 'token', 'schema', 'uuid']
KEYWORD = 'zzfuzzvalid'   # never generated, so only the final valid question is answered
events = mutated(lambda: message_event('fuzz question'), EVENT_PATHS)


def lark_server(tmp_path, **settings) -> tuple[ServerThread, FakeLark]:
    fake = FakeLark()

    async def start():
        await fake.start(free_port())
        driver = await start_lark_server(fake, ScriptedResponder(keywords=(KEYWORD,)), state_dir=tmp_path,
                                         **settings)

        async def stop():
            await driver.server.stop()
            await fake.stop()
        return driver.server.port, stop
    return ServerThread(start), fake


def _answers_a_valid_event_afterwards(server: ServerThread, fake: FakeLark, body: bytes, headers: dict) -> None:
    status, text = server.post('/event', body, headers)
    assert status == 200, text
    server.run(fake.wait_until(lambda: any(KEYWORD in r.text for r in fake.replies)))


def test_token_mode_callback_survives_hostile_bodies(tmp_path):
    server, fake = lark_server(tmp_path, encrypt_key='')
    statuses: Counter[int] = Counter()
    with LogWatch() as log, server:
        @FUZZ
        @given(hostile_bodies(events))
        def post(body: bytes):
            status, text = server.post('/event', body)
            assert status < 500, (status, text, body[:200])
            statuses[status] += 1

        post()
        # The bodies got past parsing to the checks behind it, and some were accepted.
        assert statuses[200] >= 5 and statuses[400] >= 20, statuses
        valid = message_event(f'{KEYWORD} install?', chat_id='oc_final')
        _answers_a_valid_event_afterwards(server, fake, json.dumps(valid).encode(), {})
    assert log.problems == []
    assert server.loop_errors == []


def test_encrypted_callback_survives_hostile_bodies_even_when_signed(tmp_path):
    server, fake = lark_server(tmp_path)

    def encrypted(event: dict) -> bytes:
        return json.dumps({'encrypt': encrypt_payload(ENCRYPT_KEY, event)}).encode()

    bodies = st.one_of(hostile_bodies(events), events.map(encrypted))
    statuses: Counter[int] = Counter()
    with LogWatch() as log, server:
        @FUZZ
        @given(bodies, st.sampled_from(['signed', 'signed', 'signed', 'unsigned', 'forged', 'stale']))
        def post(body: bytes, signing: str):
            headers = {}
            if signing != 'unsigned':
                timestamp = str(int(time.time() - (3 * 3600 if signing == 'stale' else 0)))
                key = 'not-the-key' if signing == 'forged' else ENCRYPT_KEY
                headers = {'X-Lark-Request-Timestamp': timestamp, 'X-Lark-Request-Nonce': 'n',
                           'X-Lark-Signature': event_signature(timestamp, 'n', key, body)}
            status, text = server.post('/event', body, headers)
            assert status < 500, (status, text, body[:200])
            statuses[status] += 1
            if signing in ('forged', 'stale'):
                assert status in (400, 401, 413), (status, text)

        post()
        # The bodies got past parsing to the checks behind it, and some were accepted.
        assert statuses[200] >= 5 and statuses[400] >= 20, statuses
        valid = message_event(f'{KEYWORD} install?', chat_id='oc_final')
        _answers_a_valid_event_afterwards(server, fake, *signed_request(valid, ENCRYPT_KEY))
    assert log.problems == []
    assert server.loop_errors == []
