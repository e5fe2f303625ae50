"""The `wechat_personal` frontend: an HTTP endpoint for Android helper apps that read WeChat group chats.

One path speaks two formats, told apart by the body: upstream HuixiangDou's app (post, then poll for
answers; wechat_app_protocol.py) and our synchronous JSON (the answer in the response). Both are
documented in docs/frontend_wechat_personal.md. Nothing here drives WeChat itself.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import uuid
from pathlib import Path

from aiohttp import web
from loguru import logger

from huixiangdou.config import FrontendConfig, WechatPersonalConfig
from huixiangdou.frontend.callback_body import read_json_body, rejection_response
from huixiangdou.frontend.callback_server import CallbackServer, is_loopback, is_secret_path, require_protected
from huixiangdou.frontend.errors import CallbackRejected, InboxError
from huixiangdou.frontend.group_dispatcher import GroupDispatcher
from huixiangdou.frontend.group_message import GroupMessage, Outcome, OutcomeStatus, Responder
from huixiangdou.frontend.inbox import Inbox
from huixiangdou.frontend.message_images import ImageLimits
from huixiangdou.frontend.polled_answers import PolledAnswers
from huixiangdou.frontend.wechat_app_protocol import (POLL, AppRequest, PolledItem, answer_for, app_body,
                                                       is_app_body, parse_app_request)
from huixiangdou.frontend.wechat_mention import strip_mentions
from huixiangdou.primitive.request_body import refuse_malformed_bodies

SECTION = 'frontend.wechat_personal'
# Outcomes kept per group between polls. Rejections (queue_full, rate_limited) arrive at once, so
# this must exceed what one poll window can bring, not merely the worker queue's size.
MIN_POLLED_PER_GROUP = 100
INBOX_FILE = 'wechat_personal_inbox.sqlite'


class WechatPersonalServer(CallbackServer):
    """Takes group messages on `path` and answers them through the GroupDispatcher.

    App format (upstream's APK): a text post is committed to the inbox and acknowledged; its outcome waits
    per group until a poll for that group collects it. With `state_dir` (the workdir) both survive a
    restart: a post left unanswered is answered at the next start, and an answer waits for its poll. Our format waits up to `reply_timeout` and answers in the
    body: {"status": "answered", "reply": "...", "references": [...], "message_id": "..."}; a request
    that times out has its message dropped or its worker call cancelled.

    Usage:
        server = WechatPersonalServer(config.frontend, worker)
        port = await server.start()   # FrontendError if exposed without a token or secret path
    """

    name = 'wechat_personal'

    def __init__(self, frontend: FrontendConfig, responder: Responder, *, port: int | None = None,
                 images: ImageLimits = ImageLimits(), state_dir: str | Path | None = None):
        """`images`: how many and how large the base64 images of our JSON format may be ([worker] ocr, [ocr])."""
        self.frontend = frontend
        self.images = images
        self.config: WechatPersonalConfig = frontend.wechat_personal
        super().__init__(self.config.host, self.config.bind_port if port is None else port)
        self.dispatcher = GroupDispatcher.from_config(frontend, responder, self._on_outcome)
        self.inbox = Inbox(Path(state_dir) / INBOX_FILE if state_dir is not None else ':memory:')
        if state_dir is None:
            logger.warning('wechat_personal: no state folder given, so the app\'s posts and their answers are '
                           'kept in memory and lost at a restart')
        self.polled = PolledAnswers(self.inbox, self.config.poll_keep_seconds,
                                    max(MIN_POLLED_PER_GROUP, 2 * frontend.group_queue_size))
        # The app sends no headers but the content type: a secret path is its only credential.
        self.path_is_secret = is_secret_path(self.config.path)
        self._waiting: dict[str, asyncio.Future[Outcome | None]] = {}
        self._app_posts: dict[str, AppRequest] = {}  # our message id -> the app's post, until its outcome

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.frontend.max_body_size, middlewares=[refuse_malformed_bodies])
        app.router.add_post(self.config.path, self.handle)
        return app

    async def start(self) -> int:
        require_protected(self.name, SECTION, self.config.host, self.config.token, self.config.path)
        if self.config.token and not self.path_is_secret:
            logger.warning('wechat_personal: the Android app cannot send the token, so its posts are refused '
                           'until [{}] path ends in a random segment of 16+ characters', SECTION)
        elif not self.config.token and not self.path_is_secret and is_loopback(self.host):
            logger.warning('wechat_personal: no token and a guessable path: fine on {} only', self.host)
        await self.inbox.open()
        await self.polled.open()
        # Posts acknowledged by the last run but never answered: queued before any new one.
        for message_id, post in await self.inbox.replay_as(AppRequest.from_json):
            self._submit_app(post, message_id)
        return await super().start()

    async def close(self) -> None:
        await self.inbox.close()

    async def before_stop(self) -> None:
        await self.dispatcher.abort()
        for future in self._waiting.values():
            if not future.done():
                future.set_result(None)  # read by handle() as "shutting down"
        self._app_posts.clear()

    def _authorized(self, request: web.Request, app_format: bool) -> bool:
        if not self.config.token:
            return True
        given = request.headers.get('Authorization', '')
        if hmac.compare_digest(given.encode(), f'Bearer {self.config.token}'.encode()):
            return True
        return app_format and self.path_is_secret

    async def handle(self, request: web.Request) -> web.Response:
        try:
            _, body = await read_json_body(request, self.frontend.max_body_size, self.body_timeout)
        except CallbackRejected as exc:
            logger.warning('wechat_personal: rejected request from {}: {} {}', request.remote, exc.status, exc.reason)
            return rejection_response(exc)
        app_format = is_app_body(body)
        try:
            if not self._authorized(request, app_format):
                raise CallbackRejected(401, 'missing or wrong token: send "Authorization: Bearer <token>"')
            if app_format:
                return await self._handle_app(parse_app_request(body))
            return await self._handle_sync(self._parse(body))
        except InboxError as exc:
            logger.error('wechat_personal: request from {} not served: {}', request.remote, exc)
            return web.json_response(app_body('cannot store the message', 503), status=503)
        except CallbackRejected as exc:
            logger.warning('wechat_personal: rejected request from {}: {} {}', request.remote, exc.status, exc.reason)
            if app_format:
                return web.json_response(app_body(exc.reason, exc.status), status=exc.status)
            return rejection_response(exc)

    async def _handle_app(self, post: AppRequest) -> web.Response:
        if post.query_type == POLL:
            items = await self.polled.take(post.group_id)
            if items:
                logger.info('wechat_personal: poll for group {} collected {} item(s)', post.group_id, len(items))
            return web.json_response(app_body(items=items))
        if self.dispatcher.closed:
            return web.json_response(app_body('shutting down', 503), status=503)
        message_id = uuid.uuid4().hex
        # Committed before the app hears "ok" (InboxError: 503), as the app never posts a message twice.
        await self.inbox.accept(message_id, post.to_json())
        self._submit_app(post, message_id)
        # The app ignores this body and polls for the outcome; an empty `data` matches upstream.
        return web.json_response(app_body())

    def _submit_app(self, post: AppRequest, message_id: str) -> None:
        self._app_posts[message_id] = post
        message = GroupMessage(group_id=post.group_id, text=strip_mentions(post.content),
                               sender_id=post.username, group_name=post.groupname, message_id=message_id)
        submitted = self.dispatcher.submit(message)
        if not submitted and self.dispatcher.closed:
            # Shutting down: the post stays pending in the inbox and is answered at the next start.
            self._app_posts.pop(message_id, None)

    def _parse(self, body: dict) -> GroupMessage:
        content = body.get('content', '')
        group_id = body.get('group_id') or body.get('group_name')
        images = self._images(body.get('images'))
        if not isinstance(content, str) or not (content.strip() or images):
            raise CallbackRejected(400, '"content" must be a non-empty string (or send "images")')
        if not isinstance(group_id, str) or not group_id:
            raise CallbackRejected(400, 'give "group_id" or "group_name" (a string)')
        fields = {k: body.get(k, '') for k in ('group_name', 'sender', 'message_id', 'quote')}
        if not all(isinstance(v, str) for v in fields.values()):
            raise CallbackRejected(400, '"group_name", "sender", "message_id" and "quote" must be strings')
        return GroupMessage(group_id=group_id, text=strip_mentions(content), sender_id=fields['sender'],
                            group_name=fields['group_name'], quote=fields['quote'].strip(),
                            # Our own id keys the waiting request; the app's id is echoed back.
                            message_id=uuid.uuid4().hex, platform_ids={'client_id': fields['message_id']},
                            images=images)

    def _images(self, value) -> list[bytes]:
        """Our format's optional "images": a list of base64-encoded image files (a screenshot with the question)."""
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise CallbackRejected(400, '"images" must be a list of base64 strings')
        if len(value) > self.images.max_images:
            raise CallbackRejected(400, f'at most {self.images.max_images} images per message, got {len(value)}')
        images = []
        for number, encoded in enumerate(value, 1):
            # base64 is 4 characters for 3 bytes: refuse before decoding what would be too large.
            if len(encoded) * 3 // 4 > self.images.max_bytes:
                raise CallbackRejected(413, f'image {number} is over [ocr] max_image_mb '
                                            f'({self.images.max_bytes} bytes)')
            try:
                images.append(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError):
                raise CallbackRejected(400, f'image {number} is not valid base64') from None
        # Accepted but not read when [worker] ocr = 0: the text still gets its answer.
        return images if self.images.enabled else []

    async def _handle_sync(self, message: GroupMessage) -> web.Response:
        future: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._waiting[message.message_id] = future
        if not self.dispatcher.submit(message) and self.dispatcher.closed:
            self._waiting.pop(message.message_id, None)
            return web.json_response({'error': 'shutting down'}, status=503)
        client_id = message.platform_ids['client_id']
        try:
            outcome = await asyncio.wait_for(asyncio.shield(future), self.config.reply_timeout)
        except asyncio.TimeoutError:
            self._give_up(message)
            return web.json_response({'status': 'timeout', 'reply': '', 'references': [], 'message_id': client_id})
        finally:
            self._waiting.pop(message.message_id, None)
        if outcome is None:
            return web.json_response({'error': 'shutting down'}, status=503)
        return web.json_response({'status': outcome.status.value, 'reply': outcome.reply,
                                  'references': outcome.references, 'message_id': client_id})

    def _give_up(self, message: GroupMessage) -> None:
        # Nobody will read this answer: free the group's worker for the messages behind it.
        stopped = self.dispatcher.cancel(message.message_id)
        logger.warning('wechat_personal: no answer for group {} message {} within {}s; {}', message.group_id,
                       message.message_id, self.config.reply_timeout,
                       'stopped its work' if stopped else 'it was not queued or running')

    async def _on_outcome(self, outcome: Outcome) -> None:
        post = self._app_posts.pop(outcome.message.message_id, None)
        if post is not None:
            if outcome.status is OutcomeStatus.CANCELLED:
                await self.inbox.skipped([outcome.message.message_id], outcome.status.value)
            else:
                await self.polled.put(post.group_id, PolledItem(post, answer_for(outcome)),
                                      settles=outcome.message.message_id)
            return
        future = self._waiting.get(outcome.message.message_id)
        if future is not None and not future.done():
            future.set_result(outcome)


async def run_wechat_personal(frontend: FrontendConfig, responder: Responder,
                              images: ImageLimits = ImageLimits(), state_dir: str | Path | None = None) -> None:
    """Serve until cancelled; `state_dir` (the workdir) keeps the app's posts and answers across restarts."""
    await WechatPersonalServer(frontend, responder, images=images, state_dir=state_dir).serve_forever()
