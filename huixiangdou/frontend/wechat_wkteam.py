"""The `wechat_wkteam` frontend: a callback server for wkteam pushes that answers WeChat groups.

Replies and revokes go through wkteam_api.py; recent messages per group persist in SQLite
(history_store.py) so context survives restarts. It does not log in to WeChat itself.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

from aiohttp import web
from loguru import logger

from huixiangdou.config import FrontendConfig, GroupConfig, WechatWkteamConfig
from huixiangdou.frontend.callback_body import read_json_body, rejection_response
from huixiangdou.frontend.callback_server import CallbackServer
from huixiangdou.frontend.errors import CallbackRejected, InboxError, WkteamApiError
from huixiangdou.frontend.group_dispatcher import IMAGE_PLACEHOLDER, GroupDispatcher
from huixiangdou.frontend.group_message import GroupMessage, Outcome, OutcomeStatus, Responder
from huixiangdou.frontend.history_store import HistoryStore
from huixiangdou.frontend.inbox import Acceptance, Inbox
from huixiangdou.frontend.message_images import ImageLimits, fetch_images
from huixiangdou.frontend.wkteam_api import SentMessage, WkteamApi
from huixiangdou.frontend.wkteam_event import WkteamGroupMessage, parse_callback
from huixiangdou.service.worker.citation import numbered
from huixiangdou.primitive.request_body import refuse_malformed_bodies

SENT_REMEMBERED = 10000
INBOX_FILE = 'wkteam_inbox.sqlite'
QUOTE_LIMIT = 60


def format_reply(question: str, reply: str, references: list[str]) -> str:
    """Plain text for WeChat: the question quoted, the answer, then the references."""
    question = ' '.join(question.split())
    if len(question) > QUOTE_LIMIT:
        question = question[:QUOTE_LIMIT - 1] + '…'
    parts = [f'「{question}」', '- - - - - - - - - - - - - - -', reply.strip()]
    if references:
        parts.append('参考资料 References:\n' + '\n'.join(numbered(references)))
    return '\n'.join(parts)


class WechatWkteamServer(CallbackServer):
    """Receives wkteam's message push on callback_host:callback_port/callback_path.

    Usage:
        server = WechatWkteamServer(config.frontend, worker, history_path=workdir / 'wkteam.sqlite')
        await server.warm_up()      # logs in when only account/password are configured
        port = await server.start()
    """

    name = 'wechat_wkteam'

    def __init__(self, frontend: FrontendConfig, responder: Responder, *, history_path: str | Path,
                 api: WkteamApi | None = None, port: int | None = None, images: ImageLimits = ImageLimits()):
        """`images`: whether and within what image pushes are downloaded ([worker] ocr, [ocr])."""
        self.frontend = frontend
        self.images = images
        self.config: WechatWkteamConfig = frontend.wechat_wkteam
        super().__init__(self.config.callback_host, self.config.callback_port if port is None else port)
        self.api = api or WkteamApi(self.config.base_url, api_token=self.config.api_token,
                                    account=self.config.account, password=self.config.password)
        self.history = HistoryStore(history_path, self.config.history_size)
        self.dispatcher = GroupDispatcher.from_config(frontend, responder, self._on_outcome, history=self.history)
        # Next to the history: a push acknowledged but not yet answered is answered after a crash, and one
        # wkteam redelivers is answered once, also across a restart.
        self.inbox = Inbox(':memory:' if str(history_path) == ':memory:'
                           else Path(history_path).with_name(INBOX_FILE))
        # newMsgId of our sent answer -> (asker wcId, what revoke needs).
        self._sent: OrderedDict[str, tuple[str, SentMessage]] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()

    async def warm_up(self) -> None:
        self.history.warm_up()
        await self.api.warm_up()

    async def start(self) -> int:
        # The inbox and the history are local and needed for the first callback (and the replay below).
        self.history.warm_up()
        await self.inbox.open()
        # Pushes acknowledged by the last run but never answered: queued before any new one.
        for _, message in await self.inbox.replay_as(lambda payload: WkteamGroupMessage(**payload)):
            self._dispatch(message)
        return await super().start()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.frontend.max_body_size, middlewares=[refuse_malformed_bodies])
        app.router.add_post(self.config.callback_path, self.handle)
        return app

    async def close(self) -> None:
        await self.dispatcher.abort()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.api.close()
        self.history.close()
        await self.inbox.close()

    def _group(self, group_id: str) -> GroupConfig:
        # Upstream config keys groups by the bare number; pushes carry "<number>@chatroom".
        return (self.config.groups.get(group_id) or self.config.groups.get(group_id.split('@', 1)[0])
                or GroupConfig())

    async def handle(self, request: web.Request) -> web.Response:
        try:
            _, body = await read_json_body(request, self.frontend.max_body_size, self.body_timeout)
            message = parse_callback(body)
            if message is not None and self.config.wid and message.wid != self.config.wid:
                raise CallbackRejected(401, 'wId does not match [frontend.wechat_wkteam] wid')
        except CallbackRejected as exc:
            logger.warning('wechat_wkteam: rejected callback from {}: {} {}', request.remote, exc.status, exc.reason)
            return rejection_response(exc)
        if message is None or self._revoke_if_asked(message):
            return web.json_response({})
        if not (self.images.enabled if message.image_xml else message.text.strip()):
            return web.json_response({})   # nothing to answer: not worth a write
        try:
            # Committed before wkteam hears 200, so a crash from here on still answers it (at the next start).
            acceptance = await self.inbox.accept(self._message_id(message), asdict(message))
        except InboxError as exc:
            logger.error('wechat_wkteam: message {} not accepted: {}', self._message_id(message), exc)
            return web.json_response({'error': 'cannot store the message'}, status=503)
        if acceptance is Acceptance.NEW:
            self._dispatch(message)
        else:
            logger.info('wechat_wkteam: message {} delivered twice ({}); answered once', self._message_id(message),
                        acceptance.value)
        return web.json_response({})

    @staticmethod
    def _message_id(message: WkteamGroupMessage) -> str:
        return message.new_msg_id or message.msg_id

    def _dispatch(self, message: WkteamGroupMessage) -> None:
        if message.image_xml:
            # The image is downloaded (and the message queued) off the request.
            self._spawn(self._submit_image(message))
        else:
            self._submit(message)

    def _submit(self, message: WkteamGroupMessage, images: list[bytes] | None = None) -> None:
        # The quoted message travels as its own field; the worker decides how to use it.
        self.dispatcher.submit(GroupMessage(
            group_id=message.group_id, text=message.text.strip(), quote=message.quoted_text.strip(),
            sender_id=message.sender_id,
            message_id=self._message_id(message), group_name=self._group(message.group_id).name,
            group_introduction=self._group(message.group_id).introduction,
            platform_ids={'wid': message.wid or self.config.wid}, images=images or []))

    async def _submit_image(self, message: WkteamGroupMessage) -> None:
        """A WeChat image comes alone (its question, if any, is a text message of its own; the merge policy
        joins the two). Its text read by the worker is the question."""
        wid = message.wid or self.config.wid
        images = await fetch_images(
            [lambda: self.api.message_image(wid, message.msg_id, message.image_xml, self.images.max_bytes)],
            self.images, f'wechat_wkteam: group {message.group_id} message {message.new_msg_id or message.msg_id}')
        if images:
            self._submit(message, images)
        else:
            await self.inbox.skipped([self._message_id(message)], 'image_unreadable')

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _revoke_if_asked(self, message: WkteamGroupMessage) -> bool:
        if message.text not in self.config.revoke_words or not message.quoted_new_msg_id:
            return False
        entry = self._sent.get(message.quoted_new_msg_id)
        if entry is None or entry[0] != message.sender_id:
            return False
        self._spawn(self._revoke(message.wid or self.config.wid, message.quoted_new_msg_id))
        return True

    async def _revoke(self, wid: str, new_msg_id: str) -> None:
        entry = self._sent.get(new_msg_id)
        if entry is None:  # a second revoke word for an answer already revoked
            return
        _, sent = entry
        try:
            await self.api.revoke(wid, sent)
        except WkteamApiError as exc:
            logger.error('wechat_wkteam: revoke of {} in {} failed: {}', new_msg_id, sent.group_id, exc)
            return
        self._sent.pop(new_msg_id, None)
        logger.info('wechat_wkteam: revoked answer {} in group {} at the asker\'s request', new_msg_id, sent.group_id)

    async def _on_outcome(self, outcome: Outcome) -> None:
        asked = outcome.message
        settled = [asked.message_id, *asked.merged_message_ids]
        if outcome.status is OutcomeStatus.MERGED:
            return  # settled with the message it was merged into
        if outcome.status is not OutcomeStatus.ANSWERED:
            await self.inbox.skipped(settled, outcome.status.value)
            return
        # A task of its own, shielded and awaited by close(): a shutdown lets an answer being sent be
        # recorded, rather than leave it pending for the next start to send again.
        await asyncio.shield(self._spawn(self._send(outcome, settled)))

    async def _send(self, outcome: Outcome, settled: list[str]) -> None:
        asked = outcome.message
        content = format_reply(asked.text or IMAGE_PLACEHOLDER, outcome.reply, outcome.references)
        try:
            sent = await self.api.send_text(asked.platform_ids.get('wid', self.config.wid), asked.group_id, content)
        except WkteamApiError as exc:
            # Left pending: the next start tries again.
            logger.error('wechat_wkteam: answer to {} in group {} not sent: {}', asked.message_id, asked.group_id, exc)
            return
        # Sent, not yet recorded: a crash right here leaves the message pending, and the next start sends
        # the answer a second time. At-least-once; wkteam's sendText takes no idempotency key to prevent it.
        await self.inbox.answered(settled, reply=content, reply_id=str(sent.new_msg_id))
        logger.info('wechat_wkteam: answered {} in group {}', asked.message_id, asked.group_id)
        self._sent[str(sent.new_msg_id)] = (asked.sender_id, sent)
        while len(self._sent) > SENT_REMEMBERED:
            self._sent.popitem(last=False)


async def run_wechat_wkteam(frontend: FrontendConfig, responder: Responder, history_path: str | Path,
                            images: ImageLimits = ImageLimits()) -> None:
    await WechatWkteamServer(frontend, responder, history_path=history_path, images=images).serve_forever()
