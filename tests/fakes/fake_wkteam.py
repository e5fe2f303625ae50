"""A fake wkteam WeChat API (login, sendText, revokeMsg, getMsgImg and the image files it points to): a real
aiohttp app on 127.0.0.1 for the tests.

Success is {"code": "1000", "message": ..., "data": {...}} as documented in docs/frontend_wechat_wkteam.md;
calls can be told to fail or hang.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeWkteam:
    account: str = '13800000000'
    password: str = 'fake-password'
    token: str = 'fake-wkteam-token'
    sent: list[dict] = field(default_factory=list)
    revoked: list[dict] = field(default_factory=list)
    logins: int = 0
    failures: dict[str, list[dict]] = field(default_factory=dict)
    # route -> queued (http status, Retry-After) refusals before the route answers; status 0 drops the connection
    http_failures: dict[str, list[tuple[int, str | None]]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)  # route -> requests received
    # msgId of an image push -> the image's bytes: getMsgImg answers a URL on this fake that serves them
    images: dict[str, bytes] = field(default_factory=dict)
    image_requests: list[dict] = field(default_factory=list)   # getMsgImg bodies received
    # route names (getMsgImg, files) that never answer until the fake stops
    hanging: set[str] = field(default_factory=set)

    def __post_init__(self):
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.base_url = ''

    def fail(self, route: str, code: str = '1001', message: str = 'injected failure', times: int = 1) -> None:
        self.failures.setdefault(route, []).extend([{'code': code, 'message': message, 'data': None}] * times)

    def fail_http(self, route: str, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """The next `times` calls to `route` (login, sendText, revokeMsg, getMsgImg, files) get HTTP `status` with a non-JSON
        body, as a gateway in front of wkteam answers; status 0 drops the connection after reading the request."""
        self.http_failures.setdefault(route, []).extend([(status, retry_after)] * times)

    @web.middleware
    async def _gate(self, request: web.Request, handler):
        route = 'files' if request.path.startswith('/files/') else request.path.strip('/').split('/')[-1]
        self.calls[route] = self.calls.get(route, 0) + 1
        if route in self.hanging:
            await self._stopping.wait()
        queued = self.http_failures.get(route)
        if queued:
            status, retry_after = queued.pop(0)
            await request.read()
            if status == 0:
                request.transport.close()
                return web.Response()  # never reaches the client
            headers = {'Retry-After': retry_after} if retry_after is not None else {}
            return web.Response(status=status, text='<html>gateway error</html>', content_type='text/html',
                                headers=headers)
        return await handler(request)

    async def wait_until(self, predicate, timeout: float = 10.0) -> None:
        async def _wait():
            async with self._changed:
                await self._changed.wait_for(predicate)
        await asyncio.wait_for(_wait(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _denied(self, request: web.Request, route: str) -> web.Response | None:
        queued = self.failures.get(route)
        if queued:
            return web.json_response(queued.pop(0))
        if request.headers.get('Authorization') != self.token:
            return web.json_response({'code': '1001', 'message': 'Authorization invalid', 'data': None})
        return None

    async def _login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get('account') != self.account or body.get('password') != self.password:
            return web.json_response({'code': '1001', 'message': '账号或密码错误', 'data': None})
        self.logins += 1
        return web.json_response({'code': '1000', 'message': '登录成功',
                                  'data': {'Authorization': self.token, 'callbackUrl': ''}})

    async def _send_text(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request, 'sendText')) is not None:
            return denied
        body = await request.json()
        if not body.get('wId') or not body.get('wcId') or not body.get('content'):
            return web.json_response({'code': '1001', 'message': 'wId, wcId and content are required', 'data': None})
        number = len(self.sent) + 1
        data = {'type': 1, 'msgId': 1000 + number, 'newMsgId': 9_000_000 + number,
                'createTime': 1_700_000_000 + number, 'wcId': body['wcId']}
        self.sent.append({**body, **data})
        await self._notify()
        return web.json_response({'code': '1000', 'message': '发送成功', 'data': data})

    async def _revoke(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request, 'revokeMsg')) is not None:
            return denied
        body = await request.json()
        if not any(s['newMsgId'] == body.get('newMsgId') and s['msgId'] == body.get('msgId')
                   and s['createTime'] == body.get('createTime') for s in self.sent):
            return web.json_response({'code': '1001', 'message': 'message not found', 'data': None})
        self.revoked.append(body)
        await self._notify()
        return web.json_response({'code': '1000', 'message': '撤回成功', 'data': None})

    async def _get_msg_img(self, request: web.Request) -> web.Response:
        """wkteam's "download image": {"wId", "msgId", "content" (the push's XML), "type"} -> data.url."""
        if (denied := self._denied(request, 'getMsgImg')) is not None:
            return denied
        body = await request.json()
        self.image_requests.append(body)
        if not body.get('wId') or not body.get('msgId') or not body.get('content'):
            return web.json_response({'code': '1001', 'message': 'wId, msgId and content are required', 'data': None})
        msg_id = str(body['msgId'])
        if msg_id not in self.images:
            return web.json_response({'code': '1001', 'message': '图片不存在或已过期', 'data': None})
        return web.json_response({'code': '1000', 'message': '成功',
                                  'data': {'url': f'{self.base_url}/files/{msg_id}.jpg?Expires=600&sign=x'}})

    async def _file(self, request: web.Request) -> web.Response:
        """The storage behind getMsgImg's URL: plain bytes, or 404 when the file is gone."""
        msg_id = request.match_info['name'].rsplit('.', 1)[0]
        if msg_id not in self.images:
            return web.Response(status=404, text='NoSuchKey')
        return web.Response(body=self.images[msg_id], content_type='image/jpeg')

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post('/member/login', self._login)
        app.router.add_post('/sendText', self._send_text)
        app.router.add_post('/revokeMsg', self._revoke)
        app.router.add_post('/getMsgImg', self._get_msg_img)
        app.router.add_get('/files/{name}', self._file)
        return app

    async def start(self, port: int) -> str:
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, '127.0.0.1', port).start()
        self.base_url = f'http://127.0.0.1:{port}'
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
