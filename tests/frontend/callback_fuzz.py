"""Support for the property-based callback tests: a server on its own loop, hostile-body strategies, a log watch.

The server runs in a thread so hypothesis can drive it from a plain (synchronous) test, one request per
example, over real HTTP on 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import threading
from typing import Awaitable, Callable

from hypothesis import strategies as st
from loguru import logger

SURROGATES = ['\ud800', '\udfff', '\udbff\udbff', 'a\udc80b']


class ServerThread:
    """Runs `start()` on a private event loop; `start` returns (port, stop coroutine function).

    >>> with ServerThread(start) as server:
    ...     status, text = server.post('/event', b'{}')
    """

    def __init__(self, start: Callable[[], Awaitable[tuple[int, Callable[[], Awaitable[None]]]]]):
        self._start = start
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[str] = []
        self.loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context.get('message', '')))
        self._thread = threading.Thread(target=self.loop.run_forever, name='fuzz-server', daemon=True)
        self.port = 0
        self._stop: Callable[[], Awaitable[None]] | None = None

    def __enter__(self) -> 'ServerThread':
        self._thread.start()
        self.port, self._stop = self.run(self._start())
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._stop is not None:
                self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def run(self, coro, timeout: float = 30.0):
        """Run `coro` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def post(self, path: str, body: bytes, headers: dict | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
        try:
            connection.request('POST', path, body=body, headers={'Content-Type': 'application/json', **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read().decode('utf-8', 'replace')
        finally:
            connection.close()


class LogWatch:
    """Collects loguru records at ERROR and above, any line holding a traceback, and aiohttp's own errors."""

    def __init__(self):
        self.problems: list[str] = []
        self._sink = 0
        self._handler = _ListHandler(self.problems)

    def _on_message(self, message) -> None:
        record = message.record
        if record['level'].no >= 40 or 'Traceback' in message or record['exception'] is not None:
            self.problems.append(str(message))

    def __enter__(self) -> 'LogWatch':
        self._sink = logger.add(self._on_message, level='DEBUG', backtrace=False, diagnose=False)
        logging.getLogger('aiohttp').addHandler(self._handler)
        return self

    def __exit__(self, *exc) -> None:
        logger.remove(self._sink)
        logging.getLogger('aiohttp').removeHandler(self._handler)


class _ListHandler(logging.Handler):
    def __init__(self, problems: list[str]):
        super().__init__(level=logging.ERROR)
        self.problems = problems

    def emit(self, record: logging.LogRecord) -> None:
        self.problems.append(self.format(record))


# ---- strategies -------------------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=20),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), st.sampled_from(SURROGATES), st.text(max_size=5)),
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=16,
)


def deep_nesting(min_depth: int = 60, max_depth: int = 2000) -> st.SearchStrategy[bytes]:
    def build(depth: int, kind: str) -> bytes:
        if kind == 'list':
            return b'[' * depth + b']' * depth
        if kind == 'object':
            return b'{"a":' * depth + b'1' + b'}' * depth
        return b'{"event": ' + b'[' * depth + b']' * depth + b'}'
    return st.builds(build, st.integers(min_depth, max_depth), st.sampled_from(['list', 'object', 'inside']))


huge_strings = st.builds(lambda n, c: b'{"x": "' + c.encode() * n + b'"}',
                         st.integers(1000, 40000), st.sampled_from(['a', '\u00e9', '\\ud800']))


def mutated(base: Callable[[], dict], paths: list[str]) -> st.SearchStrategy[dict]:
    """`base()` with up to three dotted paths replaced by arbitrary JSON values (a parent that is no
    longer an object is left alone)."""
    def apply(changes: list[tuple[str, object]]) -> dict:
        body = base()
        for path, value in changes:
            *parents, last = path.split('.')
            target = body
            for key in parents:
                target = target.get(key) if isinstance(target, dict) else None
            if isinstance(target, dict):
                target[last] = value
        return body
    return st.builds(apply, st.lists(st.tuples(st.sampled_from(paths), scalars | json_values), max_size=3))


def encoded(values: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """JSON bytes, ASCII-escaped as most clients send them (a lone surrogate travels as "\\ud800")."""
    return values.map(lambda value: json.dumps(value).encode())


def hostile_bodies(valid_events: st.SearchStrategy[dict]) -> st.SearchStrategy[bytes]:
    """Half the time an almost valid event (it gets past parsing to the shape checks), else raw hostility."""
    return st.one_of(
        encoded(valid_events),
        st.one_of(
            st.binary(max_size=300),
            encoded(json_values),
            deep_nesting(),
            huge_strings,
            encoded(valid_events).map(lambda raw: raw[:-1]),   # truncated
        ),
    )
