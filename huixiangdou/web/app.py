"""The console's aiohttp application: middlewares, the pages (static files) and every route.

Usage:
    app = create_app(load_config('config.ini'))       # loads the worker on startup
    web.run_app(app, host='127.0.0.1', port=8080)
It wires the modules together; each concern's handlers live in their own module.
"""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from huixiangdou.config import DEFAULT_KNOWLEDGE_BASE, Config
from huixiangdou.primitive.failure_throttle import FailureThrottle, parse_networks
from huixiangdou.primitive.host_allowlist import HostAllowList
from huixiangdou.primitive.protocol_log import quiet_protocol_errors
from huixiangdou.web import auth
from huixiangdou.web.api_error import ApiError, errors_as_json
from huixiangdou.web.console import CONSOLE, Console

STATIC_DIR = Path(__file__).parent / 'static'
# JSON bodies (questions, examples, labels) are small; uploads stream past this limit with their own
# ([web] max_upload_mb, counted while they are read).
MAX_JSON_BODY = 1024 * 1024
ALLOWED_HOSTS = web.AppKey('allowed_hosts', HostAllowList)
# A longer file name (bytes) or path makes the file system fail (ENAMETOOLONG) inside aiohttp's static handler.
_MAX_STATIC_NAME_BYTES = 255
_MAX_STATIC_PATH_BYTES = 1024


async def index(request: web.Request) -> web.StreamResponse:
    page = STATIC_DIR / 'index.html'
    if not page.is_file():
        return web.Response(status=404, text='the console pages are missing from this installation '
                                             f'({page}): reinstall huixiangdou')
    return web.FileResponse(page, headers={'Cache-Control': 'no-cache'})


@web.middleware
async def refuse_foreign_host(request: web.Request, handler):
    """421 unless Host names this server: a page on another site that rebinds its own name to 127.0.0.1
    would otherwise read the console (the group messages) with the visitor's browser."""
    host = request.headers.get('Host')
    if not request.app[ALLOWED_HOSTS].allows(host):
        raise ApiError(421, 'unknown_host', f'this console does not answer to the host {host[:100]!r}: '
                       'open it at the address it is bound to, or add the name to [web] allowed_hosts')
    return await handler(request)


@web.middleware
async def static_names_fit(request: web.Request, handler):
    """404 for a /static/ path the file system cannot hold, before aiohttp's static handler fails on it."""
    if request.path.startswith('/static/'):
        encoded = request.path.encode('utf-8', 'surrogatepass')
        if len(encoded) > _MAX_STATIC_PATH_BYTES or any(len(p) > _MAX_STATIC_NAME_BYTES for p in encoded.split(b'/')):
            raise web.HTTPNotFound()
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler):
    response = await handler(request)
    # The pages load nothing from elsewhere; refuse framing and sniffing.
    response.headers.setdefault('X-Content-Type-Options', 'nosniff')
    response.headers.setdefault('X-Frame-Options', 'DENY')
    response.headers.setdefault('Referrer-Policy', 'no-referrer')
    if request.path == '/' or request.path.startswith('/static/'):
        response.headers.setdefault('Content-Security-Policy',
                                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                    "frame-ancestors 'none'")
    return response


def create_app(config: Config, worker=None, embedder=None, bind_host: str | None = None) -> web.Application:
    """The console app. Without `worker`, the default knowledge base's is loaded from config on startup (a
    missing store leaves the console up, read-only on answers, so it can be built from the Knowledge base
    page); the other knowledge bases' load on first use. `embedder` (already loaded, [feature_store]'s model)
    is shared by the builds and the workers. `bind_host` (default [web] host) is the address it is served at,
    a name the Host header may carry."""
    quiet_protocol_errors()
    app = web.Application(client_max_size=MAX_JSON_BODY,
                          middlewares=[security_headers, errors_as_json, refuse_foreign_host, static_names_fit,
                                       auth.require_credentials])
    app[ALLOWED_HOSTS] = HostAllowList.for_server(bind_host or config.web.host, config.web.allowed_hosts)
    app[auth.THROTTLE] = FailureThrottle()
    app[auth.PROXIES] = parse_networks(config.web.trusted_proxies)
    console = Console(config, embedder=embedder)
    default = console.kb(DEFAULT_KNOWLEDGE_BASE)
    if worker is not None:
        default.slot.swap_initial(worker)
    app[CONSOLE] = console
    app[auth.SESSIONS] = auth.Sessions(config.web.resolved_admin_token)
    app[auth.PROTECT_API] = bool(config.web.protect_api)

    async def start(app: web.Application) -> None:
        if default.slot.worker is None:
            await console.ready(default)

    async def stop(app: web.Application) -> None:
        if worker is not None:
            default.slot.worker = None  # the caller's: it closes it
        await console.close()  # builds cancelled, not waited for: SIGTERM must stop the console mid-build

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get('/', index)
    if STATIC_DIR.is_dir():
        app.router.add_static('/static/', STATIC_DIR, show_index=False, follow_symlinks=False)
    auth.add_routes(app)
    from huixiangdou.web import (ask, assistant_api, examples, integrations, knowledge_base, knowledge_bases_api,
                                 messages)

    for module in (knowledge_base, examples, ask, messages, integrations, assistant_api, knowledge_bases_api):
        module.add_routes(app)
    return app
