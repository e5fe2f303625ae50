"""Property-based: a callback body that is not what its Content-Encoding says (gzip that is not gzip, cut
short, noise after, deflate, br) gets a 4xx from each frontend server, never a 500 or a traceback, and a
valid message is still accepted afterwards. Loopback only, a hundred examples per server.
"""
from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huixiangdou.frontend.wechat_personal import WechatPersonalServer
from tests.frontend.callback_fuzz import LogWatch, ServerThread
from tests.frontend.conftest import ScriptedResponder, frontend_config
from tests.frontend.lark_events import message_event
from tests.frontend.test_lark_group_fuzz import lark_server
from tests.frontend.test_wechat_wkteam import push
from tests.frontend.test_wkteam_fuzz import wkteam_server
from tests.web.test_fuzz import encodings, shaped, shapes

FUZZ = settings(max_examples=100, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PERSONAL_PATH = '/huixiangdou/Zq3vX9kLm2Tr8WbYc4Hd'


def lark(tmp_path) -> tuple[ServerThread, str, bytes]:
    server, _fake = lark_server(tmp_path, encrypt_key='')
    return server, '/event', json.dumps(message_event('how to install?')).encode()


def wkteam(tmp_path) -> tuple[ServerThread, str, bytes]:
    server, _fake = wkteam_server(tmp_path, ScriptedResponder())
    return server, '/callback', json.dumps(push('how to install?')).encode()


def personal(tmp_path) -> tuple[ServerThread, str, bytes]:
    async def start():
        frontend = frontend_config(type='wechat_personal', max_body_size=64 * 1024, reply_rate_per_minute=1000)
        config = frontend.wechat_personal
        config.host, config.token, config.path, config.reply_timeout = '127.0.0.1', '', PERSONAL_PATH, 5.0
        server = WechatPersonalServer(frontend, ScriptedResponder(), port=0)
        port = await server.start()
        return port, server.stop
    body = {'content': 'how to install?', 'group_id': 'g1', 'sender': 'alice', 'message_id': 'm1'}
    return ServerThread(start), PERSONAL_PATH, json.dumps(body).encode()


@pytest.mark.parametrize('make', [lark, wkteam, personal], ids=['lark_group', 'wechat_wkteam', 'wechat_personal'])
def test_a_body_that_is_not_what_its_content_encoding_says_gets_a_4xx(tmp_path, make):
    server, path, valid = make(tmp_path)
    with LogWatch() as watch, server:
        status, text = server.post(path, b'this is not gzip', {'Content-Encoding': 'gzip'})
        assert status == 400, text
        assert 'Content-Encoding' in text or 'cannot be read' in text, text

        @FUZZ
        @given(encoding=encodings, shape=shapes, raw=st.just(valid) | st.binary(max_size=200),
               noise=st.binary(min_size=1, max_size=50))
        def fuzz(encoding: str, shape: str, raw: bytes, noise: bytes) -> None:
            status, text = server.post(path, shaped(encoding, shape, raw, noise), {'Content-Encoding': encoding})
            assert status < 500, (status, text[:300])
            assert 'Traceback' not in text
        fuzz()

        # Real gzip is still read, and the server still takes a plain message afterwards.
        assert server.post(path, gzip.compress(valid), {'Content-Encoding': 'gzip'})[0] == 200
        assert server.post(path, valid)[0] == 200
    # aiohttp answers a br body or a deflate stream failing at its very end itself (400, logged) before any
    # handler runs; everything else must be ours and quiet.
    assert [p for p in watch.problems if 'ContentEncodingError' not in p] == []
    assert server.loop_errors == []
