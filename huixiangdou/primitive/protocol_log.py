"""Logs a request that aiohttp refuses before any handler runs (a malformed header, a missing Host, a body
that its Content-Encoding cannot decode) as one warning line instead of a full traceback.

It changes no answer (aiohttp still sends its 400) and leaves every other aiohttp log record alone.
Usage: quiet_protocol_errors() when a server's app is built (calling it again changes nothing).
"""
from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = 'aiohttp.server'


class _OneLineProtocolErrors(logging.Filter):
    """A client's malformed request is its mistake, not ours: any client could fill the log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            reason = ' '.join(str(exc.message).split()) or type(exc).__name__
            record.msg, record.args = f'{record.getMessage()}: {exc.code} {reason[:200]}', ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, 'WARNING'
        return True


def quiet_protocol_errors() -> None:
    server_logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, _OneLineProtocolErrors) for f in server_logger.filters):
        server_logger.addFilter(_OneLineProtocolErrors())
