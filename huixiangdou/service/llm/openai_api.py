"""The OpenAI wire format of the hybrid server: request validation (messages, sampling parameters,
what we refuse), /v1/chat/completions (plain and SSE), /v1/models and /v1/models/{id}, and the error shape.

It does not authenticate, read bodies or run the app (llm_server_hybrid.py does), nor generate (router.py).
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from aiohttp import web
from loguru import logger

from huixiangdou.service.llm.backend import (ROLES, BadRequest, ChatMessage, Generation, GenerationParams,
                                             LLMError, ModelNotFound, Unsupported, Usage)
from huixiangdou.service.llm.rate_limit import estimate_tokens
from huixiangdou.service.llm.router import Router

SERVICE_NAME = 'huixiangdou-llm'
ROUTER_KEY = web.AppKey('router', Router)
BACKEND_HEADER = 'X-HuixiangDou-Backend'
MAX_STOP_STRINGS = 4  # as OpenAI
# Fields we understand but do not implement; ignoring them would hand back something the client did not ask for.
UNSUPPORTED = {'tools': 'tool calling', 'functions': 'function calling', 'logprobs': 'logprobs',
               'top_logprobs': 'logprobs', 'audio': 'audio output'}


@dataclass
class ChatRequest:
    messages: list[ChatMessage]
    backend: str
    params: GenerationParams
    stream: bool


def error_body(exc: LLMError) -> dict:
    """OpenAI's error shape, so the official SDK raises the matching exception class."""
    return {'error': {'message': str(exc), 'type': exc.type, 'param': exc.param, 'code': exc.code}}


def error_response(exc: LLMError) -> web.Response:
    headers = {}
    retry_after = getattr(exc, 'retry_after', None)
    if retry_after:
        headers['Retry-After'] = str(max(1, round(retry_after)))
    if exc.status == 401:
        headers['WWW-Authenticate'] = 'Bearer'
    return web.json_response(error_body(exc), status=exc.status, headers=headers)


def parse_message(item, where: str) -> ChatMessage:
    if not isinstance(item, dict):
        raise BadRequest(f'{where} must be an object with role and content', param=where)
    role, content = item.get('role'), item.get('content')
    if role == 'developer':  # OpenAI's newer name for the system role
        role = 'system'
    if role not in ROLES:
        raise BadRequest(f'{where}.role must be one of developer, {", ".join(ROLES)}, got {role!r}',
                         param=f'{where}.role')
    if content is None and role == 'assistant':  # an assistant turn that only called tools
        content = ''
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        content = ''.join(p['text'] for p in content
                          if isinstance(p, dict) and p.get('type') == 'text' and isinstance(p.get('text'), str))
    if not isinstance(content, str):
        raise BadRequest(f'{where}.content must be a string', param=f'{where}.content')
    return ChatMessage(role, content)


def positive_int(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f'{name} must be a positive integer, got {value!r}', param=name)
    return value


def number_in(value, name: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadRequest(f'{name} must be a number from {low:g} to {high:g}, got {value!r}', param=name)
    return float(value)


def parse_stop(value) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (not isinstance(stops, list) or len(stops) > MAX_STOP_STRINGS
            or not all(isinstance(s, str) and s for s in stops)):
        raise BadRequest(f'stop must be a non-empty string or a list of up to {MAX_STOP_STRINGS} of them',
                         param='stop')
    return tuple(stops)


def refuse_unsupported(body: dict) -> None:
    n = body.get('n')
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise BadRequest(f'n must be a positive integer, got {n!r}', param='n')
    if n is not None and n > 1:
        raise Unsupported('n > 1 is not supported: ask once per answer you need', param='n')
    for key, what in UNSUPPORTED.items():
        if body.get(key) not in (None, False, []):
            raise Unsupported(f'{what} ({key}) is not supported by this server', param=key)
    if body.get('tool_choice') not in (None, 'none'):
        raise Unsupported('tool calling (tool_choice) is not supported by this server', param='tool_choice')


def resolve_backend(router: Router, model) -> str:
    """The backend a `model` field names: 'auto' (or absent) or an enabled backend; anything else is 404."""
    if model is None:
        return 'auto'
    if not isinstance(model, str):
        raise BadRequest(f'model must be a string, got {model!r}', param='model')
    if model != 'auto' and model not in router.backends:
        listed = ', '.join(['auto', *router.backends])
        raise ModelNotFound(f'The model {model!r} does not exist on this server: use one of {listed} '
                            '(GET /v1/models)', param='model')
    return model


def parse_chat_request(body: dict, router: Router) -> ChatRequest:
    raw = body.get('messages')
    if not isinstance(raw, list) or not raw:
        raise BadRequest('messages must be a non-empty list', param='messages')
    messages = [parse_message(m, f'messages[{i}]') for i, m in enumerate(raw)]
    refuse_unsupported(body)
    backend = resolve_backend(router, body.get('model'))
    stream = body.get('stream')
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest(f'stream must be a boolean, got {stream!r}', param='stream')
    include_usage = False
    options = body.get('stream_options')
    if options is not None:
        if not stream:
            raise BadRequest('stream_options is only allowed when stream is true', param='stream_options')
        if not isinstance(options, dict) or not isinstance(options.get('include_usage', False), bool):
            raise BadRequest('stream_options must be {"include_usage": true|false}', param='stream_options')
        include_usage = options.get('include_usage', False)
    max_tokens = body.get('max_completion_tokens', body.get('max_tokens'))
    seed = body.get('seed')
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest(f'seed must be an integer, got {seed!r}', param='seed')
    params = GenerationParams(
        max_new_tokens=positive_int(max_tokens, 'max_tokens'),
        temperature=number_in(body.get('temperature'), 'temperature', 0, 2),
        top_p=number_in(body.get('top_p'), 'top_p', 0, 1),
        seed=seed, stop=parse_stop(body.get('stop')), include_usage=include_usage)
    return ChatRequest(messages, backend, params, bool(stream))


def usage_of(messages: list[ChatMessage], text: str, usage: Usage | None) -> dict:
    """Token counts from the backend (its tokenizer or the upstream's figures), else our estimate."""
    if usage is None:
        usage = Usage(estimate_tokens(''.join(m.content for m in messages)), estimate_tokens(text))
    return {'prompt_tokens': usage.prompt_tokens, 'completion_tokens': usage.completion_tokens,
            'total_tokens': usage.total_tokens}


async def chat_completions(request: web.Request, body: dict) -> web.StreamResponse:
    router = request.app[ROUTER_KEY]
    chat = parse_chat_request(body, router)
    completion_id, created = f'chatcmpl-{uuid.uuid4().hex}', int(time.time())
    if chat.stream:
        return await stream_chat(request, router, chat, completion_id, created)
    generation: Generation = await router.generate(chat.messages, chat.backend, chat.params)
    return web.json_response({
        'id': completion_id, 'object': 'chat.completion', 'created': created, 'model': generation.model,
        'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': generation.text},
                     'finish_reason': generation.finish_reason}],
        'usage': usage_of(chat.messages, generation.text, generation.usage),
        'system_fingerprint': generation.backend,
    }, headers={BACKEND_HEADER: generation.backend})


def sse(payload: dict) -> bytes:
    return b'data: ' + json.dumps(payload, ensure_ascii=False).encode() + b'\n\n'


async def stream_chat(request: web.Request, router: Router, chat: ChatRequest, completion_id: str,
                      created: int) -> web.StreamResponse:
    # Errors before the first piece still get a normal JSON error (and fallback); after it, an SSE error event.
    chosen, pieces = await router.stream(chat.messages, chat.backend, chat.params)
    response = web.StreamResponse(headers={'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache',
                                           BACKEND_HEADER: chosen.name})
    await response.prepare(request)

    def event(choices: list, **extra) -> bytes:
        return sse({'id': completion_id, 'object': 'chat.completion.chunk', 'created': created,
                    'model': chosen.model, 'system_fingerprint': chosen.name, 'choices': choices, **extra})

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return event([{'index': 0, 'delta': delta, 'finish_reason': finish}])

    texts, finish, usage = [], None, None
    try:
        await response.write(chunk({'role': 'assistant', 'content': ''}))
        async for piece in pieces:
            if piece.text:
                texts.append(piece.text)
                await response.write(chunk({'content': piece.text}))
            finish, usage = piece.finish_reason or finish, piece.usage or usage
        await response.write(chunk({}, finish or 'stop'))
        if chat.params.include_usage:
            await response.write(event([], usage=usage_of(chat.messages, ''.join(texts), usage)))
    except LLMError as exc:
        logger.warning(f'backend={chosen.name} stream broke: {exc}')
        await response.write(sse(error_body(exc)))
    except ConnectionResetError:  # the client left; nobody is there to tell
        logger.info(f'backend={chosen.name} client closed the stream early')
        return response
    finally:
        await pieces.aclose()
    await response.write(b'data: [DONE]\n\n')
    await response.write_eof()
    return response


def model_cards(router: Router) -> list[dict]:
    cards = [{'id': 'auto', 'object': 'model', 'created': 0, 'owned_by': SERVICE_NAME, 'root': 'auto'}]
    return cards + [{'id': name, 'object': 'model', 'created': 0, 'owned_by': SERVICE_NAME, 'root': b.model}
                    for name, b in router.backends.items()]


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({'object': 'list', 'data': model_cards(request.app[ROUTER_KEY])})


async def get_model(request: web.Request) -> web.Response:
    wanted = request.match_info['model']
    for card in model_cards(request.app[ROUTER_KEY]):
        if card['id'] == wanted:
            return web.json_response(card)
    raise ModelNotFound(f'The model {wanted!r} does not exist on this server (GET /v1/models lists them)',
                        param='model')
