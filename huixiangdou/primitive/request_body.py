"""Turns aiohttp's failures to read a request body (a Content-Encoding that does not decode, a broken
multipart body, a header aiohttp refuses) into one error, MalformedBody, that a server answers with a 400.

It checks no content: JSON parsing is json_input.py's job, fields are each endpoint's. Usage:
    app = web.Application(middlewares=[refuse_malformed_bodies])      # a server without its own error JSON
    body = await read_body(request, max_size)                        # or read through it directly
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Iterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

_CHUNK = 1 << 16
# A slow client must not hold a connection for ever (slowloris): once the headers are in, a body must
# arrive within BODY_TIMEOUT (aiohttp's own limit covers only the headers, through keepalive_timeout).
BODY_TIMEOUT = 75.0
# Uploads may be large: they get BODY_TIMEOUT plus the time their size limit takes at this slowest rate.
MIN_UPLOAD_RATE = 64 * 1024
# gzip is what clients send, and aiohttp decodes it safely. Its deflate decoder can leave a request waiting
# forever for a body that fails only at its end (a stream with a byte after it); br and zstd it refuses itself,
# and a name it does not know it passes through undecoded. So only these are read.
READABLE_ENCODINGS = frozenset({'', 'identity', 'gzip', 'x-gzip'})


class MalformedBody(Exception):
    """The request's body cannot be read as its headers say; `status` is 400 (or 413 past a size limit)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def _reason(exc: BaseException) -> str:
    # aiohttp's messages read "400, message:\n  Can not decode content-encoding: gzip"; keep the last line.
    text = getattr(exc, 'message', None) or str(exc)
    return ' '.join(str(text).split()).removeprefix('400, message: ').strip() or type(exc).__name__


def check_encoding(request: web.Request) -> None:
    """MalformedBody 415 for a Content-Encoding other than gzip (see READABLE_ENCODINGS), before any read."""
    encoding = request.headers.get('Content-Encoding', '').strip().lower()
    if encoding not in READABLE_ENCODINGS:
        raise MalformedBody(f'Content-Encoding {encoding[:40]!r} is not accepted: send the body as is or gzip',
                            status=415)


@contextlib.contextmanager
def reading_body(request: web.Request, what: str = 'body') -> Iterator[None]:
    """Checks the encoding; within the block, aiohttp's decoding failures raise MalformedBody naming `what`."""
    check_encoding(request)
    try:
        yield
    except (web.RequestPayloadError, HttpProcessingError) as exc:
        raise MalformedBody(f'the request {what} cannot be read: {_reason(exc)} (check Content-Encoding '
                            'and send the bytes it names)') from None
    except ConnectionResetError:
        # The connection closed mid-body: the client hung up, or aiohttp itself already answered 400 (a
        # deflate stream that fails only at its end) and closed it. Nobody reads this answer; no 500 logged.
        raise MalformedBody(f'the connection closed before the whole request {what} arrived') from None


@contextlib.asynccontextmanager
async def body_deadline(seconds: float | None = None) -> AsyncIterator[None]:
    """Within the block the body must arrive within `seconds` (None: BODY_TIMEOUT), else MalformedBody 408."""
    seconds = BODY_TIMEOUT if seconds is None else seconds
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise MalformedBody(f'the request body did not arrive within {seconds:g} s', status=408) from None


def upload_deadline(max_bytes: int) -> float:
    """Seconds an upload of at most `max_bytes` may take: BODY_TIMEOUT plus max_bytes at MIN_UPLOAD_RATE."""
    return BODY_TIMEOUT + max_bytes / MIN_UPLOAD_RATE


@contextlib.asynccontextmanager
async def reading_multipart(request: web.Request, max_bytes: int) -> AsyncIterator[None]:
    """reading_body, and also aiohttp's multipart reader's own refusals (a boundary that does not match,
    a part header it will not parse, an unknown charset) as MalformedBody; and a body of at most
    `max_bytes` must arrive within upload_deadline(max_bytes) (else 408)."""
    try:
        async with body_deadline(upload_deadline(max_bytes)):
            with reading_body(request, 'multipart body'):
                yield
    except (ValueError, LookupError) as exc:
        raise MalformedBody(f'the multipart body is malformed: {_reason(exc)} (send multipart/form-data '
                            'whose parts start with the boundary named in Content-Type)') from None


async def read_body(request: web.Request, max_size: int | None = None) -> bytes:
    """The whole body; MalformedBody 400 if it does not decode, 413 past `max_size` bytes (decoded)."""
    if max_size is not None and request.content_length is not None and request.content_length > max_size:
        raise MalformedBody(f'the body of {request.content_length} bytes is larger than {max_size}', status=413)
    chunks, size = [], 0
    async with body_deadline():
        with reading_body(request):
            while chunk := await request.content.read(_CHUNK):
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise MalformedBody(f'the body is larger than {max_size} bytes', status=413)
                chunks.append(chunk)
    return b''.join(chunks)


def finish_malformed(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Send `response` (the refusal) and close the connection: the body's remaining bytes cannot be
    parsed, and aiohttp would otherwise log a traceback while draining them after the response."""
    if not request.content.is_eof():
        request.content.feed_eof()
    response.force_close()
    return response


@web.middleware
async def refuse_malformed_bodies(request: web.Request, handler):
    """For a server without its own error middleware: MalformedBody or an unreadable body → 400/413
    {"error": reason}. Put it innermost, after any middleware that turns exceptions into 500s."""
    try:
        if request.body_exists:
            check_encoding(request)
        return await handler(request)
    except (MalformedBody, web.RequestPayloadError) as exc:
        if not isinstance(exc, MalformedBody):
            exc = MalformedBody(f'the request body cannot be read: {_reason(exc)}')
        return finish_malformed(request, web.json_response({'error': exc.message}, status=exc.status))
