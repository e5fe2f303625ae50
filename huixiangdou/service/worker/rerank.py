"""Rerank stage (optional): a cross-encoder (local or /v1/rerank API) reorders the retrieved passages."""
from __future__ import annotations

from loguru import logger

from huixiangdou.service.reranker import RerankError
from huixiangdou.service.worker.session import Session


class Rerank:
    name = 'rerank'

    def __init__(self, reranker, top_k: int = 5):
        self.reranker = reranker
        self.top_k = top_k

    async def run(self, session: Session) -> None:
        if not session.passages:
            return
        try:
            scores = await self.reranker.rerank(session.text, [p.text for p in session.passages])
        except RerankError as exc:
            # Retrieval order is a fine answer on its own; a reranker outage must not silence the bot.
            logger.warning('rerank failed, keeping retrieval order: {}', exc)
            session.debug[self.name] = {'error': str(exc)}
            return
        for passage, score in zip(session.passages, scores):
            passage.score = float(score)
        session.passages.sort(key=lambda p: p.score, reverse=True)
        session.passages = session.passages[:self.top_k]
        session.debug[self.name] = [{'reference': p.reference, 'score': round(p.score, 4)}
                                    for p in session.passages]
