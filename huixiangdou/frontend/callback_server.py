"""Start/stop plumbing shared by the frontends that receive HTTP callbacks (Lark app, WeChat, wkteam).

Subclasses build the aiohttp app and own the dispatcher; this class only binds, serves and shuts down.
"""
from __future__ import annotations

import asyncio

from aiohttp import web
from loguru import logger


class CallbackServer:
    """Binds `build_app()` to host:port. Subclasses set `name`, `host`, `port` and implement build_app."""

    name = 'callback'

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
        self._runner = web.AppRunner(self.build_app(), access_log=None)
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
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
