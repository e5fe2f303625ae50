"""The wire format of upstream HuixiangDou's Android helper app (`SendEmojiService.kt`): its posts and our replies.

Pure data in and out: validating a post, turning an Outcome into the `rsp` the app reads. Queueing
answers until a poll is polled_answers.py's job; HTTP is wechat_personal.py's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from huixiangdou.frontend.errors import CallbackRejected
from huixiangdou.frontend.group_message import Outcome, OutcomeStatus

# Upstream's web service answers msgCode "10000" with msg "ok"; the app declares msgCode an Int
# (Gson reads either), so we send the number.
OK_MSG_CODE = 10000
TEXT, POLL = 'text', 'poll'

# `rsp.code` for outcomes the worker did not decide (the worker's own codes are ErrorCode values
# 0..9, 0 = an answer to post). The app posts `text` only for code 0; its debug mode shows the rest.
DISPATCHER_CODES: dict[OutcomeStatus, int] = {
    OutcomeStatus.MERGED: 100,
    OutcomeStatus.RATE_LIMITED: 101,
    OutcomeStatus.QUEUE_FULL: 102,
    OutcomeStatus.FAILED: 103,
    OutcomeStatus.CANCELLED: 104,
}


@dataclass(frozen=True)
class AppRequest:
    """One post of the app: a group message (`query_type` "text") or a request for answers ("poll").

    The app fills `query_id` and `groupname` with the same group name; `username` is the sender.
    """
    query_id: str
    groupname: str
    username: str
    query_type: str
    content: str

    @property
    def group_id(self) -> str:
        return self.query_id or self.groupname

    def to_json(self) -> dict:
        """The `req` the app expects back: its own post, field for field."""
        return {'query_id': self.query_id, 'groupname': self.groupname, 'username': self.username,
                'query': {'type': self.query_type, 'content': self.content}}

    @classmethod
    def from_json(cls, data: dict) -> 'AppRequest':
        """Back from to_json (a post kept in the inbox); the data is our own, already validated once."""
        return cls(data['query_id'], data['groupname'], data['username'], data['query']['type'],
                   data['query']['content'])


@dataclass(frozen=True)
class AppAnswer:
    """The `rsp` of one polled item: code 0 carries an answer in `text`; other codes say why not (`state`)."""
    code: int
    state: str
    text: str = ''
    references: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {'code': self.code, 'state': self.state, 'text': self.text, 'references': list(self.references)}

    @classmethod
    def from_json(cls, data: dict) -> 'AppAnswer':
        return cls(data['code'], data['state'], data['text'], list(data['references']))


@dataclass(frozen=True)
class PolledItem:
    request: AppRequest
    answer: AppAnswer

    def to_json(self) -> dict:
        return {'req': self.request.to_json(), 'rsp': self.answer.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> 'PolledItem':
        """Back from to_json (an answer kept in the inbox database until its poll)."""
        return cls(AppRequest.from_json(data['req']), AppAnswer.from_json(data['rsp']))


def is_app_body(body: dict) -> bool:
    """The app's posts nest the message under "query"; our own JSON format has a flat "content"."""
    return 'query' in body


def parse_app_request(body: dict) -> AppRequest:
    """Validate an app post; CallbackRejected(400) names the field that is wrong."""
    names = {}
    for key in ('query_id', 'groupname', 'username'):
        value = body.get(key, '')
        if not isinstance(value, str):
            raise CallbackRejected(400, f'"{key}" must be a string')
        names[key] = value.strip()
    query = body.get('query')
    if not isinstance(query, dict):
        raise CallbackRejected(400, '"query" must be an object: {"type": "text", "content": "..."}')
    query_type, content = query.get('type'), query.get('content', '')
    if not isinstance(query_type, str) or not isinstance(content, str):
        raise CallbackRejected(400, '"query.type" and "query.content" must be strings')
    if query_type not in (TEXT, POLL):
        shown = query_type if len(query_type) <= 20 else query_type[:20] + '…'
        raise CallbackRejected(400, f'query type {shown!r} is not supported: this server takes "text" and "poll"')
    if not (names['query_id'] or names['groupname']):
        raise CallbackRejected(400, 'give "query_id" or "groupname" (the group the message is from)')
    content = content.strip()
    if query_type == TEXT and not content:
        raise CallbackRejected(400, '"query.content" must be a non-empty string for a text query')
    return AppRequest(names['query_id'], names['groupname'], names['username'], query_type, content)


def answer_for(outcome: Outcome) -> AppAnswer:
    """What the app shows for an outcome: the reply for an answer, the reason (code and state) otherwise."""
    if outcome.status is OutcomeStatus.ANSWERED:
        return AppAnswer(0, 'success', outcome.reply, outcome.references)
    if outcome.status is OutcomeStatus.SILENT and outcome.session is not None and outcome.session.code is not None:
        code = outcome.session.code
        return AppAnswer(code.value, code.name.lower())
    return AppAnswer(DISPATCHER_CODES.get(outcome.status, DISPATCHER_CODES[OutcomeStatus.FAILED]),
                     outcome.status.value)


def app_body(msg: str = 'ok', msg_code: int = OK_MSG_CODE, items: list[PolledItem] | None = None) -> dict:
    """The envelope of every reply the app reads: {"msg", "msgCode", "data": [{"req", "rsp"}, ...]}."""
    return {'msg': msg, 'msgCode': msg_code, 'data': [item.to_json() for item in items or []]}
