"""Web search stage (optional, off by default): when the knowledge base has nothing good enough, search
the web (Serper or DuckDuckGo) and use the pages as passages. NO_SEARCH_RESULT when nothing is found.
"""
from __future__ import annotations

from loguru import logger

from huixiangdou.service.worker.session import ErrorCode, Passage, Session


class OnlineSearch:
    name = 'web_search'

    def __init__(self, web_search, min_cosine: float = 0.5, max_results: int = 3):
        self.web_search = web_search
        self.min_cosine = min_cosine
        self.max_results = max_results

    async def run(self, session: Session) -> None:
        best = max((p.cosine for p in session.passages), default=0.0)
        if session.passages and best >= self.min_cosine:
            return
        from huixiangdou.service.web_search import WebSearchError
        debug: dict[str, object] = {'urls': []}
        session.debug[self.name] = debug
        try:
            results = await self.web_search.search(session.text, max_results=self.max_results)
        except WebSearchError as exc:
            logger.warning('web search failed for group={}: {}', session.group_id, exc)
            debug['error'] = str(exc)
            results = []
        session.passages.extend(Passage(r.content or r.snippet, r.url, 0.0) for r in results)
        debug['urls'] = [r.url for r in results]
        if not session.passages:
            session.finish(ErrorCode.NO_SEARCH_RESULT)
