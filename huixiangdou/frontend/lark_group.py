"""The `lark_group` frontend: a Lark app's event-callback server that answers group messages in thread.

Verifies and decrypts callbacks, commits each message to the inbox before acknowledging it (so a crash
or a redelivery answers it exactly once, barring a crash right after sending), and leaves answering to
the GroupDispatcher; Open Platform calls live in lark_open_api.py.
"""
from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from aiohttp import web
from loguru import logger

from huixiangdou.config import FrontendConfig, LarkGroupConfig
from huixiangdou.frontend.callback_body import parse_object_body, read_raw_body, rejection_response
from huixiangdou.frontend.callback_server import CallbackServer
from huixiangdou.frontend.errors import CallbackRejected, InboxError, LarkApiError
from huixiangdou.frontend.group_dispatcher import GroupDispatcher
from huixiangdou.frontend.group_message import GroupMessage, Outcome, OutcomeStatus, Responder
from huixiangdou.frontend.inbox import Acceptance, Inbox
from huixiangdou.frontend.lark_crypto import LarkCryptoError, decrypt_payload, verify_event_signature
from huixiangdou.frontend.lark_event import (MESSAGE_EVENT, LarkTextMessage, field_object, field_text,
                                             parse_message_event)
from huixiangdou.frontend.lark_open_api import LarkOpenApi
from huixiangdou.frontend.lark_post import answer_post
from huixiangdou.frontend.message_images import ImageLimits, fetch_images
from huixiangdou.primitive.request_body import refuse_malformed_bodies

REPLIES_REMEMBERED = 10000
INBOX_FILE = 'lark_group_inbox.sqlite'
# A reply waits at most this long for the message it answers (its quote) before it is answered without it.
QUOTE_FETCH_SECONDS = 3.0


class LarkGroupServer(CallbackServer):
    """aiohttp server for Lark event callbacks (url_verification and im.message.receive_v1).

    Usage:
        server = LarkGroupServer(config.frontend, worker, state_dir=config.path(config.feature_store.work_dir))
        await server.warm_up()
        port = await server.start()
        ...
        await server.stop()

    Security: with an Encrypt Key, every event must be encrypted and carry a valid X-Lark-Signature;
    with a Verification Token, the token inside the event must match. Anything else gets 401.
    Events sent (signed timestamp) or created (header.create_time) more than max_event_age ago get 400.
    A message to answer is committed to the inbox before the 200 (a failed write gets 503, so Lark
    redelivers); with `state_dir` the inbox is a file: what a crash left unanswered is answered at the
    next start, and a redelivered message id is acknowledged and not answered again.
    """

    name = 'lark_group'

    def __init__(self, frontend: FrontendConfig, responder: Responder, *, api: LarkOpenApi | None = None,
                 port: int | None = None, state_dir: str | Path | None = None,
                 clock: Callable[[], float] = time.time, images: ImageLimits = ImageLimits()):
        """`images`: whether and within what the images of a message are downloaded ([worker] ocr, [ocr])."""
        self.frontend = frontend
        self.images = images
        self.config: LarkGroupConfig = frontend.lark_group
        super().__init__(self.config.host, self.config.port if port is None else port)
        self.api = api or LarkOpenApi(self.config.app_id, self.config.app_secret, self.config.base_url)
        self.dispatcher = GroupDispatcher.from_config(frontend, responder, self._on_outcome)
        # Keyed by message id: Lark redelivers an event with the same event id and message id, so the
        # message id alone recognises a redelivery.
        self.inbox = Inbox(Path(state_dir) / INBOX_FILE if state_dir is not None else ':memory:')
        if state_dir is None:
            logger.warning('lark_group: no state folder given, so the inbox is kept in memory: a message left '
                           'unanswered by a crash is lost, and a redelivery after a restart is answered again')
        self._clock = clock
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

    async def start(self) -> int:
        # The inbox is local and needed for the first callback, so it opens here, not in warm_up.
        await self.inbox.open()
        # Messages acknowledged by the last run but never answered: queued before any new one.
        for _, message in await self.inbox.replay_as(lambda payload: LarkTextMessage(**payload)):
            self._dispatch(message)
        return await super().start()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.frontend.max_body_size, middlewares=[refuse_malformed_bodies])
        app.router.add_post(self.config.path, self.handle)
        return app

    async def close(self) -> None:
        await self.dispatcher.abort()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.api.close()
        await self.inbox.close()

    # ---- callback -------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        try:
            payload = await self._authenticate(request)
            if payload.get('type') == 'url_verification':
                challenge = field_text(payload, 'challenge', 'body')
                logger.info('lark_group: answered url_verification')
                return web.json_response({'challenge': challenge})
            header = field_object(payload, 'header', 'body')
            event = field_object(payload, 'event', 'body')
            event_type = field_text(header, 'event_type', 'header') or field_text(event, 'type', 'event')
            event_id = field_text(header, 'event_id', 'header') or field_text(payload, 'uuid', 'body')
            # Parsed before anything is stored, so a malformed event is refused without being remembered.
            message = parse_message_event(event) if event_type == MESSAGE_EVENT else None
            if message is not None:
                await self._accept_message(message)
            elif event_type != MESSAGE_EVENT:
                logger.debug('lark_group: ignored event type {!r} ({})', event_type, event_id)
        except InboxError as exc:
            # No 200, so Lark delivers the event again later.
            logger.error('lark_group: event {} not accepted: {}', event_id, exc)
            return web.json_response({'error': 'cannot store the message'}, status=503)
        except CallbackRejected as exc:
            logger.warning('lark_group: rejected callback from {}: {} {}', request.remote, exc.status, exc.reason)
            return rejection_response(exc)
        return web.json_response({})

    async def _authenticate(self, request: web.Request) -> dict:
        """The event object of an authentic, fresh callback; CallbackRejected otherwise.

        With an Encrypt Key the signature is checked on the raw bytes before anything is parsed.
        """
        raw = await read_raw_body(request, self.frontend.max_body_size, self.body_timeout)
        encrypt_key = self.config.encrypt_key
        signature = request.headers.get('X-Lark-Signature', '')
        if encrypt_key and signature:
            timestamp = request.headers.get('X-Lark-Request-Timestamp', '')
            nonce = request.headers.get('X-Lark-Request-Nonce', '')
            if not verify_event_signature(timestamp, nonce, encrypt_key, raw, signature):
                raise CallbackRejected(401, 'X-Lark-Signature does not match')
            self._check_age(timestamp, 1.0, 'X-Lark-Request-Timestamp')
        body = parse_object_body(raw)
        if 'encrypt' in body:
            if not encrypt_key:
                raise CallbackRejected(400, 'event is encrypted but [frontend.lark_group] encrypt_key is empty')
            encrypted = body['encrypt']
            if not isinstance(encrypted, str):
                raise CallbackRejected(400, f'body.encrypt must be a string, got {type(encrypted).__name__}')
            try:
                payload = decrypt_payload(encrypt_key, encrypted)
            except LarkCryptoError as exc:
                raise CallbackRejected(401, str(exc)) from None
            # Lark signs event deliveries; the one-off url_verification may come unsigned.
            if not signature and payload.get('type') != 'url_verification':
                raise CallbackRejected(401, 'X-Lark-Signature is missing')
        elif encrypt_key:
            raise CallbackRejected(401, 'plain event while encrypt_key is set: Lark encrypts every event')
        else:
            payload = body
        token = self.config.verification_token
        if token:
            got = payload.get('token')
            if got is None:
                got = field_object(payload, 'header', 'body').get('token')
            if not isinstance(got, str) or not hmac.compare_digest(got.encode(), token.encode()):
                raise CallbackRejected(401, 'verification token does not match')
        if not (encrypt_key and signature):
            # Nothing signs the delivery time here, so fall back to when Lark created the event.
            create_time = field_text(field_object(payload, 'header', 'body'), 'create_time', 'header')
            if create_time:
                self._check_age(create_time, 1000.0, 'header.create_time')
        return payload

    def _check_age(self, stamp: str, per_second: float, where: str) -> None:
        """400 when `stamp` (in 1/per_second units since the epoch) is outside max_event_age of now."""
        try:
            sent_at = float(stamp) / per_second
        except ValueError:
            raise CallbackRejected(400, f'{where} must be a number, got {stamp[:20]!r}') from None
        age = self._clock() - sent_at
        if not abs(age) <= self.config.max_event_age:  # also refuses nan
            raise CallbackRejected(400, f'{where} is {age:.0f} s from now, outside max_event_age '
                                        f'{self.config.max_event_age:.0f} s: a replayed or stale event')

    async def _accept_message(self, message: LarkTextMessage) -> None:
        if message.chat_type != 'group' or message.sender_type != 'user':
            return
        # Decided again for a redelivery, the same way: only messages to answer cost a disk write.
        if self._revoke_if_asked(message):
            return
        if self.config.only_at_bot and self._bot_open_id not in message.mentioned_open_ids:
            return
        if not message.text and not (message.image_keys and self.images.enabled):
            return
        acceptance = await self.inbox.accept(message.message_id, asdict(message))
        if acceptance is Acceptance.NEW:
            self._dispatch(message)
        else:
            logger.info('lark_group: message {} delivered again ({}); answered once', message.message_id,
                        acceptance.value)

    def _dispatch(self, message: LarkTextMessage) -> None:
        with_images = bool(message.image_keys) and self.images.enabled
        if message.parent_id or with_images:
            # What the message needs from the Open Platform first: the message it replies to (its quote)
            # and its images.
            self._spawn(self._fetch_and_submit(message))
        else:
            self._submit(message, quote='')

    def _submit(self, message: LarkTextMessage, quote: str, images: list[bytes] | None = None) -> None:
        group = self.config.groups.get(message.chat_id)
        self.dispatcher.submit(GroupMessage(
            group_id=message.chat_id, text=message.text, sender_id=message.sender_open_id,
            message_id=message.message_id, group_name=group.name if group else '',
            group_introduction=group.introduction if group else '', quote=quote, images=images or []))

    async def _fetch_and_submit(self, message: LarkTextMessage) -> None:
        quote, images = await asyncio.gather(self._quote(message), self._images(message))
        if not message.text and not images:
            logger.info('lark_group: message {} in chat {} is only images, and none could be read; '
                        'nothing to answer', message.message_id, message.chat_id)
            await self.inbox.skipped([message.message_id], 'image_unreadable')
            return
        self._submit(message, quote, images)

    async def _quote(self, message: LarkTextMessage) -> str:
        if not message.parent_id:
            return ''
        try:
            return await asyncio.wait_for(self.api.message_text(message.parent_id), QUOTE_FETCH_SECONDS)
        except (LarkApiError, asyncio.TimeoutError) as exc:
            # Without the quote the message is still answered, as before quotes were read.
            logger.warning('lark_group: could not read the message {} replies to ({}); answering without it',
                           message.message_id, exc if str(exc) else type(exc).__name__)
            return ''

    async def _images(self, message: LarkTextMessage) -> list[bytes]:
        if not self.images.enabled:
            return []
        downloads = [lambda key=key: self.api.message_image(message.message_id, key, self.images.max_bytes)
                     for key in message.image_keys]
        return await fetch_images(downloads, self.images,
                                  f'lark_group: chat {message.chat_id} message {message.message_id}')

    def _revoke_if_asked(self, message: LarkTextMessage) -> bool:
        if message.text not in self.config.revoke_words:
            return False
        for candidate in (message.parent_id, message.root_id):
            reply_id = candidate if candidate in self._replies else self._reply_to_asked.get(candidate, '')
            if reply_id and self._replies[reply_id][0] == message.sender_open_id:
                self._spawn(self._recall(reply_id, message.chat_id))
                return True
        return False

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
        asked = outcome.message
        settled = [asked.message_id, *asked.merged_message_ids]
        if outcome.status is OutcomeStatus.MERGED:
            return  # settled with the message it was merged into
        if outcome.status is not OutcomeStatus.ANSWERED:
            await self.inbox.skipped(settled, outcome.status.value)
            return
        # A task of its own, shielded and awaited by close(): a shutdown lets a reply being sent be recorded,
        # rather than leave it pending for the next start to send again.
        await asyncio.shield(self._spawn(self._reply(outcome, settled)))

    async def _reply(self, outcome: Outcome, settled: list[str]) -> None:
        asked = outcome.message
        post = answer_post(outcome.reply, outcome.references)
        # A LarkApiError leaves the message pending: the next start tries again.
        reply_id = await self.api.reply(asked.message_id, post, in_thread=True, uuid=f'hxd-{asked.message_id}')
        # Sent, not yet recorded: a crash right here leaves the message pending and the next start replies
        # again (at-least-once). Lark drops a reply whose uuid it saw within the hour, so the duplicate
        # shows only when that start comes more than an hour later.
        await self.inbox.answered(settled, reply=outcome.reply, reply_id=reply_id or '')
        logger.info('lark_group: answered message {} in chat {} with {}', asked.message_id, asked.group_id, reply_id)
        if reply_id:
            self._replies[reply_id] = (asked.sender_id, asked.message_id)
            self._reply_to_asked[asked.message_id] = reply_id
            while len(self._replies) > REPLIES_REMEMBERED:
                _, (_, old_asked) = self._replies.popitem(last=False)
                self._reply_to_asked.pop(old_asked, None)


async def run_lark_group(frontend: FrontendConfig, responder: Responder, state_dir: str | Path | None = None,
                         images: ImageLimits = ImageLimits()) -> None:
    """Serve until cancelled; `state_dir` (the workdir) keeps the inbox across restarts."""
    await LarkGroupServer(frontend, responder, state_dir=state_dir, images=images).serve_forever()
