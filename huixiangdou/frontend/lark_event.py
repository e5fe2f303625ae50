"""Parses Lark schema-2.0 `im.message.receive_v1` events into a plain LarkTextMessage.

Text and rich-text (post) messages only; authentication and decryption happen before, in lark_group.py.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

MESSAGE_EVENT = 'im.message.receive_v1'
_SPACES = re.compile(r'[ \t\u2005\u00a0]+')


@dataclass
class LarkTextMessage:
    chat_id: str
    chat_type: str        # 'group' or 'p2p'
    message_id: str
    sender_open_id: str
    sender_type: str      # 'user' or 'app'
    text: str             # @mention placeholders removed
    mentioned_open_ids: list[str]
    parent_id: str = ''   # the message this one replies to
    root_id: str = ''     # the first message of its thread


def _post_text(content: dict) -> str:
    # Receive events carry post content as {"title", "content": [[element, ...], ...]}; some clients
    # wrap it in a locale key, so unwrap one level if needed.
    if 'content' not in content:
        content = next((v for v in content.values() if isinstance(v, dict)), {})
    lines = []
    for line in content.get('content') or []:
        lines.append(''.join(el.get('text', '') for el in line if isinstance(el, dict) and el.get('tag') == 'text'))
    title = content.get('title') or ''
    return '\n'.join(([title] if title else []) + lines)


def parse_message_event(event: dict) -> LarkTextMessage | None:
    """The text of a message event, or None for message types we do not answer (images, files...)."""
    message = event.get('message') or {}
    sender = event.get('sender') or {}
    message_type = message.get('message_type', '')
    try:
        content = json.loads(message.get('content') or '{}')
    except ValueError:
        return None
    if not isinstance(content, dict):
        return None
    if message_type == 'text':
        text = str(content.get('text', ''))
    elif message_type == 'post':
        text = _post_text(content)
    else:
        return None
    mentions = message.get('mentions') or []
    for mention in mentions:
        key = mention.get('key', '')
        if key:
            text = text.replace(key, ' ')
    text = _SPACES.sub(' ', text).strip()
    return LarkTextMessage(
        chat_id=str(message.get('chat_id', '')),
        chat_type=str(message.get('chat_type', '')),
        message_id=str(message.get('message_id', '')),
        sender_open_id=str((sender.get('sender_id') or {}).get('open_id', '')),
        sender_type=str(sender.get('sender_type', 'user')),
        text=text,
        mentioned_open_ids=[str((m.get('id') or {}).get('open_id', '')) for m in mentions],
        parent_id=str(message.get('parent_id') or ''),
        root_id=str(message.get('root_id') or ''),
    )
