"""A small client for the wkteam WeChat API: log in, send a group text, revoke a sent message, download a
received image, each under the shared retry policy (primitive/http_retry.py).

Shapes as documented in docs/frontend_wechat_wkteam.md (success is code "1000"); no callback handling here.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from loguru import logger

from huixiangdou.frontend.errors import WkteamApiError
from huixiangdou.frontend.message_images import read_limited
from huixiangdou.primitive.http_retry import RetryPolicy, TransientFailure, parse_retry_after, send_with_retry, \
    transient_status

SUCCESS = '1000'
# A send has no idempotency key: retried only when the request surely did not reach wkteam's handler.
NOT_SERVED_STATUSES = frozenset({429, 503})


@dataclass
class SentMessage:
    """What wkteam returns for a sent message; all three ids are needed to revoke it."""
    group_id: str
    msg_id: int
    new_msg_id: int
    create_time: int


class WkteamApi:
    """Usage:
        api = WkteamApi('http://api.wkteam.cn', api_token=token)
        await api.warm_up()
        sent = await api.send_text(wid, '43925126702@chatroom', 'pip install huixiangdou')
        await api.revoke(wid, sent)
    """

    def __init__(self, base_url: str, *, api_token: str = '', account: str = '', password: str = '',
                 timeout: float = 10.0, max_retries: int = 2, retry_delay: float = 0.5,
                 retry_max_delay: float = 30.0):
        if not base_url.startswith(('http://', 'https://')):
            raise ValueError(f'[frontend.wechat_wkteam] base_url must start with http(s)://, got {base_url!r}')
        if not api_token and not (account and password):
            raise ValueError('[frontend.wechat_wkteam] set api_token, or account and password to log in')
        self.base_url = base_url.rstrip('/')
        self._token = api_token
        self.account = account
        self._password = password
        self.timeout = timeout
        self.retry = RetryPolicy.from_retries(max_retries, retry_delay, retry_max_delay)
        self._http: aiohttp.ClientSession | None = None

    async def warm_up(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        if not self._token:
            await self.login()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _post(self, path: str, action: str, body: dict, *, idempotent: bool = False) -> dict:
        """The answer's JSON under the retry policy; WkteamApiError when wkteam refuses or retries run out.

        `idempotent` calls (login) retry every transient failure; others only those where nothing was sent
        (the connection could not be opened, or 429 / 503), so a lost answer never posts a text twice.
        """
        if self._http is None:
            raise RuntimeError('WkteamApi.warm_up() must be called before use')
        try:
            return await send_with_retry(self.retry, lambda: self._post_once(path, action, body, idempotent),
                                         service=f'wkteam {action}')
        except TransientFailure as failure:
            logger.error('wkteam {} failed after {} attempt(s): {}', action, failure.attempts, failure.error)
            raise failure.error from None

    async def _post_once(self, path: str, action: str, body: dict, idempotent: bool) -> dict:
        headers = {'Authorization': self._token} if self._token else {}
        try:
            async with self._http.post(self.base_url + path, json=body, headers=headers) as resp:
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get('Retry-After'))
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = WkteamApiError(action, 'network', f'{type(exc).__name__}: {exc}')
            if idempotent or isinstance(exc, aiohttp.ClientConnectorError):
                raise TransientFailure(error) from None
            raise error from None
        if not isinstance(data, dict):
            error = WkteamApiError(action, f'http {status}', 'response is not JSON')
            if transient_status(status) and (idempotent or status in NOT_SERVED_STATUSES):
                raise TransientFailure(error, retry_after)
            raise error
        if str(data.get('code')) != SUCCESS:
            raise WkteamApiError(action, data.get('code', ''), str(data.get('message', '')))
        return data

    async def login(self) -> None:
        data = await self._post('/member/login', 'login', {'account': self.account, 'password': self._password},
                                idempotent=True)
        token = (data.get('data') or {}).get('Authorization', '')
        if not token:
            raise WkteamApiError('login', 'empty', 'no Authorization in the login answer')
        self._token = token
        logger.info('wkteam: logged in as {}', self.account)

    async def send_text(self, wid: str, group_id: str, content: str) -> SentMessage:
        data = await self._post('/sendText', 'sendText', {'wId': wid, 'wcId': group_id, 'content': content})
        sent = data.get('data') or {}
        return SentMessage(group_id=group_id, msg_id=int(sent.get('msgId', 0)),
                           new_msg_id=int(sent.get('newMsgId', 0)), create_time=int(sent.get('createTime', 0)))

    async def message_image(self, wid: str, msg_id: str, content: str, max_bytes: int) -> bytes:
        """The bytes of a received image: getMsgImg answers a download URL for the push's msgId and XML,
        which is then fetched (ImageTooLarge past `max_bytes`, WkteamApiError if refused)."""
        # wkteam sends msgId as a number and wants it back as one; type 0 = the normal (not HD) image.
        number = int(msg_id) if msg_id.isdigit() else msg_id
        data = await self._post('/getMsgImg', 'getMsgImg', {'wId': wid, 'msgId': number, 'content': content,
                                                            'type': 0}, idempotent=True)
        url = (data.get('data') or {}).get('url', '')
        if not isinstance(url, str) or not url.startswith(('http://', 'https://')):
            raise WkteamApiError('getMsgImg', 'no url', f'no download URL in the answer: {str(url)[:80]!r}')
        if self._http is None:
            raise RuntimeError('WkteamApi.warm_up() must be called before use')
        try:
            async with self._http.get(url) as resp:
                if resp.status != 200:
                    raise WkteamApiError('image download', f'http {resp.status}', url.split('?', 1)[0][-80:])
                return await read_limited(resp, max_bytes, 'wkteam image')
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise WkteamApiError('image download', 'network', f'{type(exc).__name__}: {exc}') from None

    async def revoke(self, wid: str, sent: SentMessage) -> None:
        await self._post('/revokeMsg', 'revokeMsg', {'wId': wid, 'wcId': sent.group_id, 'msgId': sent.msg_id,
                                                     'newMsgId': sent.new_msg_id, 'createTime': sent.create_time})
