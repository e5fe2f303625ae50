"""Retrieve stage: dense + BM25 search of the feature store, scores fused with the calibrated weight.

It searches with the features the reject stage left on the session (computed only if it ran alone).
"""
from __future__ import annotations

from huixiangdou.service.feature_store import FeatureStore
from huixiangdou.service.worker.session import Passage, Session
from huixiangdou.service.worker.stage import query_features, run_cpu


class Retrieve:
    name = 'retrieve'

    def __init__(self, store: FeatureStore, top_k: int = 5, candidates: int = 20):
        if top_k < 1:
            raise ValueError(f'top_k must be >= 1, got {top_k}')
        self.store = store
        self.top_k = top_k
        self.candidates = max(candidates, top_k)

    async def run(self, session: Session) -> None:
        features = await query_features(self.store, session)
        found = await run_cpu(self.store.search, features, self.top_k, self.candidates)
        session.passages = [Passage(s.chunk.text, s.chunk.reference, s.fused, s.cosine) for s in found]
        session.debug[self.name] = [{'reference': s.chunk.reference, 'cosine': round(s.cosine, 4),
                                     'bm25': round(s.bm25, 3), 'fused': round(s.fused, 4)} for s in found]
