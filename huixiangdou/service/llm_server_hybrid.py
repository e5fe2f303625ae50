"""The hybrid LLM server: one aiohttp app offering the local and the remote backend through
POST /inference, the OpenAI wire format (llm/openai_api.py) and GET /health, behind an optional API key
(wrong keys throttled per client address) and a Host check against DNS rebinding.

It does not generate or retry itself (huixiangdou.service.llm does); `python -m` runs it from config.ini.
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from loguru import logger

from huixiangdou.config import Config, ConfigError, LLMConfig, LLMServerConfig, load_config
from huixiangdou.primitive.failure_throttle import FailureThrottle
from huixiangdou.primitive.protocol_log import quiet_protocol_errors
from huixiangdou.primitive.host_allowlist import HostAllowList
from huixiangdou.primitive.json_input import InvalidJson, parse_json_object
from huixiangdou.primitive.request_body import MalformedBody, body_deadline, finish_malformed, reading_body
from huixiangdou.service.llm import openai_api
from huixiangdou.service.llm.backend import (BadRequest, ChatMessage, GenerationParams, LLMBackend, LLMError,
                                             RateLimited, Unauthorized)
from huixiangdou.service.llm.openai_api import (BACKEND_HEADER, ROUTER_KEY, SERVICE_NAME, error_response,
                                                parse_message, positive_int)
from huixiangdou.service.llm.router import BACKEND_CHOICES, Router
from huixiangdou.primitive.host_allowlist import is_loopback

MAX_BODY_KEY = web.AppKey('max_body_size', int)
API_KEY_KEY = web.AppKey('api_key', str)
THROTTLE_KEY = web.AppKey('api_key_throttle', FailureThrottle)
ALLOWED_HOSTS_KEY = web.AppKey('allowed_hosts', HostAllowList)
# The start_server probe and load balancers check liveness without a key; it reveals only model names.
OPEN_PATHS = ('/health',)


class UnsafeBind(Exception):
    """The server would listen beyond this machine without an API key."""


def build_backends(config: LLMConfig) -> dict[str, LLMBackend]:
    """The enabled backends, validated but not warmed up."""
    backends: dict[str, LLMBackend] = {}
    if config.enable_local:
        from huixiangdou.service.llm.local_transformers import LocalTransformersBackend
        backends['local'] = LocalTransformersBackend(config.server)
    if config.enable_remote:
        from huixiangdou.service.llm.openai_compatible import OpenAICompatibleBackend
        backends['remote'] = OpenAICompatibleBackend(config.server)
    return backends


def check_bind(config: LLMServerConfig) -> None:
    """Refuse to serve other machines without [llm.server] api_key (the models and upstream keys are ours)."""
    if config.api_key or is_loopback(config.host):
        return
    raise UnsafeBind(f'[llm.server] host = "{config.host}" accepts connections from other machines, so '
                     '[llm.server] api_key must be set (clients then send "Authorization: Bearer <api_key>"); '
                     f'for example api_key = "{secrets.token_urlsafe(32)}". Or bind host = "127.0.0.1".')


@web.middleware
async def errors_as_json(request: web.Request, handler):
    """Every failure becomes OpenAI's error JSON; nothing unexpected reaches the client as a traceback."""
    try:
        return await handler(request)
    except LLMError as exc:
        return error_response(exc)
    except (MalformedBody, web.RequestPayloadError) as exc:
        # A body that does not decode (Content-Encoding): the rest of it cannot be read either.
        status, message = (exc.status, exc.message) if isinstance(exc, MalformedBody) else (400, str(exc))
        return finish_malformed(request, error_response(BadRequest(
            message, status=status, code={413: 'body_too_large', 415: 'unsupported_encoding'}.get(status, 'bad_body'))))
    except web.HTTPRequestEntityTooLarge:
        return error_response(BadRequest(f'request body is larger than {request.app[MAX_BODY_KEY]} bytes: '
                                         'shorten the prompt or raise [llm.server] max_body_size',
                                         status=413, code='body_too_large'))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = 'not_found' if exc.status == 404 else 'http_error'
        return error_response(BadRequest(exc.reason, status=exc.status, code=code))
    except Exception:  # a bug of ours: log it with its traceback, answer without one
        logger.exception(f'{request.method} {request.path} failed')
        return error_response(LLMError('internal error; the server log has the details', status=500,
                                       code='internal_error'))


@web.middleware
async def refuse_foreign_host(request: web.Request, handler):
    """421 unless Host names this server: a page on another site that rebinds its own name to 127.0.0.1
    would otherwise use a keyless loopback server (and its upstream key) through a visitor's browser."""
    host = request.headers.get('Host')
    if not request.app[ALLOWED_HOSTS_KEY].allows(host):
        raise BadRequest(f'this server does not answer to the host {host[:100]!r}: use the address it is bound '
                         'to, or add the name to [llm.server] allowed_hosts', status=421, code='unknown_host')
    return await handler(request)


@web.middleware
async def require_api_key(request: web.Request, handler):
    expected = request.app[API_KEY_KEY]
    if expected and request.path not in OPEN_PATHS:
        header = request.headers.get('Authorization')
        scheme, _, given = (header or '').partition(' ')
        # aiohttp keeps undecodable header bytes as lone surrogates; surrogatepass gives bytes back for any.
        given_bytes = given.strip().encode('utf-8', 'surrogatepass')
        matches = scheme.lower() == 'bearer' and hmac.compare_digest(given_bytes, expected.encode())
        if header is not None:  # a request without a key guesses nothing; one with a key is throttled
            matches = key_accepted(request, matches)
        if not matches:
            raise Unauthorized('missing or wrong API key: send "Authorization: Bearer <[llm.server] api_key>"')
    return await handler(request)


def key_accepted(request: web.Request, matches: bool) -> bool:
    """`matches`, counted against the client's address; 429 with Retry-After while it is locked out
    (whatever it sends, so that the lockout slows guessing down)."""
    throttle, address = request.app[THROTTLE_KEY], request.remote
    wait = throttle.retry_after(address)
    if wait:
        refused = RateLimited(f'too many wrong API keys from {address}: wait Retry-After seconds before trying '
                              'again', retry_after=wait)
        refused.code = 'too_many_attempts'
        raise refused
    if matches:
        throttle.succeeded(address)
        return True
    lockout = throttle.failed(address)
    # Never the key itself: a near miss in the log would help whoever reads it.
    # The raw (still percent-encoded) path: a decoded %0A would let a client forge log lines.
    logger.warning('wrong API key from {} on {} {} ({} in a row{})', address, request.method, request.raw_path[:200],
                   throttle.failures(address), f'; locked out for {lockout:g} s' if lockout else '')
    return False


async def read_json(request: web.Request) -> dict:
    async with body_deadline():  # a body that never completes: 408, not a connection held for ever
        with reading_body(request):
            raw = await request.read()  # raises 413 past client_max_size
    try:
        return parse_json_object(raw)
    except InvalidJson as exc:
        raise BadRequest(str(exc)) from None


def parse_history(history) -> list[ChatMessage]:
    """History as [{role, content}, ...] or as [[user, assistant], ...] pairs (the HuixiangDou form)."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise BadRequest('history must be a list', param='history')
    messages = []
    for i, item in enumerate(history):
        if isinstance(item, dict):
            messages.append(parse_message(item, f'history[{i}]'))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            messages += [ChatMessage('user', item[0]), ChatMessage('assistant', item[1])]
        else:
            raise BadRequest(f'history[{i}] must be {{"role", "content"}} or a [user, assistant] pair',
                             param=f'history[{i}]')
    return messages


async def inference(request: web.Request) -> web.Response:
    body = await read_json(request)
    prompt = body.get('prompt')
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest('prompt must be a non-empty string', param='prompt')
    backend = body.get('backend', 'auto')
    if backend not in BACKEND_CHOICES:
        raise BadRequest(f'backend must be one of {", ".join(BACKEND_CHOICES)}, got {backend!r}', param='backend')
    messages = parse_history(body.get('history')) + [ChatMessage('user', prompt)]
    params = GenerationParams(max_new_tokens=positive_int(body.get('max_new_tokens'), 'max_new_tokens'))
    started = time.perf_counter()
    generation = await request.app[ROUTER_KEY].generate(messages, backend, params)
    logger.debug(f'/inference backend={generation.backend} seconds={time.perf_counter() - started:.3f}')
    return web.json_response({'text': generation.text, 'backend': generation.backend, 'model': generation.model},
                             headers={BACKEND_HEADER: generation.backend})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await openai_api.chat_completions(request, await read_json(request))


async def health(request: web.Request) -> web.Response:
    router = request.app[ROUTER_KEY]
    return web.json_response({'status': 'ok', 'service': SERVICE_NAME,
                              'backends': {name: b.model for name, b in router.backends.items()}})


def create_app(config: LLMConfig, router: Router | None = None) -> web.Application:
    """The aiohttp app. Without `router`, backends are built from config and warmed up on startup.

    Usage (tests pass an already warmed router to share one loaded model):
        runner = web.AppRunner(create_app(config.llm)); await runner.setup()
    """
    quiet_protocol_errors()
    app = web.Application(client_max_size=config.server.max_body_size,
                          middlewares=[errors_as_json, refuse_foreign_host, require_api_key])
    app[MAX_BODY_KEY] = config.server.max_body_size
    app[API_KEY_KEY] = config.server.api_key
    app[THROTTLE_KEY] = FailureThrottle()
    # The name our own client uses ([llm] client_url, e.g. a compose service name) is this server's too.
    client_host = urlsplit(config.client_url).hostname or ''
    app[ALLOWED_HOSTS_KEY] = HostAllowList.for_server(config.server.host,
                                                      [*config.server.allowed_hosts, client_host])
    owns_router = router is None

    async def start(app: web.Application) -> None:
        nonlocal router
        if router is None:
            backends = build_backends(config)
            # Loading a model takes seconds; keep the loop free meanwhile.
            loop = asyncio.get_running_loop()
            for backend in backends.values():
                await loop.run_in_executor(None, backend.warm_up)
            router = Router(backends)
        app[ROUTER_KEY] = router

    async def stop(app: web.Application) -> None:
        if owns_router and ROUTER_KEY in app:
            await app[ROUTER_KEY].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post('/inference', inference)
    app.router.add_post('/v1/chat/completions', chat_completions)
    app.router.add_get('/v1/models', openai_api.list_models)
    app.router.add_get('/v1/models/{model:.+}', openai_api.get_model)  # ids like Qwen/Qwen2.5 hold slashes
    app.router.add_get('/health', health)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m huixiangdou.service.llm_server_hybrid',
        description='Serve the local and remote LLM backends over HTTP: POST /inference, '
                    'POST /v1/chat/completions (OpenAI format), GET /v1/models, GET /health.')
    # --config_path: upstream HuixiangDou's spelling.
    parser.add_argument('--config', '--config_path', dest='config', type=Path, default=Path('config.ini'),
                        help='path to config.ini (default: ./config.ini); [llm] and [llm.server] are read')
    parser.add_argument('--log-level', default='INFO', help='loguru level (default INFO)')
    parser.add_argument('--parent-pid', type=int, default=0,
                        help='exit when this process dies (set by main --standalone, so a killed parent '
                             'never leaves the server holding its port)')
    return parser.parse_args(argv)


def watch_parent(app: web.Application, parent_pid: int, interval: float = 1.0) -> None:
    """Stop gracefully once `parent_pid` is gone (the child is re-parented), however the parent died.

    Polling getppid works on every POSIX system, unlike Linux's PR_SET_PDEATHSIG.
    """

    async def watch():
        while os.getppid() == parent_pid:
            await asyncio.sleep(interval)
        logger.warning('parent process {} is gone: stopping the LLM server', parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)  # run_app's own graceful shutdown

    async def start(app: web.Application):
        task = asyncio.create_task(watch())
        yield
        task.cancel()

    app.cleanup_ctx.append(start)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper())
    try:
        config: Config = load_config(args.config)
    except ConfigError as exc:
        logger.error(str(exc))
        return 2
    server = config.llm.server
    try:
        check_bind(server)
    except UnsafeBind as exc:
        logger.error(f'LLM server will not start: {exc}')
        return 2
    try:
        app = create_app(config.llm)
        if args.parent_pid:
            watch_parent(app, args.parent_pid)
        logger.info(f'LLM server starting on http://{server.host}:{server.local_llm_bind_port}')
        # run_app turns SIGTERM / SIGINT into a graceful shutdown (cleanup hooks run).
        # handler_cancellation: when a client gives up, its generation stops instead of holding the
        # local model (and the queue behind it) until the server-side timeout.
        web.run_app(app, host=server.host, port=server.local_llm_bind_port, access_log=None,
                    print=None, shutdown_timeout=5.0, handler_cancellation=True)
    except (LLMError, ValueError) as exc:
        logger.error(f'LLM server cannot start: {exc}')
        return 1
    except OSError as exc:
        logger.error(f'cannot listen on {server.host}:{server.local_llm_bind_port}: {exc}; change '
                     '[llm.server] local_llm_bind_port or stop the process using it')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
