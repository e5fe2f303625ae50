"""The assistant as an OpenAI-compatible API: GET /v1/models and POST /v1/chat/completions (plain and
streamed), model "huixiangdou".

The last user message goes through the whole pipeline (reject → retrieve → answer) with the earlier
turns as history, so any OpenAI client can ask the assistant. The extra top-level field `huixiangdou`
says what happened ({code, outcome, reason, references}); a message the bot would ignore gets an empty
answer with the reason there. The knowledge base is the one `user` (the group) is routed to, as in a group. It is not a general LLM endpoint (the LLM server is).
"""
from __future__ import annotations

import contextlib
import json
import time
import uuid

from aiohttp import web
from loguru import logger

from huixiangdou.web.api_error import ApiError, read_json
from huixiangdou.web.console import console_of
from huixiangdou.web.outcome import session_summary

MODEL = 'huixiangdou'
API_GROUP = 'openai-api'
_STARTED = int(time.time())


def _text(content) -> str:
    """A message's text: a string, or the text parts of a list (images are not read here)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return ''.join(p.get('text', '') for p in content if isinstance(p, dict) and p.get('type') == 'text'
                       and isinstance(p.get('text'), str))
    return ''


def conversation(messages) -> tuple[str, list[tuple[str, str]]]:
    """The last user message, and the earlier (user, assistant) turns as the session's history."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, 'invalid_messages', '"messages" must be a non-empty list of {role, content}')
    turns = [(m.get('role'), _text(m.get('content'))) for m in messages if isinstance(m, dict)]
    last = max((i for i, (role, _) in enumerate(turns) if role == 'user'), default=None)
    if last is None or not turns[last][1].strip():
        raise ApiError(400, 'invalid_messages', 'the messages hold no user message with text to answer')
    history: list[tuple[str, str]] = []
    pending_user = None
    for role, text in turns[:last]:
        if role == 'user':
            pending_user = text if pending_user is None else f'{pending_user}\n{text}'
        elif role == 'assistant' and pending_user is not None:
            history.append((pending_user, text))
            pending_user = None
    return turns[last][1].strip(), history


def extra_field(summary: dict) -> dict:
    return {key: summary[key] for key in ('code', 'outcome', 'reason', 'references')}


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({'object': 'list', 'data': [
        {'id': MODEL, 'object': 'model', 'created': _STARTED, 'owned_by': 'huixiangdou'}]})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    from huixiangdou.service.worker.session import Session

    body = await read_json(request)
    model = body.get('model', MODEL)
    if not isinstance(model, str):
        raise ApiError(400, 'invalid_model', f'"model" must be a string: "{MODEL}"')
    if model != MODEL:
        raise ApiError(404, 'model_not_found', f'model {model!r} does not exist here: use "{MODEL}"')
    query, history = conversation(body.get('messages'))
    stream = body.get('stream', False)
    if not isinstance(stream, bool):
        raise ApiError(400, 'invalid_stream', '"stream" must be true or false')
    user = body.get('user')
    if user is not None and not isinstance(user, str):
        raise ApiError(400, 'invalid_user', '"user" must be a string (it names the conversation\'s group)')
    session = Session(query=query, history=history,
                      group_id=user if isinstance(user, str) and user else API_GROUP, group_name='OpenAI API')
    completion_id = f'chatcmpl-{uuid.uuid4().hex}'
    created = int(time.time())
    console = console_of(request)
    # The knowledge base of the conversation's group, as in a group chat.
    state = await console.ready(console.kb(console.config.knowledge_base_for(session.group_id)))
    async with state.slot.use() as worker:
        if not stream:
            await worker.run(session)
            summary = session_summary(session)
            return web.json_response({
                'id': completion_id, 'object': 'chat.completion', 'created': created, 'model': MODEL,
                'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': summary['reply']},
                             'finish_reason': 'stop'}],
                'huixiangdou': extra_field(summary)})
        try:
            return await _stream(request, worker, session, completion_id, created)
        except ConnectionResetError:  # the client hung up mid-answer
            logger.debug('assistant API: client went away during {!r}', query[:80])
            return web.Response(status=499)


async def _stream(request: web.Request, worker, session, completion_id: str, created: int) -> web.StreamResponse:
    response = web.StreamResponse(headers={'Content-Type': 'text/event-stream; charset=utf-8',
                                           'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no'})
    await response.prepare(request)

    async def send(delta: dict, finish: str | None = None, extra: dict | None = None) -> None:
        chunk = {'id': completion_id, 'object': 'chat.completion.chunk', 'created': created, 'model': MODEL,
                 'choices': [{'index': 0, 'delta': delta, 'finish_reason': finish}]}
        if extra is not None:
            chunk['huixiangdou'] = extra
        await response.write(f'data: {json.dumps(chunk, ensure_ascii=False)}\n\n'.encode())

    await send({'role': 'assistant', 'content': ''})
    streamed: list[str] = []
    async with contextlib.aclosing(worker.stream(session)) as events:
        async for event in events:
            if event.kind == 'token':
                streamed.append(event.text)
                await send({'content': event.text})
    summary = session_summary(session)
    extra = extra_field(summary)
    sent = ''.join(streamed)
    # The pieces are the LLM's; the worker may still replace them (a degenerate answer quoted instead,
    # or refused by the check). What is missing is sent; what cannot be taken back is flagged.
    extra['replaced'] = bool(sent) and not summary['reply'].startswith(sent)
    if extra['replaced']:
        extra['reply'] = summary['reply']
    elif summary['reply'][len(sent):]:
        await send({'content': summary['reply'][len(sent):]})
    await send({}, 'stop', extra)
    await response.write(b'data: [DONE]\n\n')
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get('/v1/models', list_models)
    app.router.add_post('/v1/chat/completions', chat_completions)
