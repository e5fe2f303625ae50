"""Start/stop plumbing shared by the frontends that receive HTTP callbacks (Lark app, WeChat, wkteam),
and the secure-by-default check that refuses an exposed endpoint with neither a token nor a secret path.

Subclasses build the aiohttp app and own the dispatcher; this module only checks, binds, serves and shuts down.
"""
from __future__ import annotations

import asyncio
import re
import secrets

from aiohttp import web
from loguru import logger

from huixiangdou.frontend.errors import FrontendError
from huixiangdou.primitive.protocol_log import quiet_protocol_errors
from huixiangdou.primitive.request_body import BODY_TIMEOUT as REQUEST_BODY_TIMEOUT
from huixiangdou.primitive.host_allowlist import is_loopback

# A slow client must not hold a connection open for ever (slowloris). Headers: the request line and
# headers must arrive within HEADER_TIMEOUT of the connection opening (or of the previous response on a
# kept-alive connection), which is also how long an idle connection is kept. Body: once the headers are
# in, the whole body must arrive within BODY_TIMEOUT (else 408), as on the console and the LLM server.
HEADER_TIMEOUT = 75.0
BODY_TIMEOUT = REQUEST_BODY_TIMEOUT
# A path segment that works as a shared secret: long, URL-safe, and not a word someone would guess.
SECRET_SEGMENT_MIN_LENGTH = 16
_URL_SAFE = re.compile(r'[A-Za-z0-9_-]+')


def is_secret_path(path: str) -> bool:
    """Whether the last segment of `path` looks like a random token (e.g. secrets.token_urlsafe(18)).

    A heuristic: at least 16 URL-safe characters, at least 10 distinct ones, mixing at least two of
    lower case, upper case and digits. `/huixiangdou/message` or `/hook-for-my-wechat-bot` fail it.
    """
    segment = path.rstrip('/').rsplit('/', 1)[-1]
    if len(segment) < SECRET_SEGMENT_MIN_LENGTH or not _URL_SAFE.fullmatch(segment):
        return False
    classes = sum(any(test(c) for c in segment) for test in (str.islower, str.isupper, str.isdigit))
    return len(set(segment)) >= 10 and classes >= 2


def suggest_secret_path(prefix: str = '/huixiangdou') -> str:
    return f'{prefix}/{secrets.token_urlsafe(18)}'


def require_protected(name: str, section: str, host: str, token: str, path: str, path_key: str = 'path') -> None:
    """Refuse to serve on a non-loopback host with neither a token nor a secret path (secure by default).

    Called at start, not at config load, so a config for another frontend still loads.
    """
    if is_loopback(host) or token or is_secret_path(path):
        return
    raise FrontendError(
        f'{name}: refusing to listen on {host} with an empty token and the guessable path {path!r}: anyone '
        f'who can reach the port could make the bot talk. In config.ini [{section}] set {path_key} = '
        f'"{suggest_secret_path()}" (a fresh random path; give the full URL only to the helper app), '
        f'or set token, or set host = "127.0.0.1" to accept local requests only.')


class CallbackServer:
    """Binds `build_app()` to host:port. Subclasses set `name`, `host`, `port` and implement build_app.

    `header_timeout` and `body_timeout` (seconds) cut off slow clients; handlers pass `body_timeout` to
    callback_body's readers. Tests lower them on the instance before start().
    """

    name = 'callback'
    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:  # pragma: no cover - abstract
        raise NotImplementedError

    async def warm_up(self) -> None:
        """Open clients and log in before serving; default: nothing to do."""

    async def start(self) -> int:
        """Serve on host:port and return the bound port (a configured 0 picks a free one)."""
        # aiohttp arms keepalive_timeout when a connection opens and re-arms it after each response, and
        # closes the connection if no complete request head arrived by then: a header deadline.
        quiet_protocol_errors()
        self._runner = web.AppRunner(self.build_app(), access_log=None, keepalive_timeout=self.header_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(exc.errno, f'{self.name}: cannot listen on {self.host}:{self.port} ({exc.strerror}); '
                                     'free the port or change it in config.ini') from None
        sockets = site._server.sockets if site._server else []  # noqa: SLF001 - no public accessor in aiohttp
        if sockets:
            self.port = sockets[0].getsockname()[1]
        logger.info('{}: listening on {}:{}', self.name, self.host, self.port)
        return self.port

    async def before_stop(self) -> None:
        """Release requests still waiting on an answer so shutdown does not wait for them."""

    async def close(self) -> None:
        """Release what warm_up opened; default: nothing."""

    async def stop(self) -> None:
        await self.before_stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.close()

    async def serve_forever(self) -> None:
        """warm_up, start, and serve until cancelled; always stops cleanly."""
        await self.warm_up()
        try:
            # Inside: a start that fails (the port is taken) must still stop what it began, such as the
            # replayed messages already queued and the inbox's thread.
            await self.start()
            await asyncio.Event().wait()
        finally:
            await self.stop()
