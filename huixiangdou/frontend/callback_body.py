"""Reads a platform callback's JSON body with a size limit and a time limit, and its fields with type
checks, turning bad input into CallbackRejected.

Shared by the Lark, WeChat and wkteam servers (every request body they read goes through
read_json_body or read_raw_body); authentication is each server's own job.
"""
from __future__ import annotations

from aiohttp import web

from huixiangdou.frontend.errors import CallbackRejected
from huixiangdou.primitive.json_input import InvalidJson, parse_json_object
from huixiangdou.primitive.request_body import body_deadline, reading_body


async def read_json_body(request: web.Request, max_size: int, timeout: float) -> tuple[bytes, dict]:
    """Return (raw bytes, parsed object); 413 over `max_size`, 408 when the body takes over `timeout`
    seconds, 400 for anything but a bounded JSON object."""
    if request.content_length is not None and request.content_length > max_size:
        raise CallbackRejected(413, f'body of {request.content_length} bytes exceeds {max_size}')

    async def read() -> bytes:
        # Read in chunks and stop past the limit, so a chunked upload without Content-Length cannot
        # make us buffer more than max_size.
        chunks, size = [], 0
        while True:
            chunk = await request.content.read(65536)
            if not chunk:
                return b''.join(chunks)
            size += len(chunk)
            if size > max_size:
                raise CallbackRejected(413, f'body exceeds {max_size} bytes')
            chunks.append(chunk)
    raw = await _within(request, timeout, read)
    try:
        body = parse_json_object(raw)
    except InvalidJson as exc:
        raise CallbackRejected(400, str(exc)) from None
    return raw, body


async def read_raw_body(request: web.Request, max_size: int, timeout: float) -> bytes:
    """The body bytes, unparsed (for a signature over the raw bytes); 413 past max_size (aiohttp stops
    reading at the app's client_max_size), 408 when the body takes over `timeout` seconds."""
    if request.content_length is not None and request.content_length > max_size:
        raise CallbackRejected(413, f'body of {request.content_length} bytes exceeds {max_size}')
    try:
        return await _within(request, timeout, request.read)
    except web.HTTPRequestEntityTooLarge:
        raise CallbackRejected(413, f'body exceeds {max_size} bytes') from None


async def _within(request: web.Request, timeout: float, reading):
    """Await `reading()`, called only once the encoding is accepted (a refused request leaves no coroutine
    never awaited). A body not in within `timeout` seconds (one that never completes must not hold the
    connection) raises MalformedBody 408, one that does not decode as its Content-Encoding says 400: both
    answered by the app's refuse_malformed_bodies middleware, which also closes the connection."""
    async with body_deadline(timeout):
        with reading_body(request):
            return await reading()


def parse_object_body(raw: bytes) -> dict:
    """A JSON object from raw body bytes; 400 with the parser's reason otherwise."""
    try:
        return parse_json_object(raw)
    except InvalidJson as exc:
        raise CallbackRejected(400, str(exc)) from None


def rejection_response(exc: CallbackRejected) -> web.Response:
    return web.json_response({'error': exc.reason}, status=exc.status)


def field_object(container: dict, key: str, where: str) -> dict:
    """container[key] as a dict ({} when absent or null); 400 naming the field when it is anything else."""
    value = container.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CallbackRejected(400, f'{where}.{key} must be an object, got {type(value).__name__}')
    return value


def field_text(container: dict, key: str, where: str) -> str:
    """container[key] as a str ('' when absent or null); 400 naming the field when it is anything else.

    Integers are accepted, as text: Lark and wkteam send some ids as numbers.
    """
    value = container.get(key)
    if value is None:
        return ''
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise CallbackRejected(400, f'{where}.{key} must be a string, got {type(value).__name__}')
