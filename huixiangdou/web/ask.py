"""Try it: POST /api/ask runs one question through the whole pipeline as a group member's message and
streams it back as server-sent events (stage, token, done).

The question is answered from the knowledge base `?kb=` names, exactly as in a group (group_id "web-console"
unless given) and its outcome is saved like any other, under that knowledge base's name. The `done` event's reply is final: a degenerate streamed answer may be replaced.
"""
from __future__ import annotations

import contextlib
import json

from aiohttp import web
from loguru import logger

from huixiangdou.config import DEFAULT_KNOWLEDGE_BASE
from huixiangdou.web.api_error import ApiError, read_json, text_field
from huixiangdou.web.console import console_of
from huixiangdou.web.outcome import session_summary
from huixiangdou.web.scope import kb_ready

CONSOLE_GROUP = 'web-console'
MAX_QUERY_CHARS = 4000
MAX_GROUP_CHARS = 200


def sse(event: str, data: dict) -> bytes:
    return f'event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n'.encode()


async def ask(request: web.Request) -> web.StreamResponse:
    from huixiangdou.service.worker.session import Session

    body = await read_json(request)
    query = text_field(body, 'query', max_chars=MAX_QUERY_CHARS)
    group = body.get('group_id') or CONSOLE_GROUP
    if not isinstance(group, str):
        raise ApiError(400, 'bad_field', '"group_id" must be a string')
    if len(group) > MAX_GROUP_CHARS:
        raise ApiError(400, 'too_long', f'"group_id" is longer than {MAX_GROUP_CHARS} characters')
    # Without ?kb=, a group id is answered by the knowledge base that group is routed to, as in the group.
    routed = console_of(request).config.knowledge_base_for(group) if body.get('group_id') else DEFAULT_KNOWLEDGE_BASE
    console = await kb_ready(request, routed)
    async with console.slot.use() as worker:
        response = web.StreamResponse(headers={'Content-Type': 'text/event-stream; charset=utf-8',
                                               'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no'})
        await response.prepare(request)
        session = Session(query=query, group_id=group, group_name='web console')
        try:
            async with contextlib.aclosing(worker.stream(session)) as events:
                async for event in events:
                    if event.kind == 'stage':
                        await response.write(sse('stage', {'stage': event.stage}))
                    elif event.kind == 'token':
                        await response.write(sse('token', {'text': event.text}))
                    elif event.kind == 'done':
                        await response.write(sse('done', session_summary(session)))
            await response.write_eof()
        except ConnectionResetError:  # the page was closed mid-answer: nothing left to tell it
            logger.debug('web console: /api/ask client went away during {!r}', query[:80])
        return response


def add_routes(app: web.Application) -> None:
    app.router.add_post('/api/ask', ask)
