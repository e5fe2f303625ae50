"""A fake Lark Open Platform and custom-bot webhook: a real aiohttp app on 127.0.0.1 for the tests.

Speaks the documented JSON (code/msg envelopes, tenant tokens, reply, recall, bot info, webhook
signing), serves the images of messages as binary bodies (message resources), and can be told to fail
or hang; it checks signatures itself rather than trusting our code.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field

from aiohttp import web

TOKEN_INVALID = 99991663
# Lark's codes for a resource request that names no resource of the message, or a bad `type`.
RESOURCE_NOT_IN_MESSAGE = 234003
RESOURCE_BAD_PARAM = 234001


@dataclass
class RecordedReply:
    message_id: str      # the message replied to
    body: dict           # the request body as sent
    post: dict           # body["content"] decoded
    token: str
    new_message_id: str

    @property
    def text(self) -> str:
        lines = self.post['zh_cn']['content']
        return '\n'.join(''.join(el['text'] for el in line) for line in lines)


@dataclass
class FakeLark:
    app_id: str = 'cli_fake'
    app_secret: str = 'fake-app-secret'
    token_expire: int = 7200
    webhook_secret: str = ''
    bot_open_id: str = 'ou_bot'
    tokens_issued: list[str] = field(default_factory=list)
    replies: list[RecordedReply] = field(default_factory=list)
    recalls: list[str] = field(default_factory=list)
    webhook_posts: list[dict] = field(default_factory=list)
    # route name -> queued (http status, json body, headers) answers returned before normal service resumes;
    # status 0 drops the connection without an answer
    failures: dict[str, list[tuple[int, dict, dict]]] = field(default_factory=dict)
    reply_uuids: set[str] = field(default_factory=set)
    # every well-formed reply request, also those Lark drops for a repeated uuid: the message ids replied to
    reply_attempts: list[str] = field(default_factory=list)
    # message id -> (msg_type, content JSON string): what GET /im/v1/messages/{id} serves
    messages: dict[str, tuple[str, str]] = field(default_factory=dict)
    # (message id, image key) -> image bytes: what GET /im/v1/messages/{id}/resources/{key}?type=image serves
    resources: dict[tuple[str, str], bytes] = field(default_factory=dict)
    resource_requests: list[tuple[str, str]] = field(default_factory=list)
    # route names that never answer until the fake stops (a platform that hangs)
    hanging: set[str] = field(default_factory=set)

    def __post_init__(self):
        self._valid_tokens: set[str] = set()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.base_url = ''

    # ---- control ------------------------------------------------------------------------------
    def fail(self, route: str, status: int = 500, body: dict | None = None, times: int = 1,
             retry_after: str | None = None) -> None:
        """Make the next `times` calls to `route` (token, reply, recall, bot_info, get_message, resource, webhook)
        fail with `status`
        (and Retry-After when given); status 0 drops the connection."""
        answer = body if body is not None else {'code': 99991400 if status == 429 else 1, 'msg': 'injected failure'}
        headers = {'Retry-After': retry_after} if retry_after is not None else {}
        self.failures.setdefault(route, []).extend([(status, answer, headers)] * times)

    def invalidate_tokens(self) -> None:
        """Expire every issued token on the server side, as Lark does when it rotates them."""
        self._valid_tokens.clear()

    async def wait_until(self, predicate, timeout: float = 10.0) -> None:
        async def _wait():
            async with self._changed:
                await self._changed.wait_for(predicate)
        await asyncio.wait_for(_wait(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _injected(self, route: str, request: web.Request) -> web.Response | None:
        queued = self.failures.get(route)
        if queued:
            status, body, headers = queued.pop(0)
            if status == 0:
                request.transport.close()
                return web.Response()  # never reaches the client
            return web.json_response(body, status=status, headers=headers)
        return None

    async def _hang_if_told(self, route: str) -> None:
        if route in self.hanging:
            await self._stopping.wait()

    def _check_token(self, request: web.Request) -> tuple[str, web.Response | None]:
        auth = request.headers.get('Authorization', '')
        token = auth.removeprefix('Bearer ')
        if token not in self._valid_tokens:
            return token, web.json_response(
                {'code': TOKEN_INVALID, 'msg': 'Invalid access token for authorization.'}, status=400)
        return token, None

    # ---- routes -------------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        if (injected := self._injected('token', request)) is not None:
            return injected
        body = await request.json()
        if body.get('app_id') != self.app_id or body.get('app_secret') != self.app_secret:
            return web.json_response({'code': 10014, 'msg': 'app secret invalid'}, status=400)
        token = f't-fake-tenant-token-{len(self.tokens_issued) + 1}'
        self.tokens_issued.append(token)
        self._valid_tokens.add(token)
        await self._notify()
        return web.json_response({'code': 0, 'msg': 'ok', 'tenant_access_token': token,
                                  'expire': self.token_expire})

    async def _bot_info(self, request: web.Request) -> web.Response:
        if (injected := self._injected('bot_info', request)) is not None:
            return injected
        _, denied = self._check_token(request)
        if denied:
            return denied
        return web.json_response({'code': 0, 'msg': 'ok', 'bot': {'open_id': self.bot_open_id, 'app_name': 'fake'}})

    async def _reply(self, request: web.Request) -> web.Response:
        if (injected := self._injected('reply', request)) is not None:
            return injected
        token, denied = self._check_token(request)
        if denied:
            return denied
        body = await request.json()
        if body.get('msg_type') != 'post' or not isinstance(body.get('content'), str):
            return web.json_response({'code': 230001, 'msg': 'invalid message content'}, status=400)
        uuid = body.get('uuid', '')
        new_id = f'om_reply_{len(self.replies) + 1}'
        self.reply_attempts.append(request.match_info['message_id'])
        if uuid and uuid in self.reply_uuids:  # Lark drops a repeated uuid within an hour
            return web.json_response({'code': 0, 'msg': 'success', 'data': {'message_id': new_id}})
        self.reply_uuids.add(uuid)
        self.replies.append(RecordedReply(request.match_info['message_id'], body, json.loads(body['content']),
                                          token, new_id))
        await self._notify()
        return web.json_response({'code': 0, 'msg': 'success', 'data': {'message_id': new_id}})

    async def _get_message(self, request: web.Request) -> web.Response:
        """Lark's "get message content": {"code": 0, "data": {"items": [{message_id, msg_type, body: {content}}]}}."""
        if (injected := self._injected('get_message', request)) is not None:
            return injected
        _, denied = self._check_token(request)
        if denied:
            return denied
        message_id = request.match_info['message_id']
        if message_id not in self.messages:
            return web.json_response({'code': 230002, 'msg': 'message not found'}, status=400)
        msg_type, content = self.messages[message_id]
        return web.json_response({'code': 0, 'msg': 'success', 'data': {'items': [
            {'message_id': message_id, 'msg_type': msg_type, 'body': {'content': content}}]}})

    async def _resource(self, request: web.Request) -> web.Response:
        """Lark's "get message resource": the file as a binary body (Content-Type of the file) on success,
        a JSON {"code", "msg"} otherwise."""
        if (injected := self._injected('resource', request)) is not None:
            return injected
        await self._hang_if_told('resource')
        _, denied = self._check_token(request)
        if denied:
            return denied
        key = (request.match_info['message_id'], request.match_info['file_key'])
        self.resource_requests.append(key)
        if request.query.get('type') not in ('image', 'file'):
            return web.json_response({'code': RESOURCE_BAD_PARAM, 'msg': 'Invalid request param.'}, status=400)
        if key not in self.resources:
            return web.json_response({'code': RESOURCE_NOT_IN_MESSAGE, 'msg': 'File not in msg.'}, status=400)
        data = self.resources[key]
        return web.Response(body=data, content_type='image/png' if data.startswith(b'\x89PNG') else 'image/jpeg')

    async def _recall(self, request: web.Request) -> web.Response:
        if (injected := self._injected('recall', request)) is not None:
            return injected
        _, denied = self._check_token(request)
        if denied:
            return denied
        self.recalls.append(request.match_info['message_id'])
        await self._notify()
        return web.json_response({'code': 0, 'msg': 'success'})

    async def _webhook(self, request: web.Request) -> web.Response:
        if (injected := self._injected('webhook', request)) is not None:
            return injected
        body = await request.json()
        if self.webhook_secret:
            key = f"{body.get('timestamp', '')}\n{self.webhook_secret}".encode()
            expected = base64.b64encode(hmac.new(key, b'', hashlib.sha256).digest()).decode()
            if body.get('sign') != expected:
                return web.json_response({'code': 19021, 'msg': 'sign match fail or timestamp is not within '
                                                                 'one hour from current time'})
        if body.get('msg_type') not in ('text', 'post', 'interactive', 'image', 'share_chat'):
            return web.json_response({'code': 9499, 'msg': 'Bad Request'})
        self.webhook_posts.append(body)
        await self._notify()
        return web.json_response({'code': 0, 'msg': 'success', 'data': {}})

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post('/open-apis/auth/v3/tenant_access_token/internal', self._token)
        app.router.add_get('/open-apis/bot/v3/info', self._bot_info)
        app.router.add_post('/open-apis/im/v1/messages/{message_id}/reply', self._reply)
        app.router.add_delete('/open-apis/im/v1/messages/{message_id}', self._recall)
        app.router.add_get('/open-apis/im/v1/messages/{message_id}', self._get_message)
        app.router.add_get('/open-apis/im/v1/messages/{message_id}/resources/{file_key}', self._resource)
        app.router.add_post('/open-apis/bot/v2/hook/{hook}', self._webhook)
        return app

    async def start(self, port: int) -> str:
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, '127.0.0.1', port).start()
        self.base_url = f'http://127.0.0.1:{port}'
        return self.base_url

    @property
    def webhook_url(self) -> str:
        return f'{self.base_url}/open-apis/bot/v2/hook/fake-hook-id'

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
