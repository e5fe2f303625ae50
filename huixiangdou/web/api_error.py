"""The one error type of the console's JSON API, and the middleware that turns it into a response.

Every /api/ error reaches the client as {"error": {"code", "message"}} with the right status; an
unexpected exception is logged with its traceback and answered 500 with a generic message.
"""
from __future__ import annotations

from aiohttp import web
from loguru import logger

from huixiangdou.primitive.json_input import InvalidJson, parse_json_object
from huixiangdou.primitive.request_body import MalformedBody, body_deadline, finish_malformed, reading_body


class ApiError(Exception):
    """A request the console refuses: `code` is snake_case for scripts, `message` says what to do;
    `headers` go with the response (Retry-After on a 429)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, openai: bool = False,
                   headers: dict[str, str] | None = None) -> web.Response:
    error = {'code': code, 'message': message}
    if openai:  # OpenAI clients also read the error's type
        error['type'] = {401: 'authentication_error', 429: 'rate_limit_error'}.get(status, 'invalid_request_error')
    return web.json_response({'error': error}, status=status, headers=headers)


# aiohttp's own refusals (unknown route, wrong method, body too large), in the same JSON shape.
_HTTP_CODES = {400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found',
               405: 'method_not_allowed', 413: 'too_large', 415: 'unsupported_type'}


@web.middleware
async def errors_as_json(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, request.path.startswith('/v1/'), exc.headers)
    except (MalformedBody, web.RequestPayloadError) as exc:
        # A body that does not decode (Content-Encoding, multipart): the rest of it cannot be read either.
        status, message = (exc.status, exc.message) if isinstance(exc, MalformedBody) else (400, str(exc))
        code = {413: 'too_large', 415: 'unsupported_encoding'}.get(status, 'bad_body')
        return finish_malformed(request, error_response(status, code, message, request.path.startswith('/v1/')))
    except web.HTTPException as exc:
        if not request.path.startswith(('/api/', '/v1/')) or exc.status < 400:
            raise
        if exc.status == 413:
            return error_response(413, 'too_large', 'the request body is too large: send a smaller file '
                                  '(limit: [web] max_upload_mb)')
        return error_response(exc.status, _HTTP_CODES.get(exc.status, 'http_error'), exc.reason)
    except Exception:  # boundary: a bug must not leak a traceback to the client
        logger.exception('web console: {} {} failed', request.method, request.path)
        return error_response(500, 'internal_error', 'the server failed on this request; see its log')


async def read_json(request: web.Request) -> dict:
    """The request's JSON object body, or ApiError 400 saying what was wrong.

    The body must be declared JSON: a page elsewhere can make a browser send a form or text/plain to the
    console without asking first (a "simple" request), but not application/json, so the open endpoints
    (/api/ask, /v1/chat/completions, /api/login) cannot be driven from another site."""
    content_type = request.content_type
    if content_type != 'application/json' and not content_type.endswith('+json'):
        raise ApiError(415, 'unsupported_type', 'send the body as JSON with "Content-Type: application/json"')
    async with body_deadline():  # a body that never completes: 408, not a connection held for ever
        with reading_body(request):
            raw = await request.read()  # 413 past client_max_size
    try:
        # Bounded nesting: `[` × 100,000 is a 400, not a RecursionError.
        return parse_json_object(raw)
    except InvalidJson as exc:
        raise ApiError(400, 'bad_json', f'{exc}: send one JSON object (Content-Type: application/json)') from None


def text_field(body: dict, key: str, required: bool = True, max_chars: int = 4000) -> str:
    """A string field of a JSON body, stripped; ApiError 400 if missing (when required), not text or too long."""
    value = body.get(key, '')
    if not isinstance(value, str):
        raise ApiError(400, 'bad_field', f'"{key}" must be a string')
    value = value.strip()
    if required and not value:
        raise ApiError(400, 'missing_field', f'"{key}" is required')
    if len(value) > max_chars:
        raise ApiError(400, 'too_long', f'"{key}" is longer than {max_chars} characters')
    return value
