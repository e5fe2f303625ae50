"""Parses wkteam message pushes (group text 80001, group quote 80014) into WkteamGroupMessage.

Shapes follow docs/frontend_wechat_wkteam.md; other message types (images, private chats) give None.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

GROUP_TEXT = '80001'
GROUP_QUOTE = '80014'
# WeChat puts a four-per-em space (U+2005) after each "@name"; a plain space ends a typed mention.
_MENTION = re.compile(r'@[^@\u2005\s]{1,40}[\u2005 ]')


@dataclass
class WkteamGroupMessage:
    wid: str
    bot_id: str             # wcId of the logged-in account
    group_id: str           # "…@chatroom"
    sender_id: str
    text: str               # mentions removed; for a quote, the newly typed text
    msg_id: str
    new_msg_id: str
    at_bot: bool
    quoted_text: str = ''
    quoted_new_msg_id: str = ''  # svrid of the quoted message
    quoted_sender: str = ''


def strip_mentions(text: str) -> str:
    return _MENTION.sub(' ', text + ' ').strip()


def _parse_quote(xml_text: str) -> tuple[str, str, str, str]:
    """(typed text, quoted text, quoted newMsgId, quoted sender) from an 80014 appmsg XML."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return '', '', '', ''
    appmsg = root.find('appmsg') if root.tag != 'appmsg' else root
    if appmsg is None:
        return '', '', '', ''
    refer = appmsg.find('refermsg')
    title = appmsg.findtext('title', '')
    if refer is None:
        return title, '', '', ''
    return title, refer.findtext('content', ''), refer.findtext('svrid', ''), refer.findtext('chatusr', '')


def parse_callback(body: dict) -> WkteamGroupMessage | None:
    message_type = str(body.get('messageType', ''))
    data = body.get('data')
    if message_type not in (GROUP_TEXT, GROUP_QUOTE) or not isinstance(data, dict):
        return None
    group_id = str(data.get('fromGroup') or '')
    if not group_id or data.get('self'):
        return None
    bot_id = str(body.get('wcId', ''))
    atlist = data.get('atlist') or []
    message = WkteamGroupMessage(
        wid=str(data.get('wId', '')), bot_id=bot_id, group_id=group_id, sender_id=str(data.get('fromUser', '')),
        text='', msg_id=str(data.get('msgId', '')), new_msg_id=str(data.get('newMsgId', '')),
        at_bot=bool(bot_id) and bot_id in atlist)
    content = str(data.get('content') or '')
    if message_type == GROUP_QUOTE:
        title, quoted, quoted_id, quoted_sender = _parse_quote(content)
        message.text = strip_mentions(str(data.get('title') or title))
        message.quoted_text, message.quoted_new_msg_id, message.quoted_sender = quoted, quoted_id, quoted_sender
    else:
        message.text = strip_mentions(content)
    if message.sender_id == bot_id:
        return None
    return message
