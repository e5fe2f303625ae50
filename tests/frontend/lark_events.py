"""Builds Lark callback requests the way the Lark Open Platform sends them, and a driver for a LarkGroupServer.

Used by the lark_group tests and the bench.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time

import aiohttp

from huixiangdou.config import FrontendConfig, GroupConfig, LarkGroupConfig
from huixiangdou.frontend.lark_crypto import encrypt_payload, event_signature
from huixiangdou.frontend.lark_group import LarkGroupServer
from huixiangdou.frontend.lark_open_api import LarkOpenApi

ENCRYPT_KEY = 'fake-encrypt-key-密钥'
TOKEN = 'vtoken'

_ids = itertools.count(1)


def message_event(text: str, *, chat_id: str = 'oc_group1', sender: str = 'ou_alice', message_id: str = '',
                  event_id: str = '', token: str = 'vtoken', chat_type: str = 'group', mentions=None,
                  parent_id: str = '', root_id: str = '', message_type: str = 'text', content: dict | None = None,
                  created_at: float | None = None):
    n = next(_ids)
    created_ms = str(int((time.time() if created_at is None else created_at) * 1000))
    return {
        'schema': '2.0',
        'header': {'event_id': event_id or f'ev_{n}', 'event_type': 'im.message.receive_v1',
                   'create_time': created_ms, 'token': token, 'app_id': 'cli_fake',
                   'tenant_key': 'tk'},
        'event': {
            'sender': {'sender_id': {'open_id': sender, 'union_id': 'on_x', 'user_id': 'u'},
                       'sender_type': 'user', 'tenant_key': 'tk'},
            'message': {'message_id': message_id or f'om_{n}', 'root_id': root_id, 'parent_id': parent_id,
                        'create_time': created_ms, 'chat_id': chat_id, 'chat_type': chat_type,
                        'message_type': message_type,
                        'content': json.dumps(content if content is not None else {'text': text}, ensure_ascii=False),
                        'mentions': mentions or []},
        },
    }


def signed_request(payload: dict, encrypt_key: str, *, nonce: str = 'n0nce', forge: bool = False,
                   sent_at: float | None = None, body: bytes | None = None):
    """(body bytes, headers) for an encrypted, signed delivery sent at `sent_at` (default now).

    `body` replaces the encrypted payload with bytes of the caller's choosing, still correctly signed.
    """
    if body is None:
        body = json.dumps({'encrypt': encrypt_payload(encrypt_key, payload)}).encode()
    timestamp = str(int(time.time() if sent_at is None else sent_at))
    signature = event_signature(timestamp, nonce, encrypt_key, body)
    if forge:
        signature = event_signature(timestamp, nonce, 'not-the-key', body)
    return body, {'Content-Type': 'application/json', 'X-Lark-Request-Timestamp': timestamp,
                  'X-Lark-Request-Nonce': nonce, 'X-Lark-Signature': signature}


async def start_lark_server(fake_lark, responder, *, clock=None, state_dir=None, **settings) -> 'Driver':
    """A started LarkGroupServer wired to `fake_lark`; `settings` override LarkGroupConfig or FrontendConfig keys."""
    group = LarkGroupConfig(app_id=fake_lark.app_id, app_secret=fake_lark.app_secret, encrypt_key=ENCRYPT_KEY,
                            verification_token=TOKEN, host='127.0.0.1', port=0, base_url=fake_lark.base_url,
                            groups={'oc_group1': GroupConfig(name='茴香豆用户群', introduction='安装与使用')})
    frontend = FrontendConfig(type='lark_group', max_body_size=4096, lark_group=group)
    for key, value in settings.items():
        target = group if hasattr(group, key) else frontend
        setattr(target, key, value)
    api = LarkOpenApi(group.app_id, group.app_secret, group.base_url, retry_delay=0,
                      **({'clock': clock} if clock else {}))
    server = LarkGroupServer(frontend, responder, api=api, state_dir=state_dir)
    await server.warm_up()
    await server.start()
    return Driver(server)


class Driver:
    def __init__(self, server: LarkGroupServer):
        self.server = server
        self.url = f'http://127.0.0.1:{server.port}{server.config.path}'

    async def post_raw(self, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
        async with aiohttp.ClientSession() as http:
            async with http.post(self.url, data=body, headers=headers or {'Content-Type': 'application/json'}) as r:
                return r.status, await r.json(content_type=None)

    async def send(self, payload: dict, *, forge: bool = False, sent_at: float | None = None) -> tuple[int, dict]:
        return await self.post_raw(*signed_request(payload, ENCRYPT_KEY, forge=forge, sent_at=sent_at))

    async def settle(self):
        # Tasks first (a reply's quote is fetched before it is queued), then the queue, then what it spawned.
        # A reply task's error (Lark refused it) is the dispatcher's to log, as before replies had tasks.
        if self.server._tasks:
            await asyncio.gather(*list(self.server._tasks), return_exceptions=True)
        await self.server.dispatcher.wait_idle()
        if self.server._tasks:
            await asyncio.gather(*list(self.server._tasks), return_exceptions=True)
