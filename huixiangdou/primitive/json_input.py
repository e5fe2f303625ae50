"""Parses JSON that arrives from outside (HTTP bodies, decrypted events) into plain, bounded Python data.

Bounds nesting depth and replaces lone UTF-16 surrogates with U+FFFD, so hostile input yields an
InvalidJson (→ 400) instead of a RecursionError or an UnicodeEncodeError deep inside a handler. It
checks no schema: each endpoint validates the shape it needs.
"""
from __future__ import annotations

import json
import re

# Real payloads (Lark events, OpenAI requests with tool schemas) stay well under 20 levels.
MAX_DEPTH = 64
_SURROGATE = re.compile('[\ud800-\udfff]')


class InvalidJson(ValueError):
    """The input is not JSON, nests deeper than allowed, or is not the expected top-level type."""


def clean_text(text: str) -> str:
    """`text` with lone surrogates (which cannot be encoded as UTF-8) replaced by U+FFFD."""
    return _SURROGATE.sub('\ufffd', text) if _SURROGATE.search(text) else text


def parse_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH):
    """Decode `raw` (UTF-8 bytes or str); every string in the result is UTF-8 encodable.

    >>> parse_json(b'{"a": ["\\\\ud800x"]}')
    {'a': ['\\ufffdx']}
    """
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode('utf-8')
        except UnicodeDecodeError as exc:
            raise InvalidJson(f'body is not UTF-8 ({exc.reason} at byte {exc.start})') from None
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidJson(f'JSON nests deeper than {max_depth} levels') from None
    except ValueError as exc:
        raise InvalidJson(f'body is not valid JSON: {exc}') from None
    return _bounded(value, max_depth)


def parse_json_object(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> dict:
    """parse_json, and the top level must be an object."""
    value = parse_json(raw, max_depth=max_depth)
    if not isinstance(value, dict):
        raise InvalidJson(f'body must be a JSON object, got {type(value).__name__}')
    return value


def _refuse_constant(name: str):
    # NaN and Infinity are not JSON; Python accepts them by default and they would poison numbers downstream.
    raise ValueError(f'{name} is not valid JSON')


def _bounded(value, max_depth: int):
    """Check depth and clean strings without recursion (a deep value must not exhaust the stack)."""
    if isinstance(value, str):
        return clean_text(value)
    if not isinstance(value, (dict, list)):
        return value
    root = [value]
    # Each entry: (container, depth); containers are rewritten in place.
    stack = [(root, 0)]
    while stack:
        container, depth = stack.pop()
        if depth > max_depth:
            raise InvalidJson(f'JSON nests deeper than {max_depth} levels')
        if isinstance(container, list):
            items = enumerate(container)
        else:
            items = list(container.items())
        for key, item in items:
            if isinstance(item, str):
                container[key] = clean_text(item)
            elif isinstance(item, (dict, list)):
                stack.append((item, depth + 1))
        if isinstance(container, dict) and any(isinstance(k, str) and _SURROGATE.search(k) for k in container):
            cleaned = {clean_text(k): v for k, v in container.items()}
            container.clear()
            container.update(cleaned)
    return root[0]
