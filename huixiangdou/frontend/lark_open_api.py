"""A small client for the Lark Open Platform calls the group bot needs: token, bot info, reply, recall, read a
message and download its images.

Plain aiohttp instead of the lark-oapi SDK: a handful of calls do not justify a large synchronous-first
dependency, and a configurable base URL lets tests point it at a local fake. No event handling here.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Callable
from urllib.parse import quote

import aiohttp
from loguru import logger

from huixiangdou.frontend.errors import LarkApiError
from huixiangdou.frontend.lark_event import content_text
from huixiangdou.frontend.message_images import read_limited
from huixiangdou.primitive.http_retry import RetryPolicy, TransientFailure, parse_retry_after, send_with_retry, \
    transient_status

TOKEN_PATH = '/open-apis/auth/v3/tenant_access_token/internal'
# Codes meaning "your tenant_access_token is missing, invalid or expired": fetch a new one, try again.
TOKEN_INVALID_CODES = {99991661, 99991663, 99991664, 99991668}
# 99991400 = request frequency limit.
RETRYABLE_CODES = {99991400}


class LarkOpenApi:
    """Tenant-token-authenticated calls to `base_url` (https://open.feishu.cn or open.larksuite.com).

    The token is fetched on first use and cached until shortly before `expire`; a token the server
    rejects early is refreshed once and the call repeated.

    Usage:
        api = LarkOpenApi('cli_xxx', app_secret, 'https://open.feishu.cn')
        await api.warm_up()
        new_id = await api.reply('om_asked', {'zh_cn': {'title': '', 'content': [[...]]}})
        await api.recall(new_id)
    """

    def __init__(self, app_id: str, app_secret: str, base_url: str, *, timeout: float = 10.0,
                 max_retries: int = 2, retry_delay: float = 0.5, retry_max_delay: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        if not app_id or not app_secret:
            raise ValueError('[frontend.lark_group] app_id and app_secret are required: copy them from '
                             '"Credentials & Basic Info" of your app in the Lark developer console')
        if not base_url.startswith(('http://', 'https://')):
            raise ValueError(f'base_url must start with http:// or https://, got {base_url!r}')
        self.app_id = app_id
        self._app_secret = app_secret
        self.base_url = base_url.rstrip('/')
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry = RetryPolicy.from_retries(max_retries, retry_delay, retry_max_delay)
        self._clock = clock
        self._http: aiohttp.ClientSession | None = None
        self._token = ''
        self._token_refresh_at = 0.0
        self._token_lock = asyncio.Lock()

    async def warm_up(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _request(self, method: str, path: str, action: str, *, body: dict | None = None,
                       token: str = '', download_limit: int | None = None) -> dict | bytes:
        """One call; LarkApiError when Lark refuses for good, TransientFailure(LarkApiError) when another
        try may pass (frequency limit, 429, 5xx, network).

        With `download_limit` a 200 answer that is not JSON is a file: its bytes are returned, up to that
        many (ImageTooLarge past it); errors still come as JSON `{"code", "msg"}`.
        """
        await self.warm_up()
        assert self._http is not None
        headers = {'Authorization': f'Bearer {token}'} if token else {}
        try:
            async with self._http.request(method, self.base_url + path, json=body, headers=headers) as resp:
                status = resp.status
                # Lark's gateway says when the rate-limit window resets; Retry-After if a proxy sets it.
                retry_after = parse_retry_after(resp.headers.get('Retry-After')
                                                or resp.headers.get('x-ogw-ratelimit-reset'))
                if download_limit is not None and status == 200 and resp.content_type != 'application/json':
                    return await read_limited(resp, download_limit, f'lark {action}')
                try:
                    data = await resp.json(content_type=None)
                except (ValueError, json.JSONDecodeError):
                    data = None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransientFailure(LarkApiError(action, 'network', f'{type(exc).__name__}: {exc}',
                                                retryable=True)) from None
        # Lark's docs treat a 500 as "server busy, try again" like 502-504.
        transient = transient_status(status, transient_500=True)
        if not isinstance(data, dict):
            error = LarkApiError(action, f'http {status}', 'response is not JSON', retryable=transient)
        else:
            code = data.get('code', -1)
            if code == 0:
                return data
            error = LarkApiError(action, code, str(data.get('msg', '')),
                                 retryable=code in RETRYABLE_CODES or transient)
        if error.retryable:
            raise TransientFailure(error, retry_after)
        raise error

    async def _send(self, method: str, path: str, action: str, *, body: dict | None = None,
                    token: str = '') -> dict:
        """_request under the shared retry policy; the final failure is a LarkApiError."""
        try:
            return await send_with_retry(self.retry, lambda: self._request(method, path, action, body=body,
                                                                           token=token),
                                         service=f'lark {action}')
        except TransientFailure as failure:
            raise failure.error from None

    async def tenant_token(self, force: bool = False) -> str:
        """The cached tenant_access_token, fetched again when close to expiry or when forced."""
        async with self._token_lock:
            if force or not self._token or self._clock() >= self._token_refresh_at:
                data = await self._send('POST', TOKEN_PATH, 'tenant_access_token',
                                        body={'app_id': self.app_id, 'app_secret': self._app_secret})
                expire = float(data.get('expire', 0))
                self._token = str(data.get('tenant_access_token', ''))
                if not self._token:
                    raise LarkApiError('tenant_access_token', 'empty', 'no tenant_access_token in the answer')
                # Refresh a little early so a request never carries a token that expires in flight.
                self._token_refresh_at = self._clock() + expire - min(300.0, expire * 0.1)
                logger.info('lark: fetched tenant_access_token for app {} (valid {:.0f}s)', self.app_id, expire)
            return self._token

    async def call(self, method: str, path: str, action: str, body: dict | None = None,
                   failure_level: str = 'ERROR', download_limit: int | None = None) -> dict | bytes:
        """An authenticated call with one token refresh and the shared retry policy (rate limits, 5xx).

        `failure_level`: how loud a final failure is logged (WARNING where the caller carries on without).
        `download_limit`: the call answers a file (see _request).
        """
        refreshed = False

        async def attempt() -> dict | bytes:
            nonlocal refreshed
            token = await self.tenant_token()
            try:
                return await self._request(method, path, action, body=body, token=token,
                                           download_limit=download_limit)
            except LarkApiError as exc:
                if exc.code not in TOKEN_INVALID_CODES or refreshed:
                    raise
                # Not a failed attempt: the token expired early; fetch a new one and send again.
                logger.info('lark {}: token rejected (code={}); fetching a new one', action, exc.code)
                refreshed = True
                token = await self.tenant_token(force=True)
                return await self._request(method, path, action, body=body, token=token,
                                           download_limit=download_limit)

        try:
            return await send_with_retry(self.retry, attempt, service=f'lark {action}')
        except TransientFailure as failure:
            logger.log(failure_level, 'lark {} failed after {} attempt(s): code={} msg={}', action,
                       failure.attempts, failure.error.code, failure.error.msg)
            raise failure.error from None
        except LarkApiError as exc:
            logger.log(failure_level, 'lark {} failed: code={} msg={}', action, exc.code, exc.msg)
            raise

    async def bot_open_id(self) -> str:
        data = await self.call('GET', '/open-apis/bot/v3/info', 'bot info')
        open_id = (data.get('bot') or {}).get('open_id', '')
        if not open_id:
            raise LarkApiError('bot info', 'empty', 'no bot.open_id: enable the "Bot" feature of the app')
        return open_id

    async def reply(self, message_id: str, post: dict, *, in_thread: bool = True, uuid: str = '') -> str:
        """Reply to `message_id` with rich text; returns the new message's id.

        `uuid` makes Lark drop a second identical request within an hour, so a retry after a lost
        response does not post the answer twice.
        """
        body = {'msg_type': 'post', 'content': json.dumps(post, ensure_ascii=False),
                'reply_in_thread': in_thread}
        if uuid:
            body['uuid'] = uuid[:50]
        data = await self.call('POST', f'/open-apis/im/v1/messages/{message_id}/reply', 'reply', body)
        return str((data.get('data') or {}).get('message_id', ''))

    async def message_text(self, message_id: str) -> str:
        """The text of a text or post message ('' for other types); needs the im:message.group_msg scope."""
        data = await self.call('GET', f'/open-apis/im/v1/messages/{message_id}', 'get message',
                               failure_level='WARNING')
        items = (data.get('data') or {}).get('items') or []
        item = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
        body = item.get('body') if isinstance(item.get('body'), dict) else {}
        raw = body.get('content')
        text = content_text(str(item.get('msg_type', '')), raw if isinstance(raw, str) else '')
        return (text or '').strip()

    async def message_image(self, message_id: str, image_key: str, max_bytes: int) -> bytes:
        """The bytes of an image in a message the bot can see ("get message resource", `?type=image`);
        needs im:message or im:message:readonly. ImageTooLarge past `max_bytes`, LarkApiError if refused."""
        path = f'/open-apis/im/v1/messages/{quote(message_id, safe="")}/resources/{quote(image_key, safe="")}'
        data = await self.call('GET', f'{path}?type=image', 'get message image', failure_level='WARNING',
                               download_limit=max_bytes)
        if not isinstance(data, bytes):  # a 200 with {"code": 0} but no file
            raise LarkApiError('get message image', 'no file', 'the answer carried JSON, not the image')
        return data

    async def recall(self, message_id: str) -> None:
        await self.call('DELETE', f'/open-apis/im/v1/messages/{message_id}', 'recall')
