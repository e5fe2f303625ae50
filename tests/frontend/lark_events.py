"""Builds Lark callback requests the way the Lark Open Platform sends them (for tests and the bench)."""
from __future__ import annotations

import itertools
import json
import time

from huixiangdou.frontend.lark_crypto import encrypt_payload, event_signature

_ids = itertools.count(1)


def message_event(text: str, *, chat_id: str = 'oc_group1', sender: str = 'ou_alice', message_id: str = '',
                  event_id: str = '', token: str = 'vtoken', chat_type: str = 'group', mentions=None,
                  parent_id: str = '', root_id: str = '', message_type: str = 'text', content: dict | None = None):
    n = next(_ids)
    return {
        'schema': '2.0',
        'header': {'event_id': event_id or f'ev_{n}', 'event_type': 'im.message.receive_v1',
                   'create_time': str(int(time.time() * 1000)), 'token': token, 'app_id': 'cli_fake',
                   'tenant_key': 'tk'},
        'event': {
            'sender': {'sender_id': {'open_id': sender, 'union_id': 'on_x', 'user_id': 'u'},
                       'sender_type': 'user', 'tenant_key': 'tk'},
            'message': {'message_id': message_id or f'om_{n}', 'root_id': root_id, 'parent_id': parent_id,
                        'create_time': str(int(time.time() * 1000)), 'chat_id': chat_id, 'chat_type': chat_type,
                        'message_type': message_type,
                        'content': json.dumps(content if content is not None else {'text': text}, ensure_ascii=False),
                        'mentions': mentions or []},
        },
    }


def signed_request(payload: dict, encrypt_key: str, *, nonce: str = 'n0nce', forge: bool = False):
    """(body bytes, headers) for an encrypted, signed delivery."""
    body = json.dumps({'encrypt': encrypt_payload(encrypt_key, payload)}).encode()
    timestamp = str(int(time.time()))
    signature = event_signature(timestamp, nonce, encrypt_key, body)
    if forge:
        signature = event_signature(timestamp, nonce, 'not-the-key', body)
    return body, {'Content-Type': 'application/json', 'X-Lark-Request-Timestamp': timestamp,
                  'X-Lark-Request-Nonce': nonce, 'X-Lark-Signature': signature}
