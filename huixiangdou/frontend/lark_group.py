"""The `lark_group` frontend: a Lark app's event-callback server that answers group messages in thread.

Verifies, decrypts and deduplicates callbacks, acknowledges at once, and leaves answering to the
GroupDispatcher; Open Platform calls live in lark_open_api.py.
"""
from __future__ import annotations

import asyncio
import hmac
from collections import OrderedDict

from aiohttp import web
from loguru import logger

from huixiangdou.config import FrontendConfig, LarkGroupConfig
from huixiangdou.frontend.callback_body import read_json_body, rejection_response
from huixiangdou.frontend.callback_server import CallbackServer
from huixiangdou.frontend.errors import CallbackRejected, LarkApiError
from huixiangdou.frontend.group_dispatcher import GroupDispatcher
from huixiangdou.frontend.group_message import GroupMessage, Outcome, OutcomeStatus, Responder
from huixiangdou.frontend.lark_crypto import LarkCryptoError, decrypt_payload, verify_event_signature
from huixiangdou.frontend.lark_event import MESSAGE_EVENT, LarkTextMessage, parse_message_event
from huixiangdou.frontend.lark_open_api import LarkOpenApi
from huixiangdou.frontend.lark_post import answer_post
from huixiangdou.frontend.recent_ids import RecentIds

REPLIES_REMEMBERED = 10000


class LarkGroupServer(CallbackServer):
    """aiohttp server for Lark event callbacks (url_verification and im.message.receive_v1).

    Usage:
        server = LarkGroupServer(config.frontend, worker)
        await server.warm_up()
        port = await server.start()
        ...
        await server.stop()

    Security: with an Encrypt Key, every event must be encrypted and carry a valid X-Lark-Signature;
    with a Verification Token, the token inside the event must match. Anything else gets 401.
    """

    name = 'lark_group'

    def __init__(self, frontend: FrontendConfig, responder: Responder, *, api: LarkOpenApi | None = None,
                 port: int | None = None):
        self.frontend = frontend
        self.config: LarkGroupConfig = frontend.lark_group
        super().__init__(self.config.host, self.config.port if port is None else port)
        self.api = api or LarkOpenApi(self.config.app_id, self.config.app_secret, self.config.base_url)
        self.dispatcher = GroupDispatcher.from_config(frontend, responder, self._on_outcome)
        self._seen_events = RecentIds()
        self._seen_messages = RecentIds()
        # Our reply id -> (asker open_id, asked message id), and asked message id -> our reply id,
        # so a revoke word in the thread finds the answer to recall.
        self._replies: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._reply_to_asked: dict[str, str] = {}
        self._bot_open_id = ''
        self._tasks: set[asyncio.Task] = set()
        if not self.config.encrypt_key and not self.config.verification_token:
            logger.warning('lark_group: neither encrypt_key nor verification_token is set, so anyone who '
                           'finds the callback URL can post fake events; set one in [frontend.lark_group]')

    async def warm_up(self) -> None:
        await self.api.warm_up()
        if self.config.only_at_bot:
            # Only needed to tell "@bot" from "@someone else"; fails early if the app lacks the bot feature.
            self._bot_open_id = await self.api.bot_open_id()
            logger.info('lark_group: answering only messages that @ the bot {}', self._bot_open_id)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.frontend.max_body_size)
        app.router.add_post(self.config.path, self.handle)
        return app

    async def close(self) -> None:
        await self.dispatcher.abort()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.api.close()

    # ---- callback -------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        try:
            raw, body = await read_json_body(request, self.frontend.max_body_size)
            payload = self._authenticate(request, raw, body)
        except CallbackRejected as exc:
            logger.warning('lark_group: rejected callback from {}: {} {}', request.remote, exc.status, exc.reason)
            return rejection_response(exc)
        if payload.get('type') == 'url_verification':
            logger.info('lark_group: answered url_verification')
            return web.json_response({'challenge': payload.get('challenge', '')})
        header = payload.get('header') or {}
        event_type = header.get('event_type') or (payload.get('event') or {}).get('type', '')
        event_id = header.get('event_id') or payload.get('uuid', '')
        if not self._seen_events.add(event_id):
            logger.info('lark_group: duplicate delivery of event {} ignored', event_id)
            return web.json_response({})
        if event_type == MESSAGE_EVENT:
            self._accept_message(payload.get('event') or {})
        else:
            logger.debug('lark_group: ignored event type {!r} ({})', event_type, event_id)
        return web.json_response({})

    def _authenticate(self, request: web.Request, raw: bytes, body: dict) -> dict:
        encrypt_key = self.config.encrypt_key
        if 'encrypt' in body:
            if not encrypt_key:
                raise CallbackRejected(400, 'event is encrypted but [frontend.lark_group] encrypt_key is empty')
            signature = request.headers.get('X-Lark-Signature', '')
            timestamp = request.headers.get('X-Lark-Request-Timestamp', '')
            nonce = request.headers.get('X-Lark-Request-Nonce', '')
            try:
                payload = decrypt_payload(encrypt_key, str(body['encrypt']))
            except LarkCryptoError as exc:
                raise CallbackRejected(401, str(exc)) from None
            # Lark signs event deliveries; the one-off url_verification may come unsigned.
            if signature or payload.get('type') != 'url_verification':
                if not verify_event_signature(timestamp, nonce, encrypt_key, raw, signature):
                    raise CallbackRejected(401, 'X-Lark-Signature does not match')
        elif encrypt_key:
            raise CallbackRejected(401, 'plain event while encrypt_key is set: Lark encrypts every event')
        else:
            payload = body
        token = self.config.verification_token
        if token:
            got = payload.get('token') or (payload.get('header') or {}).get('token', '')
            if not isinstance(got, str) or not hmac.compare_digest(got.encode(), token.encode()):
                raise CallbackRejected(401, 'verification token does not match')
        return payload

    def _accept_message(self, event: dict) -> None:
        message = parse_message_event(event)
        if message is None or message.chat_type != 'group' or message.sender_type != 'user':
            return
        if not self._seen_messages.add(message.message_id):
            logger.info('lark_group: message {} delivered twice; answered once', message.message_id)
            return
        if self._revoke_if_asked(message):
            return
        if self.config.only_at_bot and self._bot_open_id not in message.mentioned_open_ids:
            return
        if not message.text:
            return
        group = self.config.groups.get(message.chat_id)
        self.dispatcher.submit(GroupMessage(
            group_id=message.chat_id, text=message.text, sender_id=message.sender_open_id,
            message_id=message.message_id, group_name=group.name if group else '',
            group_introduction=group.introduction if group else ''))

    def _revoke_if_asked(self, message: LarkTextMessage) -> bool:
        if message.text not in self.config.revoke_words:
            return False
        for candidate in (message.parent_id, message.root_id):
            reply_id = candidate if candidate in self._replies else self._reply_to_asked.get(candidate, '')
            if reply_id and self._replies[reply_id][0] == message.sender_open_id:
                self._spawn(self._recall(reply_id, message.chat_id))
                return True
        return False

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recall(self, reply_id: str, chat_id: str) -> None:
        try:
            await self.api.recall(reply_id)
        except LarkApiError:
            return  # logged by the client with the reason
        asker, asked = self._replies.pop(reply_id, ('', ''))
        self._reply_to_asked.pop(asked, None)
        logger.info('lark_group: recalled reply {} in chat {} at the asker\'s request', reply_id, chat_id)

    # ---- answers --------------------------------------------------------------------------------

    async def _on_outcome(self, outcome: Outcome) -> None:
        if outcome.status is not OutcomeStatus.ANSWERED:
            return
        asked = outcome.message
        post = answer_post(outcome.reply, outcome.references)
        reply_id = await self.api.reply(asked.message_id, post, in_thread=True, uuid=f'hxd-{asked.message_id}')
        logger.info('lark_group: answered message {} in chat {} with {}', asked.message_id, asked.group_id, reply_id)
        if reply_id:
            self._replies[reply_id] = (asked.sender_id, asked.message_id)
            self._reply_to_asked[asked.message_id] = reply_id
            while len(self._replies) > REPLIES_REMEMBERED:
                _, (_, old_asked) = self._replies.popitem(last=False)
                self._reply_to_asked.pop(old_asked, None)


async def run_lark_group(frontend: FrontendConfig, responder: Responder) -> None:
    await LarkGroupServer(frontend, responder).serve_forever()
