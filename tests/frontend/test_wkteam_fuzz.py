"""Property-based: no body, however hostile, gets a 5xx or a traceback from the wkteam callback, and a
valid push is still answered afterwards. Bounded (a few hundred examples) and loopback only."""
from __future__ import annotations

import json
from collections import Counter

from hypothesis import HealthCheck, given, settings

from huixiangdou.frontend.wechat_wkteam import WechatWkteamServer
from huixiangdou.frontend.wkteam_api import WkteamApi
from tests.conftest import free_port
from tests.fakes.fake_wkteam import FakeWkteam
from tests.frontend.callback_fuzz import LogWatch, ServerThread, hostile_bodies, mutated
from tests.frontend.conftest import ScriptedResponder, frontend_config
from tests.frontend.test_wechat_wkteam import WID, push, quote

# derandomize: the counts asserted below must not depend on the run (CI stays reproducible).
FUZZ = settings(max_examples=500, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PUSH_PATHS = ['messageType', 'wcId', 'data', 'data.wId', 'data.fromGroup', 'data.fromUser', 'data.content',
              'data.msgId', 'data.newMsgId', 'data.atlist', 'data.self', 'data.title']
KEYWORD = 'zzfuzzvalid'
pushes = mutated(lambda: push('fuzz question'), PUSH_PATHS) | mutated(
    lambda: quote('fuzz &#xd800; <b>', 123, 'quoted \ud800'), PUSH_PATHS)


def wkteam_server(tmp_path, responder) -> tuple[ServerThread, FakeWkteam]:
    """A wkteam callback server (and the fake wkteam API it sends to) on their own loop thread."""
    fake = FakeWkteam()

    async def start():
        await fake.start(free_port())
        frontend = frontend_config(type='wechat_wkteam', max_body_size=4096)
        config = frontend.wechat_wkteam
        config.base_url, config.wid, config.callback_host = fake.base_url, WID, '127.0.0.1'
        server = WechatWkteamServer(frontend, responder, history_path=tmp_path / 'wkteam.sqlite',
                                    api=WkteamApi(fake.base_url, api_token=fake.token), port=free_port())
        await server.warm_up()
        await server.start()

        async def stop():
            await server.stop()
            await fake.stop()
        return server.port, stop
    return ServerThread(start), fake


def test_wkteam_callback_survives_hostile_bodies(tmp_path):
    server, fake = wkteam_server(tmp_path, ScriptedResponder(keywords=(KEYWORD,)))
    statuses: Counter[int] = Counter()
    with LogWatch() as log, server:
        @FUZZ
        @given(hostile_bodies(pushes))
        def post(body: bytes):
            status, text = server.post('/callback', body)
            assert status < 500, (status, text, body[:200])
            statuses[status] += 1

        post()
        # The bodies got past parsing to the checks behind it, and some were accepted.
        assert statuses[200] >= 5 and statuses[400] >= 20, statuses
        valid = push(f'{KEYWORD} install?', group='final@chatroom')
        status, text = server.post('/callback', json.dumps(valid).encode())
        assert status == 200, text
        server.run(fake.wait_until(lambda: any(KEYWORD in sent['content'] for sent in fake.sent)))
    assert log.problems == []
    assert server.loop_errors == []
