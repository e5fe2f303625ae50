"""Retrieve stage: dense + BM25 search of the feature store, scores fused with the calibrated weight."""
from __future__ import annotations

from huixiangdou.service.feature_store import FeatureStore
from huixiangdou.service.worker.session import Passage, Session
from huixiangdou.service.worker.stage import run_cpu


class Retrieve:
    name = 'retrieve'

    def __init__(self, store: FeatureStore, top_k: int = 5, candidates: int = 20):
        if top_k < 1:
            raise ValueError(f'top_k must be >= 1, got {top_k}')
        self.store = store
        self.top_k = top_k
        self.candidates = max(candidates, top_k)

    async def run(self, session: Session) -> None:
        found = await run_cpu(self.store.search, session.query, self.top_k, self.candidates)
        session.passages = [Passage(s.chunk.text, s.chunk.reference, s.fused, s.cosine) for s in found]
        session.debug[self.name] = [{'reference': s.chunk.reference, 'cosine': round(s.cosine, 4),
                                     'bm25': round(s.bm25, 3), 'fused': round(s.fused, 4)} for s in found]
