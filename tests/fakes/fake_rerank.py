"""A local stand-in for an OpenAI/SiliconCloud-style POST /v1/rerank API on 127.0.0.1: scores documents by
the share of the query's characters they contain, answers best-first, and can be told to fail or hang.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

from tests.conftest import free_port


def overlap_score(query: str, document: str) -> float:
    """Share of the query's distinct non-space characters found in the document (works for 中文 too)."""
    chars = {c for c in query.lower() if not c.isspace()}
    return sum(c in document.lower() for c in chars) / max(len(chars), 1)


@dataclass
class FakeRerankAPI:
    """Usage: `async with FakeRerankAPI(api_key='k') as fake: Reranker(fake.url, api_token='k')`."""
    api_key: str = 'rerank-test-key'
    hang: bool = False
    hang_times: int = 0  # the next this-many requests hang (until stop), then normal service
    requests: list[dict] = field(default_factory=list)  # {'headers': ..., 'json': ...}

    def __post_init__(self):
        self._failures: deque[tuple[int, str | None]] = deque()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = free_port()

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}/v1/rerank'

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """The next `times` requests answer `status`; status 0 drops the connection without an answer."""
        self._failures.extend((status, retry_after) for _ in range(times))

    async def __aenter__(self) -> FakeRerankAPI:
        app = web.Application()
        app.router.add_post('/v1/rerank', self._rerank)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, '127.0.0.1', self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        self._release.set()
        await self._runner.cleanup()

    async def _rerank(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({'headers': dict(request.headers), 'json': body})
        if request.headers.get('Authorization') != f'Bearer {self.api_key}':
            return web.json_response({'code': 20015, 'message': 'Invalid token'}, status=401)
        if self.hang or self.hang_times > 0:
            self.hang_times = max(0, self.hang_times - 1)
            await self._release.wait()
        if self._failures:
            status, retry_after = self._failures.popleft()
            if status == 0:
                request.transport.close()
                return web.Response()  # never reaches the client
            headers = {'Retry-After': retry_after} if retry_after is not None else {}
            return web.json_response({'message': 'fake failure'}, status=status, headers=headers)
        docs = body['documents']
        ranked = sorted(range(len(docs)), key=lambda i: overlap_score(body['query'], docs[i]), reverse=True)
        top_n = body.get('top_n') or len(docs)
        return web.json_response({
            'id': 'fake-rerank',
            'results': [{'index': i, 'relevance_score': overlap_score(body['query'], docs[i])}
                        for i in ranked[:top_n]],
            'meta': {'tokens': {'input_tokens': sum(len(d) for d in docs), 'output_tokens': 0}}})
