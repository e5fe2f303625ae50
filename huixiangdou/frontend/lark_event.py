"""Parses Lark schema-2.0 `im.message.receive_v1` events into a plain LarkTextMessage.

Text, rich-text (post) and image messages; it checks the shape of every field it reads (a wrong type is
CallbackRejected(400)); authentication and decryption happen before, in lark_group.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from huixiangdou.frontend.callback_body import field_object, field_text
from huixiangdou.frontend.errors import CallbackRejected
from huixiangdou.primitive.json_input import InvalidJson, parse_json

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
    # Keys of the images in it (an image message has one, a post any number), for the message-resource API.
    image_keys: list[str] = field(default_factory=list)


def _field_list(container: dict, key: str, where: str) -> list:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise CallbackRejected(400, f'{where}.{key} must be an array, got {type(value).__name__}')
    return value


def _post_text(content: dict) -> str:
    # Receive events carry post content as {"title", "content": [[element, ...], ...]}; some clients
    # wrap it in a locale key, so unwrap one level if needed. The content is user-authored, so
    # elements of an unexpected shape are skipped rather than refused.
    if 'content' not in content:
        content = next((v for v in content.values() if isinstance(v, dict)), {})
    lines = []
    body = content.get('content')
    for line in body if isinstance(body, list) else []:
        if not isinstance(line, list):
            continue
        lines.append(''.join(el['text'] for el in line
                             if isinstance(el, dict) and el.get('tag') == 'text' and isinstance(el.get('text'), str)))
    title = content.get('title')
    title = title if isinstance(title, str) else ''
    return '\n'.join(([title] if title else []) + lines)


def content_image_keys(message_type: str, raw_content: str) -> list[str]:
    """The image keys of an image message (`{"image_key": "img_v2_…"}`) or of a post's `img` elements.

    User-authored content: anything not shaped like an image key is skipped, never refused.
    """
    try:
        content = parse_json(raw_content or '{}')
    except InvalidJson:
        return []
    if not isinstance(content, dict):
        return []
    if message_type == 'image':
        key = content.get('image_key')
        return [key] if isinstance(key, str) and key else []
    if message_type != 'post':
        return []
    if 'content' not in content:  # a locale wrapper, as in _post_text
        content = next((v for v in content.values() if isinstance(v, dict)), {})
    body = content.get('content')
    keys = []
    for line in body if isinstance(body, list) else []:
        for el in line if isinstance(line, list) else []:
            if isinstance(el, dict) and el.get('tag') == 'img' and isinstance(el.get('image_key'), str) \
                    and el['image_key'] and el['image_key'] not in keys:
                keys.append(el['image_key'])
    return keys


def content_text(message_type: str, raw_content: str) -> str | None:
    """The plain text of a text or post message's `content` JSON string; None for other types or bad JSON."""
    try:
        content = parse_json(raw_content or '{}')
    except InvalidJson:
        return None
    if not isinstance(content, dict):
        return None
    if message_type == 'text':
        text = content.get('text')
        return text if isinstance(text, str) else ''
    if message_type == 'post':
        return _post_text(content)
    return None


def parse_message_event(event: dict) -> LarkTextMessage | None:
    """The text and image keys of a message event, or None for types we do not answer (files, stickers...).

    An image message gives text ''; the frontend fetches its image (lark_group.py).
    """
    message = field_object(event, 'message', 'event')
    sender = field_object(event, 'sender', 'event')
    sender_id = field_object(sender, 'sender_id', 'event.sender')
    message_type = field_text(message, 'message_type', 'event.message')
    mentions = _field_list(message, 'mentions', 'event.message')
    mentioned_keys, mentioned_open_ids = [], []
    for number, mention in enumerate(mentions):
        if not isinstance(mention, dict):
            raise CallbackRejected(400, f'event.message.mentions[{number}] must be an object, '
                                        f'got {type(mention).__name__}')
        mentioned_keys.append(field_text(mention, 'key', f'event.message.mentions[{number}]'))
        mention_id = field_object(mention, 'id', f'event.message.mentions[{number}]')
        mentioned_open_ids.append(field_text(mention_id, 'open_id', f'event.message.mentions[{number}].id'))
    raw_content = field_text(message, 'content', 'event.message')
    text = '' if message_type == 'image' else content_text(message_type, raw_content)
    if text is None:
        return None
    for key in mentioned_keys:
        if key:
            text = text.replace(key, ' ')
    text = _SPACES.sub(' ', text).strip()
    return LarkTextMessage(
        chat_id=field_text(message, 'chat_id', 'event.message'),
        chat_type=field_text(message, 'chat_type', 'event.message'),
        message_id=field_text(message, 'message_id', 'event.message'),
        sender_open_id=field_text(sender_id, 'open_id', 'event.sender.sender_id'),
        sender_type=field_text(sender, 'sender_type', 'event.sender') or 'user',
        text=text,
        mentioned_open_ids=mentioned_open_ids,
        parent_id=field_text(message, 'parent_id', 'event.message'),
        root_id=field_text(message, 'root_id', 'event.message'),
        image_keys=content_image_keys(message_type, raw_content),
    )
