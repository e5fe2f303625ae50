"""The hybrid LLM server: one aiohttp app offering the local and the remote backend through
POST /inference, the OpenAI wire format (/v1/chat/completions, /v1/models) and GET /health.

It does not generate or retry itself (huixiangdou.service.llm does); `python -m` runs it from config.ini.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

from aiohttp import web
from loguru import logger

from huixiangdou.config import Config, ConfigError, LLMConfig, load_config
from huixiangdou.service.llm.backend import (ROLES, BadRequest, ChatMessage, LLMBackend, LLMError)
from huixiangdou.service.llm.rate_limit import estimate_tokens
from huixiangdou.service.llm.router import BACKEND_CHOICES, Router

SERVICE_NAME = 'huixiangdou-llm'
ROUTER_KEY = web.AppKey('router', Router)
MAX_BODY_KEY = web.AppKey('max_body_size', int)
BACKEND_HEADER = 'X-HuixiangDou-Backend'


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


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    """The OpenAI error shape, used by every endpoint so one client parser reads them all."""
    body = {'error': {'message': message, 'type': code, 'code': status}}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def errors_as_json(request: web.Request, handler):
    try:
        return await handler(request)
    except LLMError as exc:
        headers = None
        retry_after = getattr(exc, 'retry_after', None)
        if retry_after:
            headers = {'Retry-After': str(max(1, round(retry_after)))}
        return error_response(exc.status, exc.code, str(exc), headers)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, 'body_too_large', f'request body is larger than {request.app[MAX_BODY_KEY]} '
                              'bytes: shorten the prompt or raise [llm.server] max_body_size')
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, 'http_error', exc.reason)


async def read_json(request: web.Request) -> dict:
    raw = await request.read()  # raises 413 past client_max_size
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f'body is not valid JSON: {exc}') from None
    if not isinstance(body, dict):
        raise BadRequest('body must be a JSON object')
    return body


def parse_history(history) -> list[ChatMessage]:
    """History as [{role, content}, ...] or as [[user, assistant], ...] pairs (the HuixiangDou form)."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise BadRequest('history must be a list')
    messages = []
    for i, item in enumerate(history):
        if isinstance(item, dict):
            messages.append(parse_message(item, f'history[{i}]'))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            messages += [ChatMessage('user', item[0]), ChatMessage('assistant', item[1])]
        else:
            raise BadRequest(f'history[{i}] must be {{"role", "content"}} or a [user, assistant] pair')
    return messages


def parse_message(item, where: str) -> ChatMessage:
    if not isinstance(item, dict):
        raise BadRequest(f'{where} must be an object with role and content')
    role, content = item.get('role'), item.get('content')
    if role not in ROLES:
        raise BadRequest(f'{where}.role must be one of {", ".join(ROLES)}, got {role!r}')
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        content = ''.join(p.get('text', '') for p in content if isinstance(p, dict) and p.get('type') == 'text')
    if not isinstance(content, str):
        raise BadRequest(f'{where}.content must be a string')
    return ChatMessage(role, content)


def parse_max_tokens(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f'max tokens must be a positive integer, got {value!r}')
    return value


async def inference(request: web.Request) -> web.Response:
    body = await read_json(request)
    prompt = body.get('prompt')
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest('prompt must be a non-empty string')
    backend = body.get('backend', 'auto')
    if backend not in BACKEND_CHOICES:
        raise BadRequest(f'backend must be one of {", ".join(BACKEND_CHOICES)}, got {backend!r}')
    messages = parse_history(body.get('history')) + [ChatMessage('user', prompt)]
    started = time.perf_counter()
    generation = await request.app[ROUTER_KEY].generate(messages, backend, parse_max_tokens(body.get('max_new_tokens')))
    logger.debug(f'/inference backend={generation.backend} seconds={time.perf_counter() - started:.3f}')
    return web.json_response({'text': generation.text, 'backend': generation.backend, 'model': generation.model},
                             headers={BACKEND_HEADER: generation.backend})


def parse_chat_request(body: dict) -> tuple[list[ChatMessage], str, int | None]:
    raw = body.get('messages')
    if not isinstance(raw, list) or not raw:
        raise BadRequest('messages must be a non-empty list')
    messages = [parse_message(m, f'messages[{i}]') for i, m in enumerate(raw)]
    # The model field picks the backend: "local", "remote" or anything else for "auto".
    model = body.get('model')
    backend = model if model in BACKEND_CHOICES else 'auto'
    max_tokens = parse_max_tokens(body.get('max_completion_tokens', body.get('max_tokens')))
    return messages, backend, max_tokens


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    messages, backend, max_tokens = parse_chat_request(body)
    router = request.app[ROUTER_KEY]
    completion_id = f'chatcmpl-{uuid.uuid4().hex}'
    created = int(time.time())
    if body.get('stream'):
        return await stream_chat(request, router, messages, backend, max_tokens, completion_id, created)
    generation = await router.generate(messages, backend, max_tokens)
    prompt_tokens = estimate_tokens(''.join(m.content for m in messages))
    completion_tokens = estimate_tokens(generation.text)
    return web.json_response({
        'id': completion_id, 'object': 'chat.completion', 'created': created, 'model': generation.model,
        'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': generation.text},
                     'finish_reason': 'stop'}],
        'usage': {'prompt_tokens': prompt_tokens, 'completion_tokens': completion_tokens,
                  'total_tokens': prompt_tokens + completion_tokens},
        'system_fingerprint': generation.backend,
    }, headers={BACKEND_HEADER: generation.backend})


def sse(payload: dict) -> bytes:
    return b'data: ' + json.dumps(payload, ensure_ascii=False).encode() + b'\n\n'


async def stream_chat(request, router: Router, messages, backend, max_tokens, completion_id, created):
    # Errors before the first piece still get a normal JSON error (and fallback); after it, an SSE error event.
    chosen, pieces = await router.stream(messages, backend, max_tokens)
    response = web.StreamResponse(headers={'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache',
                                           BACKEND_HEADER: chosen.name})
    await response.prepare(request)

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return sse({'id': completion_id, 'object': 'chat.completion.chunk', 'created': created,
                    'model': chosen.model, 'system_fingerprint': chosen.name,
                    'choices': [{'index': 0, 'delta': delta, 'finish_reason': finish}]})

    try:
        await response.write(chunk({'role': 'assistant', 'content': ''}))
        async for piece in pieces:
            await response.write(chunk({'content': piece}))
        await response.write(chunk({}, 'stop'))
    except LLMError as exc:
        logger.warning(f'backend={chosen.name} stream broke: {exc}')
        await response.write(sse({'error': {'message': str(exc), 'type': exc.code, 'code': exc.status}}))
    finally:
        await pieces.aclose()
    await response.write(b'data: [DONE]\n\n')
    await response.write_eof()
    return response


async def list_models(request: web.Request) -> web.Response:
    router = request.app[ROUTER_KEY]
    data = [{'id': name, 'object': 'model', 'created': 0, 'owned_by': SERVICE_NAME, 'root': b.model}
            for name, b in router.backends.items()]
    data.insert(0, {'id': 'auto', 'object': 'model', 'created': 0, 'owned_by': SERVICE_NAME, 'root': 'auto'})
    return web.json_response({'object': 'list', 'data': data})


async def health(request: web.Request) -> web.Response:
    router = request.app[ROUTER_KEY]
    return web.json_response({'status': 'ok', 'service': SERVICE_NAME,
                              'backends': {name: b.model for name, b in router.backends.items()}})


def create_app(config: LLMConfig, router: Router | None = None) -> web.Application:
    """The aiohttp app. Without `router`, backends are built from config and warmed up on startup.

    Usage (tests pass an already warmed router to share one loaded model):
        runner = web.AppRunner(create_app(config.llm)); await runner.setup()
    """
    app = web.Application(client_max_size=config.server.max_body_size, middlewares=[errors_as_json])
    app[MAX_BODY_KEY] = config.server.max_body_size
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
    app.router.add_get('/v1/models', list_models)
    app.router.add_get('/health', health)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m huixiangdou.service.llm_server_hybrid',
        description='Serve the local and remote LLM backends over HTTP: POST /inference, '
                    'POST /v1/chat/completions (OpenAI format), GET /v1/models, GET /health.')
    parser.add_argument('--config', type=Path, default=Path('config.ini'),
                        help='path to config.ini (default: ./config.ini); [llm] and [llm.server] are read')
    parser.add_argument('--log-level', default='INFO', help='loguru level (default INFO)')
    return parser.parse_args(argv)


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
        app = create_app(config.llm)
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
