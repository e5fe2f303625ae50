"""A local stand-in for the web: Serper's POST /search, DuckDuckGo's /html/ results page, and plain pages
under /page/<name>, on 127.0.0.1. It can be told to fail (status codes, Retry-After) or hang.
"""
from __future__ import annotations

import asyncio
import html
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from tests.conftest import free_port


@dataclass
class Failure:
    status: int
    retry_after: str | None = None


@dataclass
class RecordedRequest:
    path: str
    method: str
    headers: dict
    query: str  # the search terms the client sent


@dataclass
class Page:
    body: bytes
    content_type: str = 'text/html; charset=utf-8'
    hang: bool = False


@dataclass
class FakeWeb:
    """Usage: `async with FakeWeb(api_key='k') as fake: fake.organic = [...]; fake.base_url`."""
    api_key: str = 'serper-test-key'
    organic: list[dict] = field(default_factory=list)
    answer_box: dict | None = None
    # Hits shown on the DuckDuckGo page: dicts with title, url, snippet (and ad=True for an ad).
    ddg_results: list[dict] = field(default_factory=list)
    ddg_anomaly: bool = False
    pages: dict[str, Page] = field(default_factory=dict)
    hang: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self):
        self._failures: deque[Failure] = deque()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = free_port()

    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def page_url(self, name: str) -> str:
        return f'{self.base_url}/page/{name}'

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """The next `times` searches answer `status` (with Retry-After when given); 0 drops the connection."""
        self._failures.extend(Failure(status, retry_after) for _ in range(times))

    async def __aenter__(self) -> FakeWeb:
        app = web.Application()
        app.router.add_post('/search', self._serper)
        app.router.add_route('*', '/html/', self._duckduckgo)
        app.router.add_get('/page/{name}', self._page)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, '127.0.0.1', self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        self._release.set()  # let hanging handlers return so shutdown is quick
        await self._runner.cleanup()

    async def _hold_or_fail(self, request: web.Request) -> web.Response | None:
        if self.hang:
            await self._release.wait()
            return web.Response(status=503)
        if self._failures:
            failure = self._failures.popleft()
            if failure.status == 0:
                request.transport.close()
                return web.Response()  # never reaches the client
            headers = {'Retry-After': failure.retry_after} if failure.retry_after is not None else {}
            return web.json_response({'message': 'fake failure', 'statusCode': failure.status},
                                     status=failure.status, headers=headers)
        return None

    async def _serper(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.requests.append(RecordedRequest(request.path, request.method, dict(request.headers),
                                             payload.get('q', '')))
        if request.headers.get('X-API-KEY') != self.api_key:
            return web.json_response({'message': 'Unauthorized.', 'statusCode': 403}, status=403)
        if (refusal := await self._hold_or_fail(request)) is not None:
            return refusal
        body = {'searchParameters': {'q': payload.get('q', ''), 'type': 'search', 'engine': 'google'},
                'organic': [dict(item, position=i + 1) for i, item in enumerate(self.organic)]}
        if self.answer_box is not None:
            body['answerBox'] = self.answer_box
        return web.json_response(body)

    async def _duckduckgo(self, request: web.Request) -> web.Response:
        form = await request.post() if request.method == 'POST' else request.query
        self.requests.append(RecordedRequest(request.path, request.method, dict(request.headers),
                                             form.get('q', '')))
        if (refusal := await self._hold_or_fail(request)) is not None:
            return refusal
        if self.ddg_anomaly:
            return web.Response(text='<html><body><div class="anomaly-modal__title">Unfortunately, bots use '
                                     'DuckDuckGo too.</div></body></html>', content_type='text/html')
        return web.Response(text=duckduckgo_page(self.ddg_results), content_type='text/html')

    async def _page(self, request: web.Request) -> web.Response:
        page = self.pages.get(request.match_info['name'])
        if page is None:
            return web.Response(status=404, text='not found')
        if page.hang:
            await self._release.wait()
        return web.Response(body=page.body, headers={'Content-Type': page.content_type})


def duckduckgo_page(results: list[dict]) -> str:
    """Results markup shaped like html.duckduckgo.com/html/: redirect links, snippets, ads marked."""
    blocks = []
    for item in results:
        href = '//duckduckgo.com/l/?uddg=' + quote(item['url'], safe='') + '&rut=0a1b2c'
        css = 'result results_links results_links_deep web-result'
        if item.get('ad'):
            css += ' result--ad'
            href = 'https://duckduckgo.com/y.js?ad_domain=example.com&u3=' + quote(item['url'], safe='')
        snippet = item.get('snippet_html', html.escape(item.get('snippet', '')))
        blocks.append(
            f'<div class="{css}"><div class="links_main links_deep result__body">'
            f'<h2 class="result__title"><a rel="nofollow" class="result__a" href="{html.escape(href)}">'
            f'{html.escape(item["title"])}</a></h2>'
            f'<a class="result__snippet" href="{html.escape(href)}">{snippet}</a>'
            '</div></div>')
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>DuckDuckGo</title></head><body>'
            '<div id="links" class="results">' + ''.join(blocks) + '</div></body></html>')
