"""The `wechat_personal` frontend: an HTTP endpoint for the Android helper app that reads group chats.

The app POSTs one group message per request and posts back whatever `reply` the response holds;
the JSON format is documented in docs/frontend_wechat_personal.md. Nothing here drives WeChat itself.
"""
from __future__ import annotations

import asyncio
import hmac
import uuid

from aiohttp import web
from loguru import logger

from huixiangdou.config import FrontendConfig, WechatPersonalConfig
from huixiangdou.frontend.callback_body import read_json_body, rejection_response
from huixiangdou.frontend.callback_server import CallbackServer
from huixiangdou.frontend.errors import CallbackRejected
from huixiangdou.frontend.group_dispatcher import GroupDispatcher
from huixiangdou.frontend.group_message import GroupMessage, Outcome, Responder


class WechatPersonalServer(CallbackServer):
    """Answers each POSTed message in the response body (the request waits for the worker).

    Request:  {"group_id": "...", "group_name": "...", "sender": "...", "content": "...", "message_id": "..."}
    Response: {"status": "answered", "reply": "...", "references": [...], "message_id": "..."}
    `status` is one of answered, silent, merged, rate_limited, queue_full, failed, timeout; only
    "answered" carries a reply the app should post.

    Usage:
        server = WechatPersonalServer(config.frontend, worker)
        port = await server.start()
    """

    name = 'wechat_personal'

    def __init__(self, frontend: FrontendConfig, responder: Responder, *, port: int | None = None):
        self.frontend = frontend
        self.config: WechatPersonalConfig = frontend.wechat_personal
        super().__init__(self.config.host, self.config.bind_port if port is None else port)
        self.dispatcher = GroupDispatcher.from_config(frontend, responder, self._on_outcome)
        self._waiting: dict[str, asyncio.Future[Outcome | None]] = {}
        if not self.config.token:
            logger.warning('wechat_personal: token is empty, so anyone who can reach port {} can make the '
                           'bot talk; set [frontend.wechat_personal] token', self.port)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.frontend.max_body_size)
        app.router.add_post(self.config.path, self.handle)
        return app

    async def before_stop(self) -> None:
        await self.dispatcher.abort()
        for future in self._waiting.values():
            if not future.done():
                future.set_result(None)  # read by handle() as "shutting down"

    def _check_token(self, request: web.Request) -> None:
        if not self.config.token:
            return
        given = request.headers.get('Authorization', '')
        if not hmac.compare_digest(given.encode(), f'Bearer {self.config.token}'.encode()):
            raise CallbackRejected(401, 'missing or wrong token: send "Authorization: Bearer <token>"')

    @staticmethod
    def _parse(body: dict) -> GroupMessage:
        content = body.get('content')
        group_id = body.get('group_id') or body.get('group_name')
        if not isinstance(content, str) or not content.strip():
            raise CallbackRejected(400, '"content" must be a non-empty string')
        if not isinstance(group_id, str) or not group_id:
            raise CallbackRejected(400, 'give "group_id" or "group_name" (a string)')
        fields = {k: body.get(k, '') for k in ('group_name', 'sender', 'message_id')}
        if not all(isinstance(v, str) for v in fields.values()):
            raise CallbackRejected(400, '"group_name", "sender" and "message_id" must be strings')
        return GroupMessage(group_id=group_id, text=content.strip(), sender_id=fields['sender'],
                            sender_name=fields['sender'], group_name=fields['group_name'],
                            # Our own id keys the waiting request; the app's id is echoed back.
                            message_id=uuid.uuid4().hex, platform_ids={'client_id': fields['message_id']})

    async def handle(self, request: web.Request) -> web.Response:
        try:
            self._check_token(request)
            _, body = await read_json_body(request, self.frontend.max_body_size)
            message = self._parse(body)
        except CallbackRejected as exc:
            logger.warning('wechat_personal: rejected request from {}: {} {}', request.remote, exc.status, exc.reason)
            return rejection_response(exc)
        future: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._waiting[message.message_id] = future
        if not self.dispatcher.submit(message) and self.dispatcher.closed:
            self._waiting.pop(message.message_id, None)
            return web.json_response({'error': 'shutting down'}, status=503)
        client_id = message.platform_ids['client_id']
        try:
            outcome = await asyncio.wait_for(asyncio.shield(future), self.config.reply_timeout)
        except asyncio.TimeoutError:
            logger.warning('wechat_personal: no answer for group {} within {}s', message.group_id,
                           self.config.reply_timeout)
            return web.json_response({'status': 'timeout', 'reply': '', 'references': [], 'message_id': client_id})
        finally:
            self._waiting.pop(message.message_id, None)
        if outcome is None:
            return web.json_response({'error': 'shutting down'}, status=503)
        return web.json_response({'status': outcome.status.value, 'reply': outcome.reply,
                                  'references': outcome.references, 'message_id': client_id})

    async def _on_outcome(self, outcome: Outcome) -> None:
        future = self._waiting.get(outcome.message.message_id)
        if future is not None and not future.done():
            future.set_result(outcome)


async def run_wechat_personal(frontend: FrontendConfig, responder: Responder) -> None:
    await WechatPersonalServer(frontend, responder).serve_forever()
