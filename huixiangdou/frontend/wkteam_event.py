"""Parses wkteam message pushes (group text 80001, group image 80002, group quote 80014) into WkteamGroupMessage.

Shapes follow docs/frontend_wechat_wkteam.md; other message types (private chats, files...) give None,
and a group message with a field of the wrong type (or no wId) gives CallbackRejected(400).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from huixiangdou.frontend.callback_body import field_text
from huixiangdou.frontend.errors import CallbackRejected
from huixiangdou.frontend.wechat_mention import strip_mentions
from huixiangdou.primitive.json_input import clean_text

GROUP_TEXT = '80001'
GROUP_IMAGE = '80002'
GROUP_QUOTE = '80014'


@dataclass
class WkteamGroupMessage:
    wid: str
    bot_id: str             # wcId of the logged-in account
    group_id: str           # "…@chatroom"
    sender_id: str
    text: str               # mentions removed; for a quote, the newly typed text
    msg_id: str
    new_msg_id: str
    quoted_text: str = ''
    quoted_new_msg_id: str = ''  # svrid of the quoted message
    # For an image push: its <msg><img …/></msg> XML, which wkteam's getMsgImg takes back to find the file.
    image_xml: str = ''


def _parse_quote(xml_text: str) -> tuple[str, str, str]:
    """(typed text, quoted text, quoted newMsgId) from an 80014 appmsg XML."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return '', '', ''
    appmsg = root.find('appmsg') if root.tag != 'appmsg' else root
    if appmsg is None:
        return '', '', ''
    refer = appmsg.find('refermsg')
    title = appmsg.findtext('title', '')
    if refer is None:
        return clean_text(title), '', ''
    return clean_text(title), clean_text(refer.findtext('content', '')), clean_text(refer.findtext('svrid', ''))


def parse_callback(body: dict) -> WkteamGroupMessage | None:
    """The group message a push carries, None for pushes we do not answer; 400 for a wrongly shaped one.

    Every group message must name its instance (`data.wId`): the server compares it with the
    configured wid, so leaving it out must not skip that check.
    """
    message_type = body.get('messageType')
    if not isinstance(message_type, (str, int)) or isinstance(message_type, bool):
        return None
    if str(message_type) not in (GROUP_TEXT, GROUP_IMAGE, GROUP_QUOTE):
        return None
    data = body.get('data')
    if not isinstance(data, dict):
        raise CallbackRejected(400, f'data must be an object, got {type(data).__name__}')
    wid = field_text(data, 'wId', 'data')
    if not wid:
        raise CallbackRejected(400, 'data.wId is missing: every wkteam push names its instance')
    group_id = field_text(data, 'fromGroup', 'data')
    bot_id = field_text(body, 'wcId', 'body')
    atlist = data.get('atlist')
    if atlist is None:
        atlist = []
    if not isinstance(atlist, list) or not all(isinstance(at, str) for at in atlist):
        raise CallbackRejected(400, f'data.atlist must be a list of strings, got {type(atlist).__name__}')
    sender_id = field_text(data, 'fromUser', 'data')
    msg_id, new_msg_id = field_text(data, 'msgId', 'data'), field_text(data, 'newMsgId', 'data')
    content, title = field_text(data, 'content', 'data'), field_text(data, 'title', 'data')
    if not group_id or data.get('self') or sender_id == bot_id:
        return None
    message = WkteamGroupMessage(
        wid=wid, bot_id=bot_id, group_id=group_id, sender_id=sender_id, text='', msg_id=msg_id,
        new_msg_id=new_msg_id)
    if str(message_type) == GROUP_QUOTE:
        typed, quoted, quoted_id = _parse_quote(content)
        message.text = strip_mentions(title or typed)
        message.quoted_text, message.quoted_new_msg_id = quoted, quoted_id
    elif str(message_type) == GROUP_IMAGE:
        message.image_xml = content
    else:
        message.text = strip_mentions(content)
    return message
