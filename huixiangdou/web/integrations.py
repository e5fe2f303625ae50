"""Integrations: the configured frontend and the URL to paste into Lark/WeChat tooling, the groups routed to
the knowledge base `?kb=` names, the LLM server's backends and their health, web search, the assistant API's
address; and connection tests, one result per test (GET /api/integrations, POST /api/integrations/test).
Secrets are never shown. Binding a group to a knowledge base is in knowledge_bases_api.py.
"""
from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from huixiangdou.config import Config
from huixiangdou.web.api_error import ApiError, read_json
from huixiangdou.web.assistant_api import MODEL
from huixiangdou.web.console import console_of
from huixiangdou.web.scope import allowed, kb_scope

HEALTH_TIMEOUT = 3.0


def _public_host(host: str, request: web.Request) -> str:
    """A wildcard bind address means "this machine": show the address the console was reached at."""
    if host in ('0.0.0.0', '::', ''):
        return request.url.host or '127.0.0.1'
    return host


def _masked(url: str) -> str:
    """A webhook URL without its secret hook id."""
    head, sep, tail = url.rpartition('/')
    return f'{head}/{tail[:4]}…' if sep and tail else url


def frontend_info(config: Config, request: web.Request) -> dict:
    """The frontend's settings; the groups listed are those the sender may see (an operator: their own)."""
    fe = config.frontend
    callback, details = None, {}
    if fe.type == 'lark':
        details = {'webhook_url': _masked(fe.webhook_url), 'signed': bool(fe.webhook_secret)}
    elif fe.type == 'lark_group':
        g = fe.lark_group
        callback = f'http://{_public_host(g.host, request)}:{g.port}{g.path}'
        details = {'app_id': g.app_id, 'base_url': g.base_url, 'only_at_bot': bool(g.only_at_bot),
                   'encrypted': bool(g.encrypt_key), 'groups': _visible(config, request, g.groups)}
    elif fe.type == 'wechat_personal':
        w = fe.wechat_personal
        callback = f'http://{_public_host(w.host, request)}:{w.bind_port}{w.path}'
        details = {'token_set': bool(w.token)}
    elif fe.type == 'wechat_wkteam':
        w = fe.wechat_wkteam
        callback = f'http://{_public_host(w.callback_host, request)}:{w.callback_port}{w.callback_path}'
        details = {'base_url': w.base_url, 'wid': w.wid, 'account': w.account,
                   'groups': _visible(config, request, w.groups)}
    details['message_process_policy'] = fe.message_process_policy
    return {'type': fe.type, 'callback_url': callback, 'details': details}


def _visible(config: Config, request: web.Request, groups) -> list[str]:
    return sorted(g for g in groups if allowed(request, config.knowledge_base_for(g)))


def health_url(client_url: str) -> str:
    parts = urlsplit(client_url)
    return urlunsplit((parts.scheme, parts.netloc, '/health', '', ''))


async def llm_backends(config: Config) -> list[dict]:
    """The LLM server's backends from its /health; when it cannot be reached, the configured ones, unhealthy."""
    headers = {'Authorization': f'Bearer {config.llm.server.api_key}'} if config.llm.server.api_key else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT)) as http:
            async with http.get(health_url(config.llm.client_url), headers=headers) as response:
                body = await response.json(content_type=None) if response.status == 200 else None
                problem = '' if isinstance(body, dict) else f'/health answered HTTP {response.status}'
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        body, problem = None, f'the LLM server at {config.llm.client_url} cannot be reached: {exc.__class__.__name__}'
    if isinstance(body, dict) and isinstance(body.get('backends'), dict):
        return [{'name': name, 'model': str(model), 'healthy': True, 'detail': 'ready'}
                for name, model in body['backends'].items()]
    server = config.llm.server
    configured = []
    if config.llm.enable_local:
        configured.append({'name': 'local', 'model': server.local_llm_path or 'bundled'})
    if config.llm.enable_remote:
        configured.append({'name': 'remote', 'model': f'{server.remote_type}: {server.remote_llm_model}'})
    return [item | {'healthy': False, 'detail': problem or 'no backends reported'} for item in configured]


async def get_integrations(request: web.Request) -> web.Response:
    state = kb_scope(request)
    config = console_of(request).config
    return web.json_response({
        'knowledge_base': {'name': state.name, 'groups': config.groups_of(state.name)},
        'frontend': frontend_info(config, request),
        'llm': {'client_url': config.llm.client_url, 'backends': await llm_backends(config)},
        'web_search': {'enabled': bool(config.worker.enable_web_search), 'engine': config.web_search.engine},
        'assistant_api': {'base_url': f'{request.scheme}://{request.host}/v1', 'model': MODEL}})


async def test_frontend(config: Config) -> tuple[bool, str]:
    fe = config.frontend
    if fe.type == 'lark':
        from huixiangdou.frontend.errors import FrontendError
        from huixiangdou.frontend.lark import LarkWebhookSender

        sender = LarkWebhookSender(fe.webhook_url, fe.webhook_secret, max_retries=0, timeout=10.0)
        try:
            await sender.send('This is a test message from the huixiangdou web console. / 这是茴香豆控制台的测试消息。',
                              title='HuixiangDou connection test')
        except FrontendError as exc:
            return False, str(exc)
        finally:
            await sender.close()
        return True, 'a test message was posted to the Lark group'
    if fe.type == 'lark_group':
        from huixiangdou.frontend.errors import FrontendError
        from huixiangdou.frontend.lark_open_api import LarkOpenApi

        g = fe.lark_group
        try:
            api = LarkOpenApi(g.app_id, g.app_secret, g.base_url, max_retries=0)
        except ValueError as exc:
            return False, str(exc)
        try:
            open_id = await api.bot_open_id()
        except FrontendError as exc:
            return False, str(exc)
        finally:
            await api.close()
        return True, f'the app credentials work; the bot is {open_id}'
    if fe.type == 'none':
        return False, 'no frontend is configured ([frontend] type = "none")'
    return False, (f'no connection test for {fe.type}: send a message in the group and check Group messages')


async def test_llm(config: Config) -> tuple[bool, str]:
    """One short generation through the LLM server, bounded by [llm] client_timeout (as the worker's are)."""
    from huixiangdou.service.llm_client import LLMClient, LLMClientError

    limit = config.llm.client_timeout
    try:
        async with LLMClient(config.llm) as llm:
            async with asyncio.timeout(limit):
                reply = await llm.generate('Reply with the single word: OK')
    except (LLMClientError, TimeoutError) as exc:
        return False, str(exc) or f'no answer within {limit:g} s ([llm] client_timeout)'
    return True, f'{reply.backend} ({reply.model}) answered: {reply.text[:80]}'


TESTS = {'frontend': test_frontend, 'llm': test_llm}


async def run_test(request: web.Request) -> web.Response:
    """One connection test; its own result, named by its target, whatever other tests run meanwhile."""
    target = (await read_json(request)).get('target')
    config = console_of(request).config
    if not isinstance(target, str) or target not in TESTS:
        raise ApiError(400, 'bad_target', 'target must be "frontend" or "llm"')
    started = time.monotonic()
    ok, detail = await TESTS[target](config)
    return web.json_response({'target': target, 'ok': ok, 'detail': detail,
                              'seconds': round(time.monotonic() - started, 3)})


def add_routes(app: web.Application) -> None:
    app.router.add_get('/api/integrations', get_integrations)
    app.router.add_post('/api/integrations/test', run_test)
